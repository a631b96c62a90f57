"""Training: the classifiers and source networks, the adversarial pairs, the purifier GAN, and what a run leaves
in its run folder."""
