"""Shared test fixtures. Integration fixtures start real components on loopback."""
