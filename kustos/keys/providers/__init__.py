"""Key provider implementations, one module each."""
