"""What ``kustos agent`` is asked to do: its options parsed into frozen values, refused when malformed.

* ``--secret NAME=PATH[#FIELD]`` → :class:`SecretSpec`: the file ``DIR/NAME``
  holds the whole secret as JSON, or one field raw. ``PATH`` is either the
  KV path the CLI uses (``secret/app/db``) or Vault's API path
  (``secret/data/app/db``, what Vault injector annotations name).
* ``--template NAME=FILE`` → :class:`TemplateSpec`: ``DIR/NAME`` is
  rendered from the template in ``FILE`` (Kustos's Jinja, or a Vault agent
  Go template).
* Everything else → :class:`AgentSettings`.

A ``NAME`` is a plain file name: no ``/``, not ``.`` or ``..``, no leading
``.`` (the agent's temporary files start with one), at most 255 bytes.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kustos.errors import InvalidRequestError

__all__ = [
    "DEFAULT_LISTEN",
    "AgentSettings",
    "SecretSpec",
    "TemplateSpec",
    "check_name",
    "parse_exec",
    "parse_listen",
    "parse_secret",
    "parse_template",
]

DEFAULT_LISTEN: Final = "0.0.0.0:8098"
_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")


def check_name(name: str, *, option: str) -> str:
    """``name`` if it is a safe file name, else an error naming the option."""
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidRequestError(
            f"{option}: {name[:80]!r} is not a file name (letters, digits, '.', '_', '-'; "
            "no '/', no leading '.')"
        )
    return name


@dataclass(frozen=True)
class SecretSpec:
    """``--secret NAME=PATH[#FIELD]``."""

    name: str
    path: str
    field: str | None = None

    @property
    def text(self) -> str:
        return f"{self.path}#{self.field}" if self.field else self.path


@dataclass(frozen=True)
class TemplateSpec:
    """``--template NAME=FILE``: the template's text, read once at start."""

    name: str
    file: Path
    source: str = field(repr=False)


def _split(text: str, *, option: str, what: str) -> tuple[str, str]:
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise InvalidRequestError(f"{option} takes NAME={what}, got {text[:120]!r}")
    return check_name(name.strip(), option=option), rest.strip()


def parse_secret(text: str) -> SecretSpec:
    name, rest = _split(text, option="--secret", what="PATH[#FIELD]")
    path, _, field_name = rest.partition("#")
    path = path.strip().strip("/")
    if "/" not in path or any(seg in ("", ".", "..") for seg in path.split("/")):
        raise InvalidRequestError(
            f"--secret {name}: {path!r} is not a secret path (mount first: secret/app/db)"
        )
    return SecretSpec(name=name, path=path, field=field_name.strip() or None)


def parse_template(text: str) -> TemplateSpec:
    name, rest = _split(text, option="--template", what="FILE")
    path = Path(rest)
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InvalidRequestError(f"--template {name}: cannot read {path}: {reason}") from None
    return TemplateSpec(name=name, file=path, source=source)


def parse_exec(text: str | None) -> tuple[str, ...]:
    """``--exec CMD`` split like a shell would (no shell runs it)."""
    if not text:
        return ()
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise InvalidRequestError(f"--exec: {exc}") from None
    if not argv:
        raise InvalidRequestError("--exec is empty")
    return argv


def parse_listen(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``""`` or ``off``: no listener)."""
    if text.strip().lower() in ("", "off", "none"):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidRequestError(f"--listen takes HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - see DEFAULT_LISTEN


@dataclass(frozen=True)
class AgentSettings:
    """Everything the agent runs with (built by the CLI, or directly by tests and benchmarks)."""

    address: str
    role: str
    jwt_file: Path
    directory: Path
    secrets: tuple[SecretSpec, ...] = ()
    templates: tuple[TemplateSpec, ...] = ()
    auth_path: str = "kubernetes"
    ca_cert: Path | None = None
    audience: str | None = None
    exec_command: tuple[str, ...] = ()
    once: bool = False
    listen: tuple[str, int] | None = None
    file_mode: int = 0o400
    heartbeat: int = 5
    """Seconds between the change stream's heartbeats (each re-checks the token on the server)."""
    exec_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.secrets and not self.templates:
            raise InvalidRequestError("nothing to do: give at least one --secret or --template")
        names = [s.name for s in self.secrets] + [t.name for t in self.templates]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidRequestError(
                f"file name(s) used twice: {', '.join(duplicates)} (each --secret and "
                "--template writes its own DIR/NAME)"
            )
        if not self.role:
            raise InvalidRequestError("--role is required")

    @classmethod
    def from_options(
        cls,
        *,
        address: str,
        role: str,
        jwt_file: Path,
        directory: Path,
        secrets: Sequence[str],
        templates: Sequence[str] = (),
        auth_path: str = "kubernetes",
        ca_cert: Path | None = None,
        audience: str | None = None,
        exec_command: str | None = None,
        once: bool = False,
        listen: str = DEFAULT_LISTEN,
        heartbeat: int = 5,
    ) -> AgentSettings:
        if not address.startswith(("http://", "https://")):
            raise InvalidRequestError(
                f"--address must start with https:// (or http://), got {address!r}"
            )
        return cls(
            address=address.rstrip("/"),
            role=role.strip(),
            jwt_file=jwt_file,
            directory=directory,
            secrets=tuple(parse_secret(s) for s in secrets),
            templates=tuple(parse_template(t) for t in templates),
            auth_path=auth_path.strip().strip("/") or "kubernetes",
            ca_cert=ca_cert,
            audience=audience or None,
            exec_command=parse_exec(exec_command),
            once=once,
            listen=None if once else parse_listen(listen),
            heartbeat=heartbeat,
        )
