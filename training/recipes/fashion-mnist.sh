#!/bin/bash
# models/fashion-mnist 1.5.0 from scratch: the seen CNN, the unseen ResNet and MLP, three source networks
# (the perceptual feature network, `fc`, fully connected, and `res`, residual; none of them evaluated), 56,200
# pairs made against the seen CNN and the source networks, the GAN with a global skip and three guidance terms
# trained with two seeds, the one with the better score on held-out training images kept (a rule set before
# any test image was seen), its no-residual ablation, the export and the card on the full test set.
# Run from anywhere; PY and PURIFY as common.sh says.
# The comments give what each step printed or took when the shipped bundle was made (two cores);
# models/fashion-mnist/attempts.md has the history behind the recipe.
source "$(dirname "$0")/common.sh"

train classifiers --dataset fashion-mnist --only cnn --threads 1                       # 93.57%
train classifiers --dataset fashion-mnist --only features --epochs 2 --threads 1       # 87.91%
train classifiers --dataset fashion-mnist --only fc --epochs 20 --seed 1 --threads 1   # 87.08%
train classifiers --dataset fashion-mnist --only res --epochs 6 --seed 1 --threads 1   # 89.74%
train classifiers --dataset fashion-mnist --only resnet --epochs 6 --threads 1         # 91.01%
train classifiers --dataset fashion-mnist --only mlp --epochs 20 --threads 1           # 87.46%
train pairs --dataset fashion-mnist --per-attack 3000 --correlated-noise 4000 --feature-attacks 1000 --fc-attacks 700 --res-attacks 1000 --threads 2   # 56,200 pairs, 5 min
# Two seeds side by side at one thread each (2.1 min an epoch), each in a runs folder of its own that links
# the classifiers and pairs above; each run keeps its best epoch on 500 held-out training images (seed 2:
# epoch 12, 80.6 + 94.4; seed 7: epoch 12, 81.2 + 94.2).
GAN="--dataset fashion-mnist --residual-output --guidance-weight 6 --feature-guidance-weight 10 --source-guidance-weight 20 --epochs 12 --minutes 80 --limit 20000"
RUNS=$(realpath -m "${PURIFYD_RUNS:-training/runs}")
for seed in 2 7; do
  mkdir -p "$RUNS/seed$seed/fashion-mnist"
  for f in classifiers pairs.pt pairs.json; do ln -sfn "$RUNS/fashion-mnist/$f" "$RUNS/seed$seed/fashion-mnist/$f"; done
done
PURIFYD_RUNS=$RUNS/seed2 train gan $GAN --threads 1 --seed 2 & s2=$!
PURIFYD_RUNS=$RUNS/seed7 train gan $GAN --threads 1 --seed 7 & s7=$!
wait $s2 && wait $s7
# The seed with the better held-out score (purified PGD + clean accuracy of its kept epoch) ships: 7.
SEED=$(RUNS=$RUNS "$PY" - <<'PY'
import json, os
from pathlib import Path
from purifyd_train.training.gan import best_epoch, selection_score
history = lambda seed: json.loads((Path(os.environ["RUNS"]) / f"seed{seed}" / "fashion-mnist" / "gan" / "history.json").read_text())
scores = {seed: selection_score(best_epoch(history(seed), "gan")) for seed in (2, 7)}
print(max(scores, key=scores.get))
PY
)
rm -rf "$RUNS/fashion-mnist/gan" && cp -r "$RUNS/seed$SEED/fashion-mnist/gan" "$RUNS/fashion-mnist/gan"
train gan $GAN --threads 2 --seed "$SEED" --no-residual   # the ablation: 18 min alone, keeps epoch 11 (80.2 + 93.4)
train export --dataset fashion-mnist --version 1.5.0
"$PY" Tests/PurifyEngineTests/Fixtures/make_fixtures.py --references models/fashion-mnist
train evaluate --dataset fashion-mnist --n 500 --threads 2 --through-purify "$PURIFY"          # 82.00% = PyTorch
train evaluate --dataset fashion-mnist --n 10000 --adaptive-n 200 --sweep-n 500 --threads 2   # the card: 42.5 min
