"""shpeft: sparse, hybrid-importance PEFT of Vision Transformers, as a reproducible pipeline."""

__version__ = "0.1.0"
