"""Helpers shared by the test suites (throwaway servers and the like)."""
