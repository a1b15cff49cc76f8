"""The Kaggle competition the kit targets by default: the one place its slug is written.

Imported by trmkit/kernel.py, trmkit/sim.py and trmkit/fetch.py; the Makefile reads
the line below with sed (so keep it one plain `COMPETITION = "..."` line). Change the default
here, or per command with `make ... COMP=<slug>` / `--competition <slug>`. Standard library only.
"""

COMPETITION = "arc-prize-2026-arc-agi-2"
