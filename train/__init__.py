"""Self-play training with TRL."""
