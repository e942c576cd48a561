"""Training: the options of train_lm.py, run presets, data feeding, optimiser, checkpoints and the loop."""
