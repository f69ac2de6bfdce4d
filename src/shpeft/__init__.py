"""shpeft: sparse, hybrid-importance parameter-efficient fine-tuning of ViTs, as a reproducible pipeline."""

__version__ = "0.1.0"
