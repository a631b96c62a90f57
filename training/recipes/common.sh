# Sourced by each recipe: stop on the first failure, run from the repository's root, and name
# the interpreter (PY, default the repository's .venv) and the `purify` binary the end-to-end
# checks run (PURIFY, default .build/debug/purify: `swift build --product purify`).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
PURIFY=${PURIFY:-.build/debug/purify}
export PYTHONPATH=training
train() { "$PY" -m purifyd_train "$@"; }

# have_classifiers DATASET NAME...: whether every named classifier of DATASET has been trained.
have_classifiers() {
    local dataset=$1 name
    shift
    for name in "$@"; do
        [ -f "training/runs/$dataset/classifiers/$name.pt" ] || return 1
    done
}

# robust_variant DATASET UNSEEN...: the variant models/DATASET-robust, the shipped purifier fine-tuned against
# attacks computed end to end through it and the frozen seen classifier (robust/train.py's recipe for the
# dataset), exported; then end-to-end AutoAttack on 1,000 test images, with the gradient-masking checks and
# the unseen classifiers named, for it and for the oblivious models/DATASET, and both cards. The unseen
# classifiers must already be trained, by the dataset's own recipe's commands. Training checkpoints at every
# validation and resumes; the evaluation resumes from its ledger: run it again after a stop.
robust_variant() {
    local dataset=$1 name unseen=()
    shift
    have_classifiers "$dataset" "$@" || { echo "train the unseen classifiers $* of $dataset first" >&2; exit 1; }
    for name in "$@"; do
        unseen+=(--unseen "$name")
    done
    train robust-train --dataset "$dataset" --threads 2
    train robust-export --dataset "$dataset"
    for bundle in "models/$dataset" "models/$dataset-robust"; do
        train robust-evaluate --bundle "$bundle" --n 1000 "${unseen[@]}" --threads 2
    done
    train robust-card --bundle "models/$dataset-robust"
    train evaluate --dataset "$dataset" --card-only   # the oblivious card again, with its AutoAttack section
}
