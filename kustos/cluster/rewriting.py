"""Rewrite every Secret through the API server so the first encryption provider re-encrypts it.

After ``--encryption-provider-config`` names a new provider, Secrets written
before stay as they were (plaintext, or an older key) until something writes
them. :func:`rewrite_secrets` sends each one an empty merge patch: the API
server reads the object, sees that it was stored by a provider other than
the first one (or under an older KMS key id) and writes it back, encrypted
with the first provider. Nothing in the Secret changes, no one gets a
``MODIFIED`` event with new data, and no value passes through this process
beyond what the API answers to a ``PATCH``.

Resumable and safe to interrupt: Secrets are handled in ``namespace/name``
order and the last one done is saved in a checkpoint file after every
batch; a later run starts after it. A Secret deleted meanwhile is skipped.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kustos.errors import ConfigError, NotFoundError
from kustos.kube import SECRETS, KubeClient

__all__ = ["Checkpoint", "RewriteResult", "rewrite_secrets"]

_CHECKPOINT_FORMAT: Final = 1
_SAVE_EVERY: Final = 20


@dataclass(frozen=True)
class RewriteResult:
    """What one run did."""

    total: int
    rewritten: int
    gone: int
    skipped_before: int
    interrupted: bool
    last: str


class Checkpoint:
    """The last Secret rewritten (``namespace/name``) for one cluster, in a JSON file (mode 0600)."""

    def __init__(self, path: Path, *, server: str) -> None:
        self.path, self.server = path, server
        self.last = ""
        self.rewritten = 0
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the checkpoint {path}: {exc}") from None
        if data.get("format") != _CHECKPOINT_FORMAT or data.get("server") != server:
            raise ConfigError(
                f"the checkpoint {path} belongs to another cluster or format "
                f"({data.get('server')!r}); use --restart to start over"
            )
        self.last = str(data.get("last", ""))
        self.rewritten = int(data.get("rewritten", 0))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        body = {
            "format": _CHECKPOINT_FORMAT,
            "server": self.server,
            "last": self.last,
            "rewritten": self.rewritten,
        }
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(body).encode())
        finally:
            os.close(fd)
        os.replace(temporary, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _key(secret: dict[str, Any]) -> str:
    meta = secret.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


async def rewrite_secrets(
    kube: KubeClient,
    *,
    checkpoint: Checkpoint,
    namespace: str | None = None,
    stop: threading.Event | None = None,
    max_items: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RewriteResult:
    """Rewrite every Secret after the checkpoint; ``on_progress(done, total)`` after each.

    Stops early (saving the checkpoint) when ``stop`` is set or after
    ``max_items`` rewrites; the result says whether the run was cut short.
    """
    secrets = sorted(
        (s for s in await kube.list(SECRETS, namespace=namespace)), key=lambda s: _key(s)
    )
    todo = [s for s in secrets if _key(s) > checkpoint.last]
    total, done, gone, interrupted = len(todo), 0, 0, False
    if on_progress is not None:
        on_progress(0, total)
    for index, secret in enumerate(todo):
        if (stop is not None and stop.is_set()) or (max_items is not None and done >= max_items):
            interrupted = True
            break
        meta = secret["metadata"]
        try:
            await kube.patch(SECRETS, name=meta["name"], namespace=meta["namespace"], patch={})
            done += 1
        except NotFoundError:
            gone += 1  # deleted since the list: nothing to rewrite
        checkpoint.last = _key(secret)
        checkpoint.rewritten += 1
        if (index + 1) % _SAVE_EVERY == 0:
            checkpoint.save()
        if on_progress is not None:
            on_progress(index + 1, total)
    checkpoint.save()
    if not interrupted:
        checkpoint.clear()
    return RewriteResult(
        total=len(secrets),
        rewritten=done,
        gone=gone,
        skipped_before=len(secrets) - total,
        interrupted=interrupted,
        last=checkpoint.last,
    )
