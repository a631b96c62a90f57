"""Evaluation: the protocol (oblivious and adaptive attacks, baselines, image quality, the ε sweep), its
measures and figures, and the checks through `purify` and of JPEG and DeepFool."""
