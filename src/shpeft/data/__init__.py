"""Data sources (one module each, registered by name) and the prepared on-disk format."""
