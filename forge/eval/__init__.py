"""Evaluation helpers: plain metric functions (`forge.eval.metrics`) the task handlers call."""
