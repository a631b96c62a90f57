"""The attacks: their configurations under the evaluation protocol and for training pairs, and DeepFool within
the pixel box."""
