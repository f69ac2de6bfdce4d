"""The sparse training engine: trainable deltas on k selected entries of frozen Linear weights."""
