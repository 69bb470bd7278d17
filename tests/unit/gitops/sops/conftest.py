"""Fixtures for the sops-format tests: the session's fresh PGP key (``gpg_key``) as key services."""

from __future__ import annotations

import pytest

from kustos.gitops.sops import KeyServices
from tests.support.gpg import GpgKey


@pytest.fixture
def pgp_env(gpg_key: GpgKey) -> dict[str, str]:
    return gpg_key.env


@pytest.fixture
def pgp_fp(gpg_key: GpgKey) -> str:
    return gpg_key.fingerprint


@pytest.fixture
def pgp_services(pgp_env: dict[str, str]) -> KeyServices:
    return KeyServices(env=pgp_env)
