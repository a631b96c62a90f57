#!/bin/bash
# A CIFAR-10 recipe (models/cifar10/attempts.md) on one GPU machine, in one call of under
# 10 minutes: classifiers, pairs, two GAN recipes (RECIPE_A, RECIPE_B) with their ablations, the
# choice between them on held-out training images, export, evaluation. What is worth keeping is packed into $OUT as soon
# as it exists, in files under 16 MiB. Prepared on a machine with network access (the GPU machine has none):
#   python training/gpu/pack_data.py pack ../shared/data/cifar10 .gpu-data
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl torchattacks==3.5.1
# and run there from the repository root: bash training/gpu/cifar10.sh
set -u
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
say() { echo "[$(elapsed)s] $*"; }
DEV=${DEV:-cuda}; PY=${PY:-python3}; OUT=${OUT:-/tmp/out}
GAN_END=${GAN_END:-395}      # seconds after start by which the GANs stop
HARD_END=${HARD_END:-580}    # seconds after start by which everything is packed
CLS_RESNET=${CLS_RESNET:-"--epochs 50 --lr 0.1"}; CLS_OTHER=${CLS_OTHER:-"--epochs 30"}
CLS_FEAT=${CLS_FEAT:-"--epochs 15"}; CLS_FC=${CLS_FC:-"--epochs 30"}
PAIRS=${PAIRS:-"--per-attack 1750 --feature-attacks 600 --fc-attacks 500 --noise 800 --correlated-noise 800 --clean 2000 --rounds 3"}
GAN=${GAN:-"--residual-output --feature-guidance-weight 10 --epochs 60 --decay-from 0.5 --weight-average 0.999 --bf16"}
# The two recipes trained side by side (each with its no-residual ablation); validation chooses one.
# The CPU probes of 2026-12-05 (models/cifar10/attempts.md): the cGAN term, at 1 or 0.1, drives the fall after
# epoch 5; without it, guidance 30 (bundle 3.1.0's recipe) led 20 from epoch 6 on, and 20 led 10 at every epoch.
RECIPE_A=${RECIPE_A:-"--guidance-weight 30 --gan-weight 0"}; RECIPE_B=${RECIPE_B:-"--guidance-weight 20 --gan-weight 0"}
EVAL=${EVAL:-"--n 2000 --adaptive-n 500 --sweep-n 1000"}  # "none": evaluate elsewhere (80 min on two CPU cores)
VERSION=${VERSION:-3.2.0}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" /tmp/logs
if ! $PY -c "import torchattacks" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}training
export PURIFYD_DATA=${PURIFYD_DATA:-/tmp/data} PURIFYD_RUNS=${PURIFYD_RUNS:-/tmp/runs}
[ -f "$PURIFYD_DATA/cifar10/test.npz" ] || $PY training/gpu/pack_data.py unpack .gpu-data "$PURIFYD_DATA/cifar10" || exit 1
nvidia-smi -L 2>/dev/null; $PY -c "import torch, torchattacks; print(torch.__version__, torch.cuda.is_available())"
R="$PURIFYD_RUNS/cifar10"; mkdir -p "$R"
cmd() { $PY -m purifyd_train "$@" --dataset cifar10 --device $DEV --threads 2; }
pack_logs() { tar czf "$OUT/logs.tgz" -C /tmp logs 2>/dev/null; }
say "classifiers"
cmd classifiers --only resnet $CLS_RESNET --bf16 > /tmp/logs/cls-resnet.log 2>&1 & P1=$!
cmd classifiers --only features $CLS_FEAT --bf16 > /tmp/logs/cls-features.log 2>&1 & P2=$!
cmd classifiers --only fc $CLS_FC --seed 1 --bf16 > /tmp/logs/cls-fc.log 2>&1 & P3=$!
(cmd classifiers --only vgg $CLS_OTHER --bf16 && cmd classifiers --only mlp $CLS_OTHER --bf16) > /tmp/logs/cls-unseen.log 2>&1 & P4=$!
for p in $P1 $P2 $P3; do wait $p || { say "a classifier failed"; tail -20 /tmp/logs/cls-*.log; pack_logs; exit 1; }; done
say "seen and source networks done"; grep -h "accuracy" /tmp/logs/cls-*.log
cmd pairs $PAIRS > /tmp/logs/pairs.log 2>&1 || { say "pairs failed"; tail -30 /tmp/logs/pairs.log; pack_logs; exit 1; }
say "pairs done"; grep -h "accuracy\|wrote" /tmp/logs/pairs.log
MIN=$(awk -v s=$(elapsed) -v e=$GAN_END 'BEGIN { m = (e - s) / 60; if (m < 1) m = 1; printf "%.2f", m }')
say "GANs for $MIN minutes"
say "recipe a: $RECIPE_A; recipe b: $RECIPE_B"
for r in a b; do
  recipe=RECIPE_${r^^}
  cmd gan ${!recipe} $GAN --minutes $MIN --name gan-$r > /tmp/logs/gan-$r.log 2>&1 &
  cmd gan ${!recipe} $GAN --minutes $MIN --no-residual --name gan-nores-$r > /tmp/logs/gan-nores-$r.log 2>&1 &
