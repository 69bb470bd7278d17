"""``kustos injector``: flags are checked before anything is served, with a message and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kustos.cli.main import app


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "tls.pem"
    path.write_text("not used: the command stops before reading it\n")
    return path


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--address", "kustos:8200"], "--address must be the Kustos server's URL"),
        (["--listen", "8443"], "--listen must be HOST:PORT"),
        (["--listen", "0.0.0.0:99999"], "--listen must be HOST:PORT"),
        (["--token-seconds", "60"], "--token-seconds must be at least 600"),
        (["--agent-memory-limit", "lots"], "--agent-memory-limit must be a Kubernetes quantity"),
        (["--secret-volume-path", "secrets"], "--secret-volume-path must be an absolute path"),
        (["--log-level", "loud"], "--log-level must be debug, info, warning or error"),
    ],
)
def test_bad_flags_are_refused(pem: Path, flags: list[str], message: str) -> None:
    args = ["injector", "--tls-cert", str(pem), "--tls-key", str(pem)]
    if "--address" not in flags:
        args += ["--address", "https://kustos:8200"]
    result = CliRunner().invoke(app, [*args, *flags])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_a_missing_certificate_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.crt"
    result = CliRunner().invoke(
        app,
        [
            "injector",
            "--address",
            "https://k:8200",
            "--tls-cert",
            str(missing),
            "--tls-key",
            str(missing),
        ],
    )
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "--tls-cert" in text and "no such file" in text
