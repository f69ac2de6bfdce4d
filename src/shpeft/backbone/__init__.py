"""The backbone: its config, where its weights come from (a registry of origins), the demo
pretraining, and the backbone step's output as every later step reads it."""
