"""Training, attacks, evaluation and ONNX export for purifyd's purifier bundles.

Run from the repository root as ``python -m purifyd_train <command>`` with ``training`` on
PYTHONPATH (the Makefile does this). Every figure in a model card is written by ``evaluate``.
"""
