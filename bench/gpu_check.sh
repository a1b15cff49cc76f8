#!/usr/bin/env bash
# GPU check: measure the kit on one CUDA GPU, write bench/results/gpu-<date>-<gpu>.json.
#   bench/gpu_check.sh                          # on a GPU machine whose python3 has torch (no install needed)
#   bench/gpu_check.sh --dry-run                # CPU, tiny config: proves the script runs end to end
#   bench/gpu_check.sh --budget 200 --compile off,net,head --comp-dir DIR
# Extra args go to bench/gpu_check.py; --budget (seconds) bounds the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout 600 "$PY" bench/gpu_check.py "$@"
