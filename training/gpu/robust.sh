#!/bin/bash
# A robust bundle variant (robust-train, robust-export, robust-evaluate) on one GPU machine, in one call
# of under 10 minutes. Training resumes from training/runs/<dataset>-robust when that folder is carried
# along and stops with a checkpoint by TRAIN_END seconds; once the recipe's last iteration is reached,
# the export and the end-to-end AutoAttack follow; an evaluation cut short resumes in the next call from
# its ledger (training/runs/robust-evaluate). The run folder, the ledger and the bundle, when exported,
# come back in $OUT, split into files under 16 MiB. Prepared on a machine with network access (the GPU
# machine has none), as training/gpu/cifar10.sh says for the torchattacks wheel (.whl), and:
#   mkdir -p .gpu-data && cp -r ../shared/data/mnist .gpu-data/            # MNIST, Fashion-MNIST as they are
#   python training/gpu/pack_data.py pack ../shared/data/cifar10 .gpu-data  # CIFAR-10, packed
# then run there from the repository root, carrying .gpu-data, .whl, training/runs/<dataset>-robust and
# training/runs/robust-evaluate (and training/runs/<dataset>/classifiers for UNSEEN):
#   DATASET=mnist bash training/gpu/robust.sh
# Back here: cat OUT/run.tgz.* | tar xzf - -C training/runs (ledger.tgz.* there too, bundle.tgz.* into models).
set -u
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
say() { echo "[$(elapsed)s] $*"; }
DATASET=${DATASET:?"set DATASET to mnist, fashion-mnist or cifar10"}
DEV=${DEV:-cuda}; PY=${PY:-python3}; OUT=${OUT:-/tmp/out}
TRAIN_END=${TRAIN_END:-330}   # seconds after start by which training stops, with a checkpoint
HARD_END=${HARD_END:-580}     # seconds after start by which everything is packed
TRAIN=${TRAIN:-}              # more robust-train options (a smoke test: --iterations 4 --batch 8 ...)
EVAL=${EVAL:-"--n 1000"}      # robust-evaluate options; "none" leaves the evaluation to another call
UNSEEN=${UNSEEN:-}            # e.g. "--unseen resnet --unseen mlp" (their classifiers carried along)
THREADS=${THREADS:-4}; MODELS=${MODELS:-models}   # where the bundle is written
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" /tmp/logs
if ! $PY -c "import torchattacks" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}training
read -r FOLDER NAME < <($PY -c "from purifyd_train.data.datasets import spec; d = spec('$DATASET'); print(d.folder, d.name)")
[ -n "${NAME:-}" ] || exit 1
if [ -z "${PURIFYD_DATA:-}" ]; then
  if [ -f ".gpu-data/$FOLDER/test.npz" ]; then
    export PURIFYD_DATA=.gpu-data
  else
    export PURIFYD_DATA=/tmp/data
    [ -f "$PURIFYD_DATA/$FOLDER/test.npz" ] || $PY training/gpu/pack_data.py unpack .gpu-data "$PURIFYD_DATA/$FOLDER" || exit 1
  fi
fi
export PURIFYD_RUNS=${PURIFYD_RUNS:-training/runs}
RUN="$NAME-robust"
nvidia-smi -L 2>/dev/null; $PY -c "import torch, torchattacks; print(torch.__version__, torch.cuda.is_available())"
pack() {  # $1: archive name, $2: folder, $3: entry in it
  rm -f "$OUT/$1".tgz.*
  tar czf - -C "$2" "$3" | split -b 15M - "$OUT/$1.tgz."
}
pack_logs() { tar czf "$OUT/logs.tgz" -C /tmp logs 2>/dev/null; }
HOURS=$(awk -v s=$(elapsed) -v e=$TRAIN_END 'BEGIN { h = (e - s) / 3600; if (h < 0.005) h = 0.005; printf "%.4f", h }')
say "robust-train for at most $HOURS h"
$PY -m purifyd_train robust-train --dataset $DATASET --device $DEV --threads $THREADS --hours $HOURS $TRAIN \
  > /tmp/logs/train.log 2>&1 || { say "training failed"; tail -20 /tmp/logs/train.log; pack_logs; exit 1; }
grep -h "iteration\|resumed\|stopped" /tmp/logs/train.log | tail -12
pack run "$PURIFYD_RUNS" "$RUN"; pack_logs
if grep -q "stopped at iteration" /tmp/logs/train.log; then
  say "not finished: call again to resume"; ls -la "$OUT"; exit 0
fi
say "export"
$PY -m purifyd_train robust-export --dataset $DATASET --out "$MODELS/$RUN" > /tmp/logs/export.log 2>&1 \
  || { say "export failed"; tail -20 /tmp/logs/export.log; pack_logs; exit 1; }
tail -1 /tmp/logs/export.log
LEFT=$(( HARD_END - $(elapsed) - 20 ))
if [ "$EVAL" = none ] || [ $LEFT -lt 60 ]; then
  say "not evaluated here"
elif say "robust-evaluate (at most ${LEFT}s)"; timeout $LEFT $PY -m purifyd_train robust-evaluate --bundle "$MODELS/$RUN" \
    --device $DEV --threads $THREADS $EVAL $UNSEEN > /tmp/logs/evaluate.log 2>&1; then
  say "evaluated"; tail -1 /tmp/logs/evaluate.log
else
  say "evaluation did not finish: call again to resume it"; tail -15 /tmp/logs/evaluate.log
fi
[ -d "$PURIFYD_RUNS/robust-evaluate" ] && pack ledger "$PURIFYD_RUNS" robust-evaluate
pack bundle "$MODELS" "$RUN"; pack_logs; ls -la "$OUT"; say "end"
