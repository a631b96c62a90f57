#!/bin/bash
# models/mnist-robust: the shipped MNIST purifier fine-tuned against attacks computed end to end through
# it and the frozen seen classifier (TRADES with beta 6 against PGD-10, eps ramped to 0.3 over the first
# 30% of 3,000 iterations of 100 images), exported as a bundle variant; then end-to-end AutoAttack on
# 1,000 test images, with the gradient-masking checks and the unseen classifiers, for it and for the
# oblivious models/mnist, and both cards. Every step resumes or is repeatable: run it again after a stop.
# Run from anywhere; PY as common.sh says.
source "$(dirname "$0")/common.sh"

# The unseen classifiers the evaluation attacks through (training/recipes/mnist.sh trains them too).
for name in resnet mlp; do
    [ -f training/runs/mnist/classifiers/$name.pt ] || train classifiers --dataset mnist --only $name --threads 2
done
# It checkpoints at every validation (100 iterations) and when --hours H runs out; a killed run resumes
# from the last checkpoint. progress.jsonl has each validation and how long it took.
train robust-train --dataset mnist --threads 2
train robust-export --dataset mnist
for bundle in models/mnist models/mnist-robust; do
    train robust-evaluate --bundle $bundle --n 1000 --unseen resnet --unseen mlp --threads 2
done
train robust-card --bundle models/mnist-robust
train evaluate --dataset mnist --card-only   # the oblivious card again, with its AutoAttack section
