"""kustos.gitops (see docs/architecture.md)."""
