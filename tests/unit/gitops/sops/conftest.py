"""Fixtures for the sops-format tests: a throwaway GNUPGHOME with the published sops test key."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kustos.gitops.sops import KeyServices
from tests.support.paths import SOPS_VECTORS

VECTORS = SOPS_VECTORS
TEST_FP = "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4"


@pytest.fixture
def gnupghome(tmp_path: Path) -> Iterator[Path]:
    """A GNUPGHOME in tmp_path holding the sops functional-tests private key."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        ["gpg", "--batch", "--quiet", "--import", str(VECTORS / "sops_functional_tests_key.asc")],
        env=env,
        check=True,
        capture_output=True,
    )
    yield home
    subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False, capture_output=True)


@pytest.fixture
def pgp_env(gnupghome: Path) -> dict[str, str]:
    return {**os.environ, "GNUPGHOME": str(gnupghome)}


@pytest.fixture
def pgp_services(pgp_env: dict[str, str]) -> KeyServices:
    return KeyServices(env=pgp_env)
