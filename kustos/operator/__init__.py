"""kustos.operator (see docs/architecture.md)."""
