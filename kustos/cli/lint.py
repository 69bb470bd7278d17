"""``kustos lint``: refuse plaintext Secrets and decrypted sops files before they reach Git.

Scans files and directories, or with ``--staged`` what is staged in Git
(the index's content, not the working tree's), with the checks of
:mod:`kustos.gitops.linting`; a file counts as one that must be encrypted
when a creation rule of the nearest ``.sops.yaml`` covers it. Prints each
finding as ``file:line:column: rule: message`` with what to do (``--format
json`` and ``--format sarif``, SARIF 2.1.0 for code scanning, print the same
as documents) and exits 1 if there is any, 2 for a usage or read error.
No output ever contains a value from a scanned file. The repository ships
``.pre-commit-hooks.yaml`` so the ``pre-commit`` framework runs this as a
hook (see docs/lint.md).
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from kustos import __version__
from kustos.cli.connection import EXIT_BAD_INPUT, EXIT_FAILURE
from kustos.cli.output import fail, stderr
from kustos.errors import ConfigError
from kustos.gitops.linting import RULES, Finding, is_candidate, lint_file
from kustos.gitops.sops import find_config, load_rule

__all__ = ["LintFormat", "register", "sarif_document"]

_SKIP_DIRS: Final = frozenset(
    {".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".tox", ".mypy_cache"}
)
_SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"
_MAX_FILE: Final = 16 * 1024 * 1024


class LintFormat(enum.StrEnum):
    """How findings are printed."""

    text = "text"
    json = "json"
    sarif = "sarif"


@dataclass(frozen=True)
class _File:
    shown: str
    """The path as findings name it (relative to the repository root with --staged)."""
    local: Path
    """Where it is on disk (for .sops.yaml lookup)."""
    root: Path | None = None
    """The repository root when the content comes from Git's index (--staged)."""


def _git(root: Path | None, *args: str) -> bytes:
    git = shutil.which("git")
    if git is None:
        fail("--staged needs git on the PATH", code=EXIT_BAD_INPUT)
    command = [git, *(["-C", str(root)] if root else []), *args]
    done = subprocess.run(command, capture_output=True, check=False)  # noqa: S603 - fixed git argv
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        fail(
            f"git {args[0]} failed: {message[-1] if message else done.returncode}",
            code=EXIT_BAD_INPUT,
        )
    return done.stdout


def _staged_files(paths: list[Path]) -> Iterator[_File]:
    root = Path(_git(None, "rev-parse", "--show-toplevel").decode().strip())
    listed = _git(root, "diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR")
    wanted = [p.resolve() for p in paths]
    for raw in listed.split(b"\0"):
        if not raw:
            continue
        name = raw.decode("utf-8", "surrogateescape")
        local = root / name
        if wanted and not any(local == w or w in local.parents for w in wanted):
            continue
        yield _File(shown=name, local=local, root=root)


def _walk(paths: list[Path]) -> Iterator[_File]:
    for given in paths or [Path(".")]:
        if given.is_dir():
            for directory, subdirs, names in os.walk(given):
                subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS)
                for name in sorted(names):
                    path = Path(directory) / name
                    yield _File(shown=str(path), local=path)
        elif given.exists():
            yield _File(shown=str(given), local=given)
        else:
            fail(f"{given}: no such file or directory", code=EXIT_BAD_INPUT)


class _SopsRules:
    """Whether a ``.sops.yaml`` creation rule covers a file (configs read once)."""

    def __init__(self) -> None:
        self._configs: dict[Path, Path | None] = {}

    def covers(self, file: Path) -> bool:
        if file.name == ".sops.yaml":
            return False
        directory = file.resolve().parent
        if directory not in self._configs:
            self._configs[directory] = find_config(directory)
        config = self._configs[directory]
        if config is None:
            return False
        try:
            return load_rule(config, file) is not None
        except ConfigError as exc:
            fail(f"{config}: {exc}", code=EXIT_BAD_INPUT)


def _read(file: _File) -> bytes:
    if file.root is not None:
        return _git(file.root, "cat-file", "blob", f":0:{file.shown}")
    try:
        if file.local.stat().st_size > _MAX_FILE:
            return b""
        return file.local.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file.shown}: {exc.strerror or exc}", code=EXIT_BAD_INPUT)


