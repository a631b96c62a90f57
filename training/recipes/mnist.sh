#!/bin/bash
# models/mnist 1.1.0 from scratch: the seen CNN, the unseen ResNet and MLP, the perceptual feature network,
# 52,000 pairs (FGSM, PGD, C&W, independent and spatially correlated noise, clean), the GAN with a global
# skip and the seen classifier's guidance, its no-residual ablation, the export and the card.
# Run from anywhere; PY and PURIFY as common.sh says.
# The comments give what each step printed or took when the shipped bundle was made (two cores);
# models/mnist/attempts.md has the history behind the recipe.
source "$(dirname "$0")/common.sh"

train classifiers --dataset mnist --only cnn resnet mlp --threads 1    # 4 epochs each, 18 min
train classifiers --dataset mnist --only features --epochs 1 --threads 1
train pairs --dataset mnist --correlated-noise 8000 --threads 2         # 52,000 pairs, 10 min
# The two GANs ran side by side at one thread each (3.1 min an epoch); validation keeps the best epoch
# (10 of 12 for the shipped generator, 12 for the ablation).
GAN="--dataset mnist --residual-output --guidance-weight 10 --epochs 12 --minutes 55 --limit 20000 --threads 1"
train gan $GAN & shipped=$!
train gan $GAN --no-residual & ablation=$!
wait $shipped && wait $ablation
train export --dataset mnist --version 1.1.0
"$PY" Tests/PurifyEngineTests/Fixtures/make_fixtures.py --references models/mnist
train evaluate --dataset mnist --n 2000 --adaptive-n 200 --sweep-n 500 --threads 2   # 16 min
train evaluate --dataset mnist --n 500 --threads 2 --through-purify "$PURIFY"
train evaluate --dataset mnist --card-only   # the card again, with the through-purify section
