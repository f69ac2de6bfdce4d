"""The selection side of SH-PEFT: importance of every eligible weight, and the masks built from
it (which entries train)."""
