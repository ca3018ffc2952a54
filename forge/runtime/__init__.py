"""Run directory, metadata, logging: everything a run leaves on disk besides checkpoints."""
