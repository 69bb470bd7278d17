"""``kustos cluster``: switch a cluster's Secrets to encryption at rest, and prove it.

The order an operator follows (docs/kms.md walks through it):

1. ``kustos kms-plugin ...`` on every control-plane node;
2. ``kustos cluster encryption-config --kms-socket /var/run/kustos/kms.sock --kms-name kustos
   --output /etc/kubernetes/enc.yaml``, and ``--encryption-provider-config`` on the API server;
3. ``kustos cluster rewrite-secrets`` so Secrets written before the switch are re-encrypted;
4. ``kustos cluster scan-etcd --endpoints https://127.0.0.1:2379 --cacert ... --cert ... --key ...``
   exits non-zero while any Secret is still plaintext in etcd;
5. ``kustos cluster who-can-read-secrets`` shows who can read them anyway, through the API.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import typer

from kustos.cli.output import OutputFormat, OutputOption, fail, render, stderr
from kustos.cli.writing import write_atomic
from kustos.errors import KustosError

if TYPE_CHECKING:
    from kustos.kube import KubeClient

__all__ = ["EXIT_INTERRUPTED", "EXIT_PLAINTEXT_FOUND", "register"]

_T = TypeVar("_T")

EXIT_PLAINTEXT_FOUND: Final = 3
"""``scan-etcd``'s exit code when a value is stored in plaintext (1 is a failed scan)."""
EXIT_INTERRUPTED: Final = 130
"""``rewrite-secrets``'s exit code when stopped by Ctrl-C or SIGTERM (the checkpoint is saved)."""

KubeconfigOption = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        help="Kubeconfig file (default: $KUBECONFIG, the pod's ServiceAccount, ~/.kube/config).",
        show_default=False,
    ),
]
ContextOption = Annotated[
    str | None,
    typer.Option(
        "--context", help="Kubeconfig context (default: current-context).", show_default=False
    ),
]

cluster_app = typer.Typer(
    name="cluster",
    help=(
        "Encryption at rest for a cluster's Secrets: write the EncryptionConfiguration, "
        "rewrite Secrets, scan etcd for plaintext, find who can read Secrets."
    ),
    no_args_is_help=True,
)


def _csv(values: list[str] | None) -> list[str]:
    return [item.strip() for value in values or () for item in value.split(",") if item.strip()]


@cluster_app.command("encryption-config")
def encryption_config(
    kms_socket: Annotated[
        str | None,
        typer.Option(
            "--kms-socket",
            help="The KMS v2 plugin's unix socket (what `kustos kms-plugin --listen` serves).",
            show_default=False,
        ),
    ] = None,
    kms_name: Annotated[
        str | None,
        typer.Option(
            "--kms-name",
            help="Provider name, part of every stored value's prefix (k8s:enc:kms:v2:<name>:); never change it.",
            show_default=False,
        ),
    ] = None,
    resources: Annotated[
        list[str] | None,
        typer.Option(
            "--resources",
            help="Resources to encrypt besides Secrets, comma separated (e.g. configmaps).",
            show_default=False,
        ),
    ] = None,
    aescbc: Annotated[
        bool,
        typer.Option("--aescbc", help="Add an aescbc provider with a freshly generated key."),
    ] = False,
    secretbox: Annotated[
        bool,
        typer.Option("--secretbox", help="Add a secretbox provider with a freshly generated key."),
    ] = False,
    timeout: Annotated[
        str, typer.Option("--timeout", help="How long the API server waits for the plugin.")
    ] = "3s",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write to this file (mode 0600) instead of stdout.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write an EncryptionConfiguration: the KMS v2 plugin first, identity last (older Secrets stay readable)."""
    from kustos.cluster.encryption_configs import build_config, render_config

    try:
        document = build_config(
            kms_socket=kms_socket,
            kms_name=kms_name,
            resources=_csv(resources),
            aescbc=aescbc,
            secretbox=secretbox,
            timeout=timeout,
        )
    except KustosError as exc:
        fail(str(exc), code=2)
    text = render_config(document)
    if output is None:
        typer.echo(text, nl=False)
        return
    _write_private(output, text)
    stderr.print(f"wrote {output} (mode 0600)")


def _write_private(path: Path, text: str) -> None:
    try:
        write_atomic(path, text.encode("utf-8"), private=True)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")


@cluster_app.command("scan-etcd")
def scan_etcd(
    endpoints: Annotated[
        list[str],
        typer.Option(
            "--endpoints",
            help="etcd client URLs, comma separated (tried in order), e.g. https://127.0.0.1:2379.",
            show_default=False,
        ),
    ],
    cacert: Annotated[
        Path | None,
        typer.Option(
            "--cacert", help="CA bundle that signed etcd's certificate.", show_default=False
        ),
    ] = None,
    cert: Annotated[
        Path | None,
        typer.Option("--cert", help="Client certificate (PEM) for etcd.", show_default=False),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key", help="Private key (PEM) of the client certificate.", show_default=False
        ),
    ] = None,
    resource: Annotated[
        str, typer.Option("--resource", help="Resource to scan (its etcd key prefix).")
    ] = "secrets",
    etcd_prefix: Annotated[
        str, typer.Option("--etcd-prefix", help="The API server's --etcd-prefix.")
    ] = "/registry",
    only_plaintext: Annotated[
        bool,
        typer.Option("--only-plaintext", help="List only values stored in plaintext."),
    ] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Read etcd directly and report how each Secret is stored (never its value); exit 3 if any is plaintext."""
    from kustos.cluster.scanning import EtcdSettings, prefix_for, scan

    settings = EtcdSettings(endpoints=tuple(_csv(endpoints)), cacert=cacert, cert=cert, key=key)
    rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    seen = [0]

    def progress(count: int) -> None:
        seen[0] += count
        if output is OutputFormat.table and stderr.is_terminal:
            stderr.print(f"scanned {seen[0]} keys...", end="\r")

    try:
        for value in scan(
            settings, prefix=prefix_for(resource, etcd_prefix=etcd_prefix), on_page=progress
        ):
            counts[value.format.kind] += 1
            if only_plaintext and not value.format.plaintext:
                continue
            rows.append(
                {
                    "namespace": value.namespace,
                    "name": value.name,
                    "format": value.format.kind,
                    "key": value.format.key,
                    "key_id": value.format.key_id,
                }
            )
    except KustosError as exc:
        fail(str(exc))
    plaintext = counts.get("plaintext", 0)
    if output is OutputFormat.table:
        render(rows, output, columns=["namespace", "name", "format", "key", "key_id"])
        summary = ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))
        stderr.print(f"{sum(counts.values())} {resource}: {summary or 'none'}", highlight=False)
    else:
        render({"summary": dict(sorted(counts.items())), "items": rows}, output)
    if plaintext:
        stderr.print(
            f"[bold red]{plaintext} {resource} stored in plaintext[/]: "
            "run `kustos cluster rewrite-secrets` after enabling encryption",
            highlight=False,
        )
        raise typer.Exit(EXIT_PLAINTEXT_FOUND)