def _scan(files: Iterator[_File]) -> tuple[list[Finding], int]:
    rules = _SopsRules()
    findings: list[Finding] = []
    checked = 0
    for file in files:
        covered = rules.covers(file.local)
        if not covered and not is_candidate(file.shown):
            continue
        checked += 1
        findings += lint_file(file.shown, _read(file), must_be_encrypted=covered)
    return findings, checked


def _uri(shown: str) -> str:
    path = Path(shown)
    return path.as_uri() if path.is_absolute() else path.as_posix().removeprefix("./")


def sarif_document(findings: list[Finding]) -> dict[str, Any]:
    """Findings as a SARIF 2.1.0 log (one run, every rule described) for code-scanning tools."""
    rule_ids = list(RULES)
    results = []
    for finding in findings:
        fingerprint = hashlib.sha256(
            f"{finding.rule}\0{finding.path}\0{finding.message}".encode()
        ).hexdigest()
        results.append(
            {
                "ruleId": finding.rule,
                "ruleIndex": rule_ids.index(finding.rule),
                "level": finding.severity.value,
                "message": {"text": f"{finding.message}. {finding.help}"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": _uri(finding.path)},
                            "region": {"startLine": finding.line, "startColumn": finding.column},
                        }
                    }
                ],
                "partialFingerprints": {"kustosFinding/v1": fingerprint},
            }
        )
    return {
        "$schema": _SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "kustos lint",
                        "version": __version__,
                        "rules": [
                            {
                                "id": rule.id,
                                "name": "".join(p.title() for p in rule.id.split("-")),
                                "shortDescription": {"text": rule.title},
                                "fullDescription": {"text": rule.title},
                                "help": {"text": rule.help},
                                "defaultConfiguration": {"level": "error"},
                                "properties": {"tags": ["security"]},
                            }
                            for rule in RULES.values()
                        ],
                    }
                },
                "results": results,
            }
        ],
    }


def _print_text(findings: list[Finding], checked: int) -> None:
    out = sys.stdout
    for finding in findings:
        out.write(
            f"{finding.path}:{finding.line}:{finding.column}: {finding.rule}: {finding.message}\n"
        )
    used = dict.fromkeys(f.rule for f in findings)
    if used:
        out.write("\nWhat to do:\n")
        for rule in used:
            out.write(f"  {rule}: {RULES[rule].help}\n")
    files = len({f.path for f in findings})
    summary = (
        f"kustos lint: {len(findings)} problem(s) in {files} file(s), {checked} file(s) checked"
        if findings
        else f"kustos lint: no problems, {checked} file(s) checked"
    )
    stderr.print(summary, highlight=False, soft_wrap=True)


def lint(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Files or directories to check (default: the current directory). "
            "With --staged: limit the staged files to these.",
            show_default=False,
        ),
    ] = None,
    staged: Annotated[
        bool,
        typer.Option(
            "--staged", help="Check what is staged in Git (the index), as a pre-commit hook does."
        ),
    ] = False,
    fmt: Annotated[
        LintFormat,
        typer.Option(
            "--format",
            "-o",
            "--output",
            help="text (file:line: rule: message), json, or sarif (SARIF 2.1.0 for code scanning).",
            case_sensitive=False,
        ),
    ] = LintFormat.text,
) -> None:
    """Find plaintext Secrets and decrypted sops files before they are committed.

    Checks YAML and JSON (any document, multi-document files, Helm value files
    and templates) for Secrets with data in clear; files a .sops.yaml rule
    covers for missing encryption; sops files for values in clear and missing
    metadata; SealedSecrets for malformed ciphertexts. Exits 1 if it finds
    anything, and never prints a value it found. Example: `kustos lint --staged`.
    """
    files = _staged_files(list(paths or [])) if staged else _walk(list(paths or []))
    findings, checked = _scan(files)
    if fmt is LintFormat.json:
        document = {
            "version": 1,
            "files_checked": checked,
            "findings": [
                {
                    "rule": f.rule,
                    "severity": f.severity.value,
                    "path": f.path,
                    "line": f.line,
                    "column": f.column,
                    "message": f.message,
                    "help": f.help,
                }
                for f in findings
            ],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    elif fmt is LintFormat.sarif:
        sys.stdout.write(json.dumps(sarif_document(findings), indent=2) + "\n")
    else:
        _print_text(findings, checked)
    if findings:
        raise typer.Exit(EXIT_FAILURE)


def register(app: typer.Typer) -> None:
    """Add ``kustos lint`` to the root app."""
    app.command("lint")(lint)
