#!/usr/bin/env bash
# The competition notebook on one CUDA GPU (issue 17): bf16 and fp16 fine-tune + evaluation on
# hidden evaluation tasks, written to bench/results/gpu-ttt-<date>-<gpu>.json.
#   bench/gpu_ttt.sh                       # on a GPU machine whose python3 has torch
#   bench/gpu_ttt.sh --dry-run             # CPU, tiny model: proves the script runs end to end
# Extra args go to bench/gpu_ttt.py (--tasks 8 --minutes 1.5 --dtypes bfloat16,float16 --comp-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout 900 "$PY" bench/gpu_ttt.py "$@"
