"""Fixtures for the auth-method integration tests: a real ``kustos server --dev`` subprocess."""

from __future__ import annotations

from tests.support.server import kustos_server

__all__ = ["kustos_server"]
