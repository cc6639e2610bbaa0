"""Training: typed configs and presets, masked per-task losses, loss weighting, the training loop,
evaluation, plots and run checkpoints (docs/design.md, "Training run directory")."""
