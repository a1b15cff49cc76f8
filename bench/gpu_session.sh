#!/usr/bin/env bash
# The GPU session in ONE device call of at most ~10 min (docs/performance.md, "The GPU session").
#   here, with network:   make gpu-prep              # .gpu/: runner wheels (GPU's Python), competition files
#   on the GPU machine:   bash bench/gpu_session.sh  # device call: carry [".gpu"], timeout_s 600; writes $OUT
#   here, a dry run:      bash bench/gpu_session.sh --dry-run   # CPU, tiny settings, into build/gpu-session/
#   a second call for what did not fit:  ONLY=notebook,ttt bash bench/gpu_session.sh
# Parts, most important first, each skipped when it would not fit in BUDGET seconds (default 560):
#   check     bench/gpu_check.py: the CUDA tests (graphed step vs eager), training MFU per lever
#             (net and CUDA-graphed step at per-GPU batch 96 and 192), the evaluation's rows/s and
#             MFU (graphed and net), SDPA backends, the net-compiled profile
#   notebook  bench/gpu_notebook.py: notebooks/02_train under papermill (make train's path, paper
#             config, one process) for 300 steps, then resumed to 400
#   ttt       bench/gpu_ttt.py: the competition notebook (bf16), and the projection for Kaggle
# Out ($OUT, else build/gpu-session/; at most 8 files come back from a device call): gpu-*.json,
# gpu-notebook-*.json + .tar.gz, gpu-ttt-*.json, gpu-session-logs-*.tar.gz (every raw log).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=""
[ "${1:-}" = "--dry-run" ] && DRY="--dry-run"
OUTDIR=${OUT:-build/gpu-session}
BUDGET=${BUDGET:-560}
ONLY=${ONLY:-check,notebook,ttt}
PY=${PY:-$( [ -x .venv/bin/python ] && [ -n "$DRY" ] && echo .venv/bin/python || echo python3 )}
LOGS=$(mktemp -d /tmp/trm-gpu-session.XXXX)
mkdir -p "$OUTDIR"
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
say() { echo "[session $(date +%H:%M:%S), $(left) s left] $*" | tee -a "$LOGS/session.log"; }
wants() { [[ ",$ONLY," == *",$1,"* ]]; }

# the runner's wheels (fetched by make gpu-prep) into /tmp/site, offline; the kit is this tree
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
if [ -d .gpu/wheels ] && [ -z "$DRY" ]; then
  if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
       $(ls .gpu/wheels/*.whl | grep -v trm_kaggle_kit) > "$LOGS/pip.log" 2>&1; then
    # JUPYTER_PATH: where nbconvert finds its templates (installed with --target, not in a prefix)
    export PYTHONPATH="$PWD:/tmp/site" JUPYTER_PATH=/tmp/site/share/jupyter
    say "runner wheels installed offline from .gpu/wheels"
  else
    say "offline install of .gpu/wheels FAILED (pip.log): the notebook part will fail"
  fi
fi
COMP=../shared/data/arc-prize-2025
[ -d .gpu/comp ] && COMP=.gpu/comp
{ nvidia-smi || true; "$PY" -c "import sys, torch; print(sys.version, torch.__version__, torch.version.cuda)"
} > "$LOGS/machine.log" 2>&1
say "python $("$PY" -c 'import platform; print(platform.python_version())'), competition $COMP, out $OUTDIR"

if wants check; then  # leaves ~230 s for the notebook (100) and the competition notebook (130)
  keep=$( (wants notebook || wants ttt) && echo 230 || echo 10 )
  say "check: bench/gpu_check.py, budget $(( $(left) - keep )) s"
  cap=$(( $(left) - keep + 60 ))  # a section that overruns its estimate may take 60 s of the others' time
  timeout $(( cap > 60 ? cap : 60 )) "$PY" bench/gpu_check.py $DRY --out-dir "$OUTDIR" --comp-dir "$COMP" \
    --budget $(( $(left) - keep )) --skip smoke \
    > "$LOGS/gpu_check.log" 2>&1
  say "check: exit $? ($(tail -n 3 "$LOGS/gpu_check.log" | tr '\n' ' '))"
fi
if wants notebook && [ "$(left)" -ge 100 ]; then
  say "notebook: bench/gpu_notebook.py"
  timeout $(( $(left) - 5 )) "$PY" bench/gpu_notebook.py $DRY --out-dir "$OUTDIR" --comp-dir "$COMP" \
    > "$LOGS/gpu_notebook.log" 2>&1
  say "notebook: exit $? ($(tail -n 1 "$LOGS/gpu_notebook.log"))"
elif wants notebook; then
  say "notebook: SKIPPED, $(left) s left (needs ~100): run ONLY=notebook,ttt in a second call"
fi
if wants ttt && [ "$(left)" -ge 110 ]; then
  say "ttt: bench/gpu_ttt.py (bf16)"
  timeout $(( $(left) - 5 )) "$PY" bench/gpu_ttt.py $DRY --dtypes bfloat16 --minutes 0.5 --out-dir "$OUTDIR" \
    --comp-dir "$COMP" > "$LOGS/gpu_ttt.log" 2>&1
  say "ttt: exit $? ($(grep -m1 -A2 '^summary' "$LOGS/gpu_ttt.log" | tail -n 1))"
  mv "$OUTDIR"/gpu-ttt-*.log "$LOGS/" 2>/dev/null
elif wants ttt; then
  say "ttt: SKIPPED, $(left) s left (needs ~110): run ONLY=ttt in a second call"
fi
say "done in $(( $(date +%s) - START )) s"
tar -czf "$OUTDIR/gpu-session-logs-$(date +%Y-%m-%d)${DRY:+-dryrun}.tar.gz" -C "$LOGS" .
ls -la "$OUTDIR"
