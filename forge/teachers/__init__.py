"""Teachers: how a teacher is obtained (strategy) and, later, where it runs (backends)."""
