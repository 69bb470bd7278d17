"""kustos.client (see docs/architecture.md)."""
