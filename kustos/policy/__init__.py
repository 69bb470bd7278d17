"""kustos.policy (see docs/architecture.md)."""