done
wait $P4; say "unseen classifiers done"; grep -h "accuracy" /tmp/logs/cls-unseen.log
wait
say "GANs done"; grep -h "epoch" /tmp/logs/gan-*.log | tail -40
# The recipe with the better validation score (PGD + clean purified accuracy on held-out training images).
CHOICE=$($PY - "$R" <<'EOF'
import json, sys
from pathlib import Path
from purifyd_train.training.gan import best_epoch, selection_score
root = Path(sys.argv[1])
score = {}
for r in ("a", "b"):
    if all((root / f"{run}-{r}" / "generator.pt").exists() for run in ("gan", "gan-nores")):
        score[r] = selection_score(best_epoch(json.loads((root / f"gan-{r}" / "history.json").read_text()), f"gan-{r}"))
print(max(score, key=score.get)); print(score, file=sys.stderr)
EOF
) || { pack_logs; exit 1; }
say "chosen: $CHOICE"
cp -r "$R/gan-$CHOICE" "$R/gan"; cp -r "$R/gan-nores-$CHOICE" "$R/gan-nores"
echo "$CHOICE" > "$R/choice.txt"
pack_runs() {  # what the card, a local evaluation and a local export need; never pairs.pt or checkpoints
  rm -f "$OUT"/runs.tgz.*
  (cd "$PURIFYD_RUNS" && tar czf - cifar10/choice.txt cifar10/pairs.json cifar10/classifiers/metrics.json \
     cifar10/gan*/history.json cifar10/gan/generator.pt cifar10/gan-nores/generator.pt "$@") | split -b 15M - "$OUT/runs.tgz."
}
say "export"
if ! $PY -m purifyd_train export --dataset cifar10 --version $VERSION > /tmp/logs/export.log 2>&1; then
  tail /tmp/logs/export.log; pack_runs cifar10/classifiers/{resnet,vgg,mlp}.pt; pack_logs; exit 1
fi
tail -2 /tmp/logs/export.log
pack_runs cifar10/export.json cifar10/classifiers/{resnet,vgg,mlp}.pt; pack_logs; ls -la "$OUT"
LEFT=$(( HARD_END - $(elapsed) - 15 ))
if [ "$EVAL" = none ] || [ $LEFT -lt 60 ]; then
  say "not evaluated here"
elif say "evaluate (at most ${LEFT}s)"; timeout $LEFT $PY -m purifyd_train evaluate --dataset cifar10 --device $DEV --threads 4 $EVAL > /tmp/logs/evaluate.log 2>&1; then
  say "evaluated"
  tar czf - -C models cifar10 | split -b 15M - "$OUT/bundle.tgz."
  pack_runs cifar10/export.json cifar10/classifiers/{resnet,vgg}.pt  # the MLP stays behind: 64 MiB come back
  $PY -c "import json; r = json.load(open('models/cifar10/results.json')); print(json.dumps(r['summary'], indent=1))"
else
  say "evaluation did not finish"; tail -15 /tmp/logs/evaluate.log
fi
[ -f /tmp/logs/evaluate.log ] && grep -h "\[.*s\]" /tmp/logs/evaluate.log | tail -40
pack_logs; ls -la "$OUT"; say "end"
