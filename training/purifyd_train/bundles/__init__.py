"""Bundles: bundle.toml, the export of a dataset bundle, and the `bundle` command that makes one from class
folders and an ONNX classifier."""
