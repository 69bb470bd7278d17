"""CLI area ``seal``: ``kustos seal``, a kubeseal-compatible sealer, and ``kustos seal keys``.

A thin layer over :mod:`kustos.gitops.sealing`, in four parts:

* :mod:`.command` — ``kustos seal``'s flags (kubeseal's, plus ``--format kustos``
  and several ``--cert``), turned into one request;
* :mod:`.modes` — what each mode does (seal, ``--raw``, ``--merge-into``,
  ``--re-encrypt``, ``--validate``, ``--recovery-unseal``, ``--fetch-cert``);
* :mod:`.controller` — where certificates come from and who answers
  ``--validate``/``--re-encrypt`` (a Kustos server or a Sealed Secrets
  controller over HTTP, through :class:`~kustos.client.KustosClient`);
* :mod:`.inputs` — reading manifests and key material, writing results;
* :mod:`.keys` — ``kustos seal keys ...`` on a server or a local keyring.

See docs/sealing.md.
"""

from __future__ import annotations

import typer

from kustos.cli.seal.command import seal
from kustos.cli.seal.keys import keys_app

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``kustos seal`` and ``kustos seal keys ...`` to the root app."""
    seal_app = typer.Typer(
        name="seal",
        help="Seal Secrets for Git (kubeseal compatible); `kustos seal keys` manages sealing keys.",
        no_args_is_help=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    seal_app.callback(invoke_without_command=True)(seal)
    seal_app.add_typer(keys_app, name="keys")
    app.add_typer(seal_app, name="seal")
