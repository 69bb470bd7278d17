"""Shared test fixtures. Integration fixtures start real components on loopback."""

from tests.support.kube import control_plane
from tests.support.postgres import postgres_url

__all__ = ["control_plane", "postgres_url"]
