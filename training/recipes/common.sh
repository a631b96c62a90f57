# Sourced by each recipe: stop on the first failure, run from the repository's root, and name
# the interpreter (PY, default the repository's .venv) and the `purify` binary the end-to-end
# checks run (PURIFY, default .build/debug/purify: `swift build --product purify`).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
PURIFY=${PURIFY:-.build/debug/purify}
export PYTHONPATH=training
train() { "$PY" -m purifyd_train "$@"; }
