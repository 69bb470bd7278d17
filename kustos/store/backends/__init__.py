"""Storage backend implementations, one module each."""
