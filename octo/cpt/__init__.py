"""Mid-training (continued pre-training): schedules, checkpoints, the training loop, gates."""
