"""Model backends (one per model family), their registry, and tiny real checkpoints for tests."""
