"""``kustos operator``: initialise, unseal, seal and re-key a server, like ``vault operator``.

These commands act on the server's keys, not on secrets: ``init`` creates the
root key and splits it into Shamir shares (printed once), ``unseal`` submits
shares until the threshold, ``seal`` drops the keys from memory, ``rotate-key``
adds a new key-encryption-key term and ``rewrap`` moves every stored data key to it.

(The Kubernetes controllers are ``kustos controller run``; ``kustos operator run``
remains as a hidden alias of it.)
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from kustos.cli.connection import (
    EXIT_BAD_INPUT,
    Connection,
    connected,
)
from kustos.cli.controller import run_controller
from kustos.cli.output import OutputFormat, OutputOption, fail, render, report, stderr
from kustos.client import SealStatus
from kustos.errors import KustosError

__all__ = ["register", "seal_progress_line"]

operator_app = typer.Typer(
    name="operator",
    help="Initialise, unseal, seal and re-key the server (like `vault operator`).",
    no_args_is_help=True,
)


def seal_progress_line(status: SealStatus) -> str:
    """One human line for a seal status: sealed with progress ``p/t``, or unsealed."""
    if not status.get("initialized", True):
        return "Not initialised: run `kustos operator init`"
    if status.get("sealed"):
        return (
            f"Sealed: unseal progress {status.get('progress', 0)}/{status.get('t', '?')} key shares"
        )
    return "Unsealed"


@operator_app.command("init")
@connected(token=False)
def init(
    connection: Connection,
    key_shares: Annotated[
        int, typer.Option("--key-shares", help="Number of unseal key shares to create.")
    ] = 5,
    key_threshold: Annotated[
        int, typer.Option("--key-threshold", help="Shares needed to unseal.")
    ] = 3,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Initialise a new server: print the unseal key shares and the root token, ONCE."""
    if key_shares < 1 or key_shares > 255:
        fail(f"--key-shares must be between 1 and 255, got {key_shares}", code=EXIT_BAD_INPUT)
    if key_threshold < 1 or key_threshold > key_shares:
        fail(
            f"--key-threshold must be between 1 and --key-shares ({key_shares}), got {key_threshold}",
            code=EXIT_BAD_INPUT,
        )
    if key_threshold == 1 and key_shares > 1:
        fail(
            "--key-threshold 1 with several shares lets any single share unseal; use a threshold of 2 or more",
            code=EXIT_BAD_INPUT,
        )
    with connection.client() as client:
        result = client.sys.initialize(secret_shares=key_shares, secret_threshold=key_threshold)
    keys = result.get("keys") or []
    if output is OutputFormat.table:
        rows: dict[str, Any] = {f"Unseal Key {i}": key for i, key in enumerate(keys, start=1)}
        rows["Initial Root Token"] = result.get("root_token", "")
        render(rows, output, title="Kustos initialised")
    else:
        render(dict(result), output)
    stderr.print(
        f"[bold yellow]WARNING:[/] these {len(keys)} key shares and the root token are shown only this once.\n"
        f"Store each share with a different person or in a different safe place; any {key_threshold} of them "
        "unseal the server after every restart (`kustos operator unseal`). Whoever holds "
        f"{key_threshold} shares can read everything. Revoke the root token once other tokens exist.",
        highlight=False,
    )


@operator_app.command("unseal")
@connected(token=False)
def unseal(
    connection: Connection,
    key: Annotated[
        str | None,
        typer.Argument(
            help="One unseal key share ('-' reads it from stdin; omitted: prompt without echo).",
            show_default=False,
        ),
    ] = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="Discard the shares submitted so far.")
    ] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Submit one unseal key share; repeat until the threshold is reached."""
    share: str | None = None
    if not reset:
        if key == "-" or (key is None and not sys.stdin.isatty()):
            share = sys.stdin.readline().strip()
        elif key is not None:
            share = key.strip()
        else:
            share = typer.prompt(
                "Unseal key share (input hidden)", hide_input=True, err=True
            ).strip()
        if not share:
            fail("an unseal key share is required", code=EXIT_BAD_INPUT)
    with connection.client() as client:
        status = client.sys.submit_unseal_key(share, reset=reset)
    stderr.print(seal_progress_line(status), highlight=False)
    render(dict(status), output)


@operator_app.command("status")
@connected(token=False)
def status(
    connection: Connection,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show whether the server is initialised and sealed, and the unseal progress."""
    with connection.client() as client:
        result = client.sys.read_seal_status()
    stderr.print(seal_progress_line(result), highlight=False)
    render(dict(result), output)


