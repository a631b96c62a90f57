#!/bin/bash
# examples/fashion-mnist-folder/bundle from scratch: Fashion-MNIST written out as class folders of PNGs, a
# classifier trained on the folder's own training split outside purifyd_train, and `make bundle` on both.
# Run from anywhere; PY names the interpreter (default: the repository's .venv). The comments give what each
# step printed or took when the example was made (two cores shared with other work);
# examples/fashion-mnist-folder/README.md describes the result.
source "$(dirname "$0")/common.sh"
DATA=training/runs/example/fashion-mnist

# 70,000 PNGs in 10 class folders (0-T-shirt-top … 9-Ankle-boot), training and test images together.
"$PY" -m purifyd_train export-folder --dataset fashion-mnist --out "$DATA"
# Trained on the training part of the split `bundle` makes (seed 0, 10% validation, 10% test), its epoch picked
# on the validation part; it prints the --mean/--std its graph expects (92.27% on the validation images).
"$PY" examples/fashion-mnist-folder/train_classifier.py --data "$DATA" --out training/runs/example/classifier.onnx
# 51 minutes; rerunning resumes from training/runs/bundles/fashion-mnist-folder.
make bundle DATA="$DATA" CLASSIFIER=training/runs/example/classifier.onnx OUT=examples/fashion-mnist-folder/bundle \
    BUNDLE_ARGS="--mean 0.2859 --std 0.3527 --name fashion-mnist-folder --description 'Fashion-MNIST as class folders, with a separately trained all-convolutional classifier' --per-attack 1000 --epochs 8 --minutes 40 --threads 1"
