#!/usr/bin/env bash
# GPU check (issue 9): measure the kit on one CUDA GPU, write bench/results/gpu-<date>-<gpu>.json.
#   bench/gpu_check.sh            # on a GPU machine whose python3 has torch (no install needed)
#   bench/gpu_check.sh --dry-run  # CPU, tiny config: proves the script runs end to end
# Budget: well under 8 minutes on one H100. Extra args go to bench/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout 470 "$PY" bench/gpu_check.py "$@"
