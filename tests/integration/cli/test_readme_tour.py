"""The README's tours, run as written: every shell block under "Five-minute tour" and "More of
the tour", in bash, against a real ``kustos server --dev``, and the hvac snippet in Python.

A new user types these first; a step that fails, a file the tour never creates or a column
that is no longer printed is a defect. The test changes only what a reader changes for their own
machine: the server's address (``KUSTOS_ADDR``, and ``VAULT_ADDR`` in the curl block) and the
CI token the last block tells the reader to copy (``<that token>``). The CLI finds its token in
``~/.kustos/token``, written by the dev server, as the README says.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT
from tests.support.server import RunningServer

pytestmark = pytest.mark.slow

README = REPO_ROOT / "README.md"
_TOURS = ("## Five-minute tour", "## More of the tour")
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_TOKEN_LINE = "kustos token create --policy app-writer -o json"
_TOKEN_CAPTURE = (
    "TOKEN=$(kustos token create --policy app-writer -o json"
    " | python -c 'import json, sys; print(json.load(sys.stdin)[\"client_token\"])')"
)


def _tour_blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block in the tour sections, in order."""
    text = README.read_text(encoding="utf-8")
    blocks: list[tuple[str, str]] = []
    for heading in _TOURS:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        blocks += _BLOCK.findall(text[start : end if end != -1 else len(text)])
    return blocks


@dataclass(frozen=True)
class Ran:
    stdout: str
    stderr: str
    failed: list[str]
    """The commands that exited non-zero, as bash saw them (``$BASH_COMMAND``)."""


@pytest.fixture(scope="module")
def tour(kustos_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Tour:
    return Tour(kustos_server, tmp_path_factory.mktemp("tour"))


class Tour:
    """Runs README blocks one after another in one working directory, as a reader would."""

    def __init__(self, server: RunningServer, workdir: Path) -> None:
        self.server = server
        self.workdir = workdir
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
            "HOME": str(server.home),
            "KUSTOS_ADDR": server.addr,
            "LANG": "C.UTF-8",
        }

    def bash(self, code: str) -> Ran:
        failed = self.workdir / ".failed"
        failed.write_text("")
        for written, here in (
            ("source .venv/bin/activate", ": the venv is on PATH"),
            ("http://127.0.0.1:8200", self.server.addr),
            (_TOKEN_LINE, _TOKEN_CAPTURE),
            ("<that token>", '"$TOKEN"'),
        ):
            code = code.replace(written, here)
        script = f'trap \'printf "%s\\n" "$BASH_COMMAND" >> {failed}\' ERR\n{code}'
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return Ran(done.stdout, done.stderr, failed.read_text().splitlines())

    def kustos(self, *args: str) -> str:
        done = subprocess.run(
            ["kustos", *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def test_the_tour_has_the_blocks_this_test_knows() -> None:
    assert [lang for lang, _ in _tour_blocks()] == ["sh", "", "sh", "python", "sh", "sh", "sh"]


def test_the_tour_runs_as_written(tour: Tour) -> None:
    assert (tour.server.home / ".kustos" / "token").read_text().strip() == tour.server.root_token
    kv, history, curl, hvac, seal, files, audit = (code for _, code in _tour_blocks())

    ran = tour.bash(kv)
    assert ran.failed == [], ran.stderr
    assert "s3cr3t" in ran.stdout
    rows = [line.split("\t") for line in tour.kustos("kv", "history", "secret/app/db").splitlines()]
    shown = [cell.strip() for cell in history.splitlines()[0].strip("┃").split("┃")]
    assert rows[0] == shown, "the README's history table has other columns than the CLI prints"
    assert [(row[0], row[3]) for row in rows[1:]] == [
        ("3", "rollback to version 1"),
        ("2", "rotate after offboarding"),
        ("1", ""),
    ]

    ran = tour.bash(curl)
    assert ran.failed == [], ran.stderr
    assert '"sealed":false' in ran.stdout and '"errors"' not in ran.stdout
    done = subprocess.run(
        [sys.executable, "-c", hvac],
        env={**tour.env, "VAULT_ADDR": tour.server.addr, "VAULT_TOKEN": tour.server.root_token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "from-curl" in done.stdout

    ran = tour.bash(seal)
    assert ran.failed == [], ran.stderr
    assert "kind: SealedSecret" in (tour.workdir / "sealed.yaml").read_text()

    ran = tour.bash(files)
    assert ran.failed == [], ran.stderr
    assert "password: s3cr3t   # rotated quarterly" in ran.stdout
    encrypted = (tour.workdir / "values.enc.yaml").read_text()
    assert "s3cr3t" not in encrypted and "n3w" not in encrypted

    ran = tour.bash(audit)
    denied = [command for command in ran.failed if "kv get secret/app/api" in command]
    assert ran.failed == denied and len(denied) == 1, ran.stderr
    assert "permission denied" in ran.stderr
    verified = json.loads(tour.kustos("audit", "verify", "audit.log", "-o", "json"))
    assert verified["ok"] is True
