"""kustos.audit (see docs/architecture.md)."""
