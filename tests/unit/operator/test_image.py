"""The Dockerfile, checked without a Docker engine (none here): what it copies, builds and runs.

- every ``COPY`` source of the build stage exists and ``.dockerignore`` does
  not hide it;
- the build stage's ``pip install .`` works on exactly what it copies: the
  same files, taken from the repository as a fresh clone has them (no
  generated stubs), are built into a wheel here, and the wheel holds the
  generated gRPC stubs and the ``kustos`` console script;
- ``ENTRYPOINT`` is that console script, the user and ports are the chart's,
  and every command the chart's containers run is a real ``kustos`` command.
"""

from __future__ import annotations

import fnmatch
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import typer
import yaml

from kustos.cli.main import app

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined, comments dropped."""
    text = "\n".join(
        line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")
    ).replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _build_copies() -> list[tuple[str, str]]:
    """``(source, destination)`` of each COPY from the build context (not ``--from``)."""
    copies = []
    for word, rest in _instructions():
        if word == "COPY" and not rest.startswith("--from"):
            *sources, destination = shlex.split(rest)
            copies.extend((source, destination) for source in sources)
    return copies


def _ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return any(
        fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.removeprefix("**/"))
        for pattern in patterns
    )


def test_what_the_build_copies_exists_and_is_not_ignored() -> None:
    copies = _build_copies()
    assert copies, "the Dockerfile copies nothing from the build context"
    for source, _ in copies:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not _ignored(source), f"COPY {source}: hidden by .dockerignore"
    # what setuptools needs to build the package is all there
    copied = {source for source, _ in copies}
    assert {"pyproject.toml", "setup.py", "README.md", "kustos"} <= copied
    assert "scripts/generate_protos.py" in copied  # setup.py runs it


def test_the_build_stage_builds_a_complete_wheel_from_what_it_copies(tmp_path: Path) -> None:
    context = tmp_path / "src"
    context.mkdir()
    generated = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "*_pb2_grpc.pyi")
    for source, destination in _build_copies():
        target = context / destination.removeprefix("./").rstrip("/")
        if destination.endswith("/") or destination in ("./", "."):
            target = target / Path(source).name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / source).is_dir():
            shutil.copytree(
                ROOT / source,
                target,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *generated),
            )
        else:
            shutil.copy2(ROOT / source, target)
    assert not list((context / "kustos/protos").glob("*_pb2*")), "a fresh clone has no stubs"
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "-q", "-w", str(wheels), str(context)],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = wheels.glob("kustos-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(
            archive.read(n).decode() for n in names if n.endswith("entry_points.txt")
        )
    for stub in ("kms_v2_pb2.py", "kms_v2_pb2_grpc.py", "csi_provider_pb2_grpc.py"):
        assert f"kustos/protos/{stub}" in names, f"the image would lack {stub}"
    assert "kustos/cli/main.py" in names and "kustos/py.typed" in names
    assert "\nkustos = " in "\n" + entry_points


def test_the_entrypoint_is_the_console_script_and_user_and_ports_match_the_chart() -> None:
    instructions = dict(_instructions())
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert instructions["ENTRYPOINT"] == '["kustos"]' and "kustos" in scripts
    values = yaml.safe_load((ROOT / "deploy/helm/kustos/values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    gid = values["podSecurityContext"]["runAsGroup"]
    assert instructions["USER"] == f"{uid}:{gid}"
    assert f"--uid {uid}" in DOCKERFILE and f"--gid {gid}" in DOCKERFILE
    exposed = {int(p) for p in instructions["EXPOSE"].split()}
    assert values["server"]["port"] in exposed and 8080 in exposed  # the controller's health
    assert DOCKERFILE.count("FROM python:3.11-slim") == 2


def _command_path(args: list[str]) -> Any:
    """The ``kustos`` subcommand ``args`` name (its words up to the first option).

    Duck-typed: typer may bring its own copy of click, so no ``isinstance``.
    """
    command: Any = typer.main.get_command(app)
    for word in args:
        if word.startswith("-") or not hasattr(command, "get_command"):
            break
        sub = command.get_command(command.context_class(command), word)
        assert sub is not None, f"kustos {' '.join(args)}: no command {word!r}"
        command = sub
    return command


def _options(command: Any) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def test_every_command_the_chart_runs_is_a_real_kustos_command() -> None:
    from tests.support.chart import render

    objects: list[dict[str, Any]] = render(
        "--skip-crds",
        "--set", "injector.enabled=true", "--set", "csi.enabled=true",
        "--set", "server.tls.enabled=true", "--set", "server.local.keySecret=k",
        "--set", "server.pkcs11.module=/hsm/lib.so", "--set", "server.postgres.dsnSecret=pg",
        "--set", "controller.kustos.caSecret=ca", "--set", "controller.externalSecretsGroup=false",
    )  # fmt: skip
    checked = 0
    for obj in objects:
        if obj["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        pod = obj["spec"]["template"]["spec"]
        for container in pod["containers"]:
            args = [str(a) for a in container.get("args", [])]
            assert "command" not in container, "the image's entrypoint (kustos) runs"
            command = _command_path(args)
            known = _options(command)
            for arg in args:
                if arg.startswith("--"):
                    name = arg.split("=", 1)[0]
                    assert name in known, f"{obj['metadata']['name']}: kustos has no {name}"
            checked += 1
    assert checked >= 4  # server, controller, injector, csi provider