@operator_app.command("seal")
@connected()
def seal(
    connection: Connection,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Seal the server: its keys leave memory and data requests answer 503 until unsealed."""
    with connection.client() as client:
        client.sys.seal()
    report("Sealed. Unseal with `kustos operator unseal`.", {"sealed": True}, output)


@operator_app.command("key-status")
@connected()
def key_status(
    connection: Connection,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show the current key-encryption-key term and when it was installed."""
    with connection.client() as client:
        result = client.sys.read_key_status()
    render(dict(result), output)


@operator_app.command("rotate-key")
@connected()
def rotate_key(
    connection: Connection,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Add a new key-encryption-key term; new writes use it (run `rewrap` to move old data)."""
    with connection.client() as client:
        client.sys.rotate_key()
        result = client.sys.read_key_status()
    stderr.print(
        f"Rotated: new writes use key term {result.get('term')}. Run `kustos operator rewrap` to re-wrap stored data.",
        highlight=False,
    )
    render(dict(result), output)


@operator_app.command("rewrap")
@connected()
def rewrap(
    connection: Connection,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            help="Records re-wrapped per request (progress is shown between requests).",
        ),
    ] = 500,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Re-wrap every stored data key with the newest key term, with a progress bar on stderr."""
    if batch_size < 1:
        fail(f"--batch-size must be 1 or more, got {batch_size}", code=EXIT_BAD_INPUT)
    with connection.client() as client:
        result = _rewrap_all(lambda: client.sys.rewrap(max_records=batch_size))
    stderr.print(f"Rewrap done: {_rewrap_summary(result)}", highlight=False)
    render(result, output)


def _count(result: dict[str, Any], key: str) -> int | None:
    value = result.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _rewrap_all(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Call ``sys/rewrap`` in batches until nothing remains, drawing progress on stderr.

    When the server reports ``remaining``, the bar has a total; otherwise a
    spinner runs until the single answer arrives. Stops with an error when a
    batch makes no progress (records that keep failing to verify).
    """
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("Re-wrapping stored data keys", total=None)
        result = _in_background(call)
        rewrapped = _count(result, "rewrapped") or 0
        remaining = _count(result, "remaining")
        progress.update(
            task,
            total=rewrapped + (_count(result, "failed") or 0) + (remaining or 0),
            completed=rewrapped,
        )
        while remaining:
            result = _in_background(call)
            done = _count(result, "rewrapped") or 0
            if done == 0:
                fail(
                    f"rewrap stopped: {remaining} records remain and the last batch re-wrapped none "
                    f"({_count(result, 'failed') or 0} failed to verify); try a larger --batch-size or check the server log"
                )
            rewrapped += done
            remaining = _count(result, "remaining")
            progress.update(task, advance=done)
    return {**result, "rewrapped": rewrapped}


def _in_background(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one blocking request in a thread so the progress display keeps moving."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = call()
        except KustosError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="kustos-rewrap", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(timeout=0.1)
    if "error" in outcome:
        raise outcome["error"]
    result: dict[str, Any] = outcome["result"]
    return result


def _rewrap_summary(result: dict[str, Any]) -> str:
    parts = [
        f"{key.replace('_', ' ')} {value}"
        for key, value in result.items()
        if _count(result, key) is not None
    ]
    return ", ".join(parts) if parts else "complete"


# `kustos operator run`: the old name of `kustos controller run`, kept (hidden) so
# manifests written before the rename keep working.
operator_app.command(
    "run",
    hidden=True,
    help="Old name of `kustos controller run`; use that.",
)(run_controller)


def register(app: typer.Typer) -> None:
    """Add ``kustos operator ...`` to the root app."""
    app.add_typer(operator_app)
