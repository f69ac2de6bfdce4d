"""Training: the finetune config, the loop and its resumable state, preprocessing on the device,
metrics, devices and seeds."""
