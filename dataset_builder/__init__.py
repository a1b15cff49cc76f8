"""ARC JSON -> TRM dataset (byte-identical to upstream's build_arc_dataset.py)."""
