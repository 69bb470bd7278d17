"""kustos.server (see docs/architecture.md)."""
