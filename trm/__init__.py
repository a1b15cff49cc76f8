"""Tiny Recursive Models (TRM) for ARC-AGI, faithful to upstream TRM (commit e7b6871)."""

__version__ = "0.1.0"

UPSTREAM_COMMIT = "e7b68717f0a6c4cbb4ce6fbef787b14f42083bd9"