def _with_kube(
    kubeconfig: str | None, context: str | None, work: Callable[[KubeClient], Awaitable[_T]]
) -> _T:
    """Connect like kubectl does and run ``work`` with a client; Kustos errors end the command."""
    from kustos.kube import KubeClient, find_connection

    async def run() -> _T:
        connection = await find_connection(
            kubeconfig=kubeconfig, context=context, environ=os.environ, home=Path.home()
        )
        async with KubeClient(connection=connection) as kube:
            return await work(kube)

    try:
        return asyncio.run(run())
    except KustosError as exc:
        fail(str(exc))


@cluster_app.command("rewrite-secrets")
def rewrite_secrets(
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace", "-n", help="Only this namespace (default: all).", show_default=False
        ),
    ] = None,
    state_file: Annotated[
        Path | None,
        typer.Option(
            "--state-file",
            help="Checkpoint file (default: ~/.kustos/rewrite-secrets.json).",
            show_default=False,
        ),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option("--restart", help="Ignore the checkpoint and start from the first Secret."),
    ] = False,
    stop_after: Annotated[
        int | None,
        typer.Option(
            "--stop-after", help="Rewrite at most N Secrets in this run.", min=1, show_default=False
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Rewrite every Secret through the API server so it is stored with the first provider (resumable)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from kustos.cluster.rewriting import Checkpoint, RewriteResult
    from kustos.cluster.rewriting import rewrite_secrets as rewrite

    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    path = state_file or Path.home() / ".kustos" / "rewrite-secrets.json"
    scope = f"/{namespace}" if namespace else ""

    async def work(kube: KubeClient) -> tuple[RewriteResult, Checkpoint]:
        server = kube.connection.server + scope
        if restart:
            path.unlink(missing_ok=True)
        checkpoint = Checkpoint(path, server=server)
        with Progress(
            TextColumn("rewriting Secrets"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr,
            transient=output is not OutputFormat.table,
        ) as progress:
            task = progress.add_task("rewrite", total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = await rewrite(
                kube,
                checkpoint=checkpoint,
                namespace=namespace,
                stop=stop,
                max_items=stop_after,
                on_progress=report,
            )
        return result, checkpoint

    try:
        result, checkpoint = _with_kube(kubeconfig, context, work)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    render(
        {
            "secrets": result.total,
            "rewritten": result.rewritten,
            "deleted_meanwhile": result.gone,
            "done_in_earlier_runs": result.skipped_before,
            "finished": not result.interrupted,
            "checkpoint": str(checkpoint.path) if result.interrupted else "",
        },
        output,
    )
    if result.interrupted:
        stderr.print(f"stopped after {result.last}; run the same command again to continue")
        if stop.is_set():
            raise typer.Exit(EXIT_INTERRUPTED)


@cluster_app.command("who-can-read-secrets")
def who_can_read_secrets(
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    include_system: Annotated[
        bool,
        typer.Option(
            "--include-system",
            help="Also list system:* users and groups and kube-system ServiceAccounts.",
        ),
    ] = False,
    review: Annotated[
        bool,
        typer.Option(
            "--review/--no-review",
            help="Cross-check direct verbs with SubjectAccessReview (needs create on subjectaccessreviews).",
        ),
    ] = True,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Who can read Secrets, where and by which route (direct, wildcard, aggregated, pods, exec, impersonate, bind, escalate)."""
    from kustos.cluster.who_can import Report
    from kustos.cluster.who_can import who_can_read_secrets as find

    async def work(kube: KubeClient) -> list[Report]:
        return await find(kube, review=review, include_system=include_system)

    reports = _with_kube(kubeconfig, context, work)
    rows = [report.row() for report in reports]
    render(
        rows,
        output,
        columns=["kind", "subject", "namespace", "can", "route", "secrets", "via", "review"],
    )
    disagreements = [r for r in reports if r.review.startswith("DISAGREES")]
    if disagreements:
        stderr.print(
            f"[bold red]{len(disagreements)} findings disagree with SubjectAccessReview[/]",
            highlight=False,
        )
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``kustos cluster ...`` to the root app."""
    app.add_typer(cluster_app)
