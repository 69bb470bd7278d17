"""Shared test fixtures. Integration fixtures start real components on loopback."""

from tests.support.postgres import postgres_url

__all__ = ["postgres_url"]
