#!/bin/bash
# models/fashion-mnist-robust: the Fashion-MNIST purifier fine-tuned with TRADES (beta 6) against PGD-10
# through it and the frozen classifier, eps ramped to 0.1 over the first 30% of 3,000 iterations of 100
# images, evaluated through the seen classifier and the unseen resnet and mlp (common.sh's robust_variant
# says every step). Run from anywhere; PY as common.sh says.
source "$(dirname "$0")/common.sh"
robust_variant fashion-mnist resnet mlp
