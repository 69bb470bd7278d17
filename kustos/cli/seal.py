"""CLI area ``seal``: ``kustos seal``, a kubeseal-compatible sealer, and ``kustos seal keys``.

A thin layer over :mod:`kustos.gitops.sealing`. ``kustos seal`` reads a Secret
(stdin or ``-f``) and prints a SealedSecret, taking kubeseal's flags
(``--cert``, ``--fetch-cert``, ``--scope``, ``--raw``, ``--merge-into``,
``--re-encrypt``, ``--validate``, ``--recovery-unseal``, ``-o``, ``-w``...)
plus Kustos' (``--format kustos``, several ``--cert``). Where kubeseal talks to
the controller, ``kustos seal`` talks HTTP to ``--controller-url`` (default
``$KUSTOS_ADDR``), or works offline when given private keys.
``kustos seal keys list|rotate|cert|backup|import|config`` manage the keys a
Kustos server holds (``--server`` / ``$KUSTOS_ADDR``; stored encrypted by its
barrier), or a local keyring file with ``--keyring`` (``generate`` is local only).
See docs/sealing.md.
"""

from __future__ import annotations

import enum
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from kustos.cli.connection import (
    CaCertOption,
    TlsSkipVerifyOption,
    TokenOption,
    open_client,
    resolve_settings,
)
from kustos.cli.output import OutputFormat, OutputOption, fail, render, stderr
from kustos.client import KustosClient
from kustos.crypto.sealing import (
    SealingCertificate,
    SealingPrivateKey,
    generate_sealing_key,
    load_certificates,
    load_private_keys,
)
from kustos.errors import DecryptionError, KustosError
from kustos.gitops.sealing import (
    RenewalPolicy,
    Scope,
    SealFormat,
    SealingKeyEntry,
    SealingKeyring,
    SecretManifest,
    dump_manifest,
    dump_manifests,
    format_of,
    import_sealed_secrets_keys,
    is_backup,
    load_manifest,
    load_manifests,
    merge_into,
    open_values,
    parse_secret,
    read_backup,
    renew,
    seal_raw,
    seal_secret,
    unseal,
    write_backup,
)
from kustos.sensitive import Sensitive

__all__ = ["register"]

_PASSPHRASE_ENV = "KUSTOS_BACKUP_PASSPHRASE"  # noqa: S105 - the name of an env var, not a secret
_DEFAULT_ADDR = "http://127.0.0.1:8200"
_HTTP_TIMEOUT = 10.0


class ManifestOutput(enum.StrEnum):
    """kubeseal's output formats."""

    json = "json"
    yaml = "yaml"


def _now() -> datetime:
    return datetime.now(UTC)


def _read_input(path: str | None) -> bytes:
    if path in (None, "-"):
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


def _write_output(text: str, path: str | None) -> None:
    if path in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(path).write_text(text)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for v in values or [] for part in v.split(",") if part.strip()]


def _http_get(url: str) -> bytes:
    try:
        response = httpx.get(url, timeout=_HTTP_TIMEOUT, follow_redirects=True)
    except httpx.HTTPError as exc:
        fail(f"cannot fetch {url}: {exc}")
    if response.status_code != 200:
        fail(f"cannot fetch {url}: HTTP {response.status_code}")
    return response.content


def _open_cert(ref: str) -> bytes:
    """kubeseal's ``--cert``: a local file, or an http(s)/file URL."""
    if ref.startswith(("http://", "https://")):
        return _http_get(ref)
    path = ref.removeprefix("file://")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read certificate {ref}: {exc.strerror}")


def _certificates(
    refs: list[str], controller_url: str, *, bundle: bool = False
) -> list[SealingCertificate]:
    """``--cert`` sources, else the controller's certificate.

    With ``bundle`` (native format) a Kustos server's ``sys/sealing/cert`` is
    asked first: it adds the X25519 exchange certificate (fast unsealing).
    """
    base = controller_url.rstrip("/")
    if not _split(refs) and bundle:
        try:
            response = httpx.get(f"{base}/v1/sys/sealing/cert", timeout=_HTTP_TIMEOUT)
            if response.status_code == 200:
                return load_certificates(response.content)[:1]
        except (httpx.HTTPError, KustosError):
            pass  # not a Kustos server: fall back to cert.pem
    sources = _split(refs) or [f"{base}/v1/cert.pem"]
    certs: list[SealingCertificate] = []
    for ref in sources:
        try:
            certs.extend(load_certificates(_open_cert(ref))[:1])
        except KustosError as exc:
            fail(f"certificate {ref}: {exc}")
    return certs


def _passphrase(passphrase_file: Path | None) -> Sensitive[str] | None:
    if passphrase_file is not None:
        try:
            return Sensitive(passphrase_file.read_text().rstrip("\r\n"))
        except OSError as exc:
            fail(f"cannot read passphrase file {passphrase_file}: {exc.strerror}")
    env = os.environ.get(_PASSPHRASE_ENV)
    return Sensitive(env) if env else None


def _age_identities(paths: list[Path] | None) -> list[bytes]:
    out = []
    for path in paths or []:
        try:
            out.append(path.read_bytes())
        except OSError as exc:
            fail(f"cannot read age identity {path}: {exc.strerror}")
    return out


def _private_keys_from(
    data: bytes, *, source: str, passphrase: Sensitive[str] | None, identities: list[bytes]
) -> list[SealingPrivateKey]:
    """PEM keys, a backup bundle, a keyring file, or Sealed Secrets key Secrets."""
    if is_backup(data):
        return read_backup(data, passphrase=passphrase, age_identities=identities).private_keys()
    if data.lstrip().startswith(b"{") and b"sealing-keyring" in data:
        return SealingKeyring.from_bytes(data).private_keys()
    if data.lstrip().startswith(b"-----BEGIN"):
        return load_private_keys(data)
    docs = load_manifests(data, source=source)
    return [e.private_key for e in import_sealed_secrets_keys(docs, require_label=False)]


def _private_keys(
    refs: list[str] | None, *, passphrase: Sensitive[str] | None, identities: list[bytes]
) -> list[SealingPrivateKey]:
    keys: list[SealingPrivateKey] = []
    for ref in _split(refs):
        try:
            data = Path(ref).read_bytes()
        except OSError as exc:
            fail(f"cannot read private key {ref}: {exc.strerror}")
        try:
            keys.extend(
                _private_keys_from(data, source=ref, passphrase=passphrase, identities=identities)
            )
        except KustosError as exc:
            fail(f"private key {ref}: {exc}")
    if not keys:
        fail(
            "no private key given: use --recovery-private-key FILE (PEM, key backup or Sealed Secrets key Secret)"
        )
    return keys


def _sealed_inputs(data: bytes, source: str) -> list[dict[str, Any]]:
    docs = load_manifests(data, source=source)
    for doc in docs:
        format_of(doc, source=source)
    return docs


def _token_header() -> dict[str, str]:
    """A Kustos token (``KUSTOS_TOKEN``, ``VAULT_TOKEN`` or ``~/.kustos/token``) for verify/rotate."""
    try:
        settings = resolve_settings(
            address=None,
            token=None,
            tls_skip_verify=False,
            ca_cert=None,
            env=os.environ,
            home=Path.home(),
        )
    except KustosError:
        return {}
    return {"X-Vault-Token": settings.token.reveal()} if settings.token is not None else {}


def _controller_post(controller_url: str, path: str, body: bytes) -> httpx.Response:
    """POST to the controller: the body as JSON (kubeseal sends JSON), with a token if one is set."""
    url = f"{controller_url.rstrip('/')}{path}"
    try:
        doc = load_manifest(body, source="input")
    except KustosError as exc:
        fail(str(exc))
    try:
        return httpx.post(
            url,
            content=json.dumps(doc).encode(),
            timeout=_HTTP_TIMEOUT,
            headers={"Content-Type": "application/json", **_token_header()},
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach the controller at {url}: {exc}")


def _errors(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return ""
    return f": {'; '.join(str(e) for e in errors)}" if isinstance(errors, list) and errors else ""


def _guess_format(data: bytes) -> ManifestOutput:
    return ManifestOutput.json if data.lstrip().startswith(b"{") else ManifestOutput.yaml


def _seal(
    ctx: typer.Context,
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="Secret manifest to read (default: stdin).")
    ] = None,
    write: Annotated[
        str | None,
        typer.Option(
            "--sealed-secret-file", "-w", help="Write the result to FILE instead of stdout."
        ),
    ] = None,
    output: Annotated[
        ManifestOutput | None,
        typer.Option("--output", "-o", help="json (default) or yaml.", case_sensitive=False),
    ] = None,
    cert: Annotated[
        list[str] | None,
        typer.Option(
            "--cert",
            help="Certificate file or http(s) URL; repeat (or comma-separate) for several recipients.",
        ),
    ] = None,
    fetch_cert: Annotated[
        bool,
        typer.Option(
            "--fetch-cert",
            help="Print the controller's certificate (GET <controller>/v1/cert.pem) and exit.",
        ),
    ] = False,
    controller_url: Annotated[
        str,
        typer.Option(
            "--controller-url", envvar="KUSTOS_ADDR", help="Kustos server / controller URL."
        ),
    ] = _DEFAULT_ADDR,
    scope: Annotated[
        Scope | None,
        typer.Option(
            "--scope",
            help="strict, namespace-wide or cluster-wide (default: from the Secret's annotations, else strict).",
        ),
    ] = None,
    fmt: Annotated[
        SealFormat,
        typer.Option("--format", help="bitnami (Sealed Secrets, default) or kustos (native)."),
    ] = SealFormat.bitnami,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Seal one value (from --from-file or stdin) and print only its ciphertext.",
        ),
    ] = False,
    from_file: Annotated[
        str | None,
        typer.Option(
            "--from-file", help="With --raw: the file whose contents to seal ([key=]path)."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Override metadata.name (needed by --raw in strict scope)."),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Override metadata.namespace.")
    ] = None,
    merge_into_file: Annotated[
        Path | None,
        typer.Option(
            "--merge-into", help="Seal the input's keys into this SealedSecret file, in place."
        ),
    ] = None,
    re_encrypt: Annotated[
        bool, typer.Option("--re-encrypt", help="Re-encrypt a SealedSecret with the newest key.")
    ] = False,
    validate: Annotated[
        bool, typer.Option("--validate", help="Check that a SealedSecret can be unsealed.")
    ] = False,
    recovery_unseal: Annotated[
        bool,
        typer.Option(
            "--recovery-unseal",
            help="Unseal offline with --recovery-private-key; print the Secret.",
        ),
    ] = False,
    recovery_private_key: Annotated[
        list[str] | None,
        typer.Option(
            "--recovery-private-key",
            help="PEM key, key backup bundle, keyring or key Secret; repeatable or comma-separated.",
        ),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file", help=f"Passphrase of a key backup (or ${_PASSPHRASE_ENV})."
        ),
    ] = None,
    age_identity: Annotated[
        list[Path] | None,
        typer.Option("--age-identity", help="age identity file for an age key backup; repeatable."),
    ] = None,
    allow_empty_data: Annotated[
        bool, typer.Option("--allow-empty-data", help="Seal a Secret with no data.")
    ] = False,
    no_key_id_hint: Annotated[
        bool, typer.Option("--no-key-id-hint", help="Omit the kustos.io/sealing-key-id annotation.")
    ] = False,
) -> None:
    """Seal a Kubernetes Secret into a SealedSecret (kubeseal compatible)."""
    if ctx.invoked_subcommand is not None:
        return
    now = _now()
    out_fmt = output or ManifestOutput.json
    try:
        if fetch_cert:
            if cert:
                _write_output(
                    "".join(c.pem().decode() for c in _certificates(cert, controller_url)), write
                )
            else:
                _write_output(
                    _http_get(f"{controller_url.rstrip('/')}/v1/cert.pem").decode(), write
                )
            return
        passphrase = _passphrase(passphrase_file)
        identities = _age_identities(age_identity)
        if recovery_unseal:
            keys = _private_keys(recovery_private_key, passphrase=passphrase, identities=identities)
            data = _read_input(file)
            secrets = [
                unseal(doc, keys=keys).to_manifest()
                for doc in _sealed_inputs(data, file or "stdin")
            ]
            _write_output(dump_manifests(secrets, out_fmt.value), write)
            return
        if validate:
            data = _read_input(file)
            if recovery_private_key:
                keys = _private_keys(
                    recovery_private_key, passphrase=passphrase, identities=identities
                )
                for doc in _sealed_inputs(data, file or "stdin"):
                    open_values(doc, keys=keys)
                return
            response = _controller_post(controller_url, "/v1/verify", data)
            if response.status_code == 409:
                fail("unable to decrypt sealed secret")
            if response.status_code != 200:
                fail(
                    f"cannot validate sealed secret: HTTP {response.status_code}{_errors(response)}"
                )
            return
        if re_encrypt:
            data = _read_input(file)
            if recovery_private_key:
                keys = _private_keys(
                    recovery_private_key, passphrase=passphrase, identities=identities
                )
                certs = _certificates(cert or [], controller_url)
                results = []
                for doc in _sealed_inputs(data, file or "stdin"):
                    results.extend(
                        _reencrypt(
                            doc, keys=keys, certificates=certs, now=now, hint=not no_key_id_hint
                        )
                    )
                _write_output(dump_manifests(results, out_fmt.value), write)
                return
            response = _controller_post(controller_url, "/v1/rotate", data)
            if response.status_code == 409:
                fail("unable to rotate secret")
            if response.status_code != 200:
                fail(f"cannot re-encrypt secret: HTTP {response.status_code}{_errors(response)}")
            _write_output(
                dump_manifest(load_manifest(response.content, source="controller"), out_fmt.value),
                write,
            )
            return
        if raw:
            if fmt is SealFormat.kustos:
                fail(
                    "--raw makes a Sealed Secrets value; the native format seals whole objects (drop --format kustos)"
                )
            value = _read_input(from_file.split("=", 1)[-1] if from_file else None)
            certs = _certificates(cert or [], controller_url)
            sealed = [
                seal_raw(
                    Sensitive(value),
                    certificate=c,
                    now=now,
                    scope=scope or Scope.strict,
                    name=name or "",
                    namespace=namespace or "",
                )
                for c in certs
            ]
            _write_output("\n".join(sealed), write)
            return
        data = _read_input(file)
        secret = parse_secret(load_manifest(data, source=file or "stdin"), source=file or "stdin")
        certs = _certificates(cert or [], controller_url, bundle=fmt is SealFormat.kustos)
        if merge_into_file is not None:
            try:
                existing_bytes = merge_into_file.read_bytes()
            except OSError as exc:
                fail(f"cannot read {merge_into_file}: {exc.strerror}")
            existing = load_manifest(existing_bytes, source=str(merge_into_file))
            merged = merge_into(
                existing,
                secret,
                certificates=certs,
                now=now,
                scope=scope,
                allow_empty_data=allow_empty_data,
            )
            text = dump_manifest(merged, (output or _guess_format(existing_bytes)).value)
            tmp = merge_into_file.with_name(merge_into_file.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(merge_into_file)
            return
        docs = seal_secret(
            secret,
            certificates=certs,
            now=now,
            fmt=fmt,
            scope=scope,
            name=name,
            namespace=namespace,
            allow_empty_data=allow_empty_data,
            key_id_hint=not no_key_id_hint,
        )
        _write_output(dump_manifests(docs, out_fmt.value), write)
    except DecryptionError as exc:
        fail(str(exc))
    except KustosError as exc:
        fail(str(exc))


def _reencrypt(
    doc: dict[str, Any],
    *,
    keys: list[SealingPrivateKey],
    certificates: list[SealingCertificate],
    now: datetime,
    hint: bool,
) -> list[dict[str, Any]]:
    """Offline ``--re-encrypt``: open every value, seal it again for ``certificates``, keep the template."""
    fmt = format_of(doc)
    values = open_values(doc, keys=keys)
    meta = doc.get("metadata") or {}
    template = (doc.get("spec") or {}).get("template") or {}
    secret = SecretManifest(
        metadata=dict(meta),
        data=values,
        type=template.get("type"),
        immutable=template.get("immutable"),
    )
    fresh = seal_secret(
        secret, certificates=certificates, now=now, fmt=fmt, allow_empty_data=True, key_id_hint=hint
    )
    for new in fresh:
        new["spec"]["template"] = template
    return fresh


# ---------------------------------------------------------------- keys

KeyringOption = Annotated[
    Path,
    typer.Option(
        "--keyring",
        envvar="KUSTOS_SEALING_KEYRING",
        help="Local keyring file (JSON, holds private keys: mode 0600).",
    ),
]
LocalOrServerKeyring = Annotated[
    Path | None,
    typer.Option(
        "--keyring",
        envvar="KUSTOS_SEALING_KEYRING",
        help="Local keyring file (offline mode); without it the command talks to the server.",
        show_default=False,
    ),
]
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        "--address",
        help="Kustos server holding the sealing keys (env KUSTOS_ADDR or VAULT_ADDR).",
        show_default=False,
    ),
]


def _server_mode(keyring: Path | None, server: str | None) -> bool:
    """Server mode unless a local ``--keyring`` is given; a server address must be known then."""
    if keyring is not None:
        return False
    if server or os.environ.get("KUSTOS_ADDR") or os.environ.get("VAULT_ADDR"):
        return True
    fail(
        "no keyring: pass --keyring FILE (local keys) or --server URL / $KUSTOS_ADDR (keys held by a Kustos server)",
        code=2,
    )


@contextmanager
def _server(
    server: str | None, token: str | None, tls_skip_verify: bool, ca_cert: Path | None
) -> Iterator[KustosClient]:
    with open_client(
        address=server, token=token, tls_skip_verify=tls_skip_verify, ca_cert=ca_cert
    ) as client:
        yield client


_KEY_COLUMNS = ["key_id", "created", "not_after", "bits", "origin", "active"]


def _load_keyring(path: Path, *, must_exist: bool = True) -> SealingKeyring:
    if not path.exists():
        if must_exist:
            fail(
                f"keyring {path} does not exist (create it with `kustos seal keys generate --keyring {path}`)"
            )
        return SealingKeyring()
    try:
        return SealingKeyring.from_bytes(path.read_bytes())
    except KustosError as exc:
        fail(f"keyring {path}: {exc}")


def _save_keyring(path: Path, keyring: SealingKeyring) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(keyring.to_bytes().reveal())
    tmp.replace(path)


def _parse_duration(text: str) -> timedelta:
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    text = text.strip()
    if text[-1:] in units and text[:-1].isdigit():
        return timedelta(**{units[text[-1]]: int(text[:-1])})
    fail(f"invalid duration {text!r} (use e.g. 30d, 720h)")


def _parse_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"invalid time {text!r} (use RFC 3339, e.g. 2025-01-31T00:00:00Z)")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _keys_generate(
    keyring_path: KeyringOption,
    bits: Annotated[int, typer.Option("--bits", help="RSA key size.")] = 4096,
    if_due: Annotated[
        bool,
        typer.Option("--if-due", help="Only add a key when the renewal policy says one is due."),
    ] = False,
    period: Annotated[
        str,
        typer.Option("--renew-period", help="Renewal period for --if-due (e.g. 30d; 0 disables)."),
    ] = "30d",
    cutoff: Annotated[
        str | None,
        typer.Option(
            "--key-cutoff-time", help="A newest key older than this is replaced (RFC 3339)."
        ),
    ] = None,
    cert_out: Annotated[
        Path | None,
        typer.Option("--cert-out", help="Also write the newest certificate (PEM) here."),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Add a sealing key (RSA + self-signed certificate) to a local keyring file."""
    now = _now()
    keyring = _load_keyring(keyring_path, must_exist=False)
    policy = RenewalPolicy(
        period=None if period.strip() in ("0", "0d") else _parse_duration(period),
        cutoff=_parse_time(cutoff) if cutoff else None,
    )
    if not if_due:
        policy = RenewalPolicy(period=timedelta(microseconds=1), cutoff=None)
    try:
        with stderr.status(f"generating an RSA-{bits} sealing key"):
            keyring, entry = renew(
                keyring,
                policy=policy,
                now=now,
                generate=lambda t: generate_sealing_key(now=t, bits=bits),
            )
    except KustosError as exc:
        fail(str(exc))
    if entry is not None:
        _save_keyring(keyring_path, keyring)
    if cert_out is not None:
        cert_out.write_bytes(keyring.sealing_certificate().pem())
    render({"generated": entry is not None, **(entry or keyring.entries[-1]).describe()}, output)


def _local_rows(keyring: SealingKeyring) -> list[dict[str, Any]]:
    newest = keyring.newest
    return [
        {
            "key_id": e.key_id,
            "created": e.created_at.isoformat(),
            "not_after": e.certificate.not_after.isoformat(),
            "bits": e.certificate.key_size,
            "origin": e.origin,
            "active": e is newest,
        }
        for e in keyring.entries
    ]


def _keys_list(
    keyring_path: LocalOrServerKeyring = None,
    server: ServerOption = None,
    token: TokenOption = None,
    tls_skip_verify: TlsSkipVerifyOption = False,
    ca_cert: CaCertOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the sealing keys (the active one seals, all unseal): on the server, or in --keyring."""
    if _server_mode(keyring_path, server):
        with _server(server, token, tls_skip_verify, ca_cert) as client:
            rows: list[dict[str, Any]] = [dict(k) for k in client.sealing.list_keys()]
    else:
        assert keyring_path is not None  # noqa: S101 - _server_mode returned False
        rows = _local_rows(_load_keyring(keyring_path))
    render(rows, output, columns=_KEY_COLUMNS)


def _keys_cert(
    keyring_path: LocalOrServerKeyring = None,
    server: ServerOption = None,
    rsa_only: Annotated[
        bool,
        typer.Option(
            "--rsa-only",
            help="Only the RSA certificate (what /v1/cert.pem serves), no X25519 exchange cert.",
        ),
    ] = False,
) -> None:
    """Print the sealing certificate bundle: the newest RSA cert and its X25519 exchange cert."""
    if _server_mode(keyring_path, server):
        with _server(server, None, False, None) as client:
            pem = (
                client.sealing.read_certificate()
                if rsa_only
                else client.sealing.read_certificate_bundle()
            )
        sys.stdout.write(pem.decode())
        return
    assert keyring_path is not None  # noqa: S101
    try:
        keyring = _load_keyring(keyring_path)
        bundle = keyring.sealing_bundle()
        sys.stdout.write((bundle.pem() if rsa_only else bundle.bundle_pem()).decode())
    except KustosError as exc:
        fail(str(exc))


def _keys_rotate(
    keyring_path: LocalOrServerKeyring = None,
    server: ServerOption = None,
    token: TokenOption = None,
    tls_skip_verify: TlsSkipVerifyOption = False,
    ca_cert: CaCertOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Make a new sealing key now (old keys stay for unsealing)."""
    if _server_mode(keyring_path, server):
        with (
            _server(server, token, tls_skip_verify, ca_cert) as client,
            stderr.status("generating a sealing key on the server"),
        ):
            info = dict(client.sealing.rotate_key())
        render(info, output)
        return
    assert keyring_path is not None  # noqa: S101
    keyring = _load_keyring(keyring_path, must_exist=False)
    with stderr.status("generating an RSA-4096 sealing key"):
        keyring, _ = renew(
            keyring, policy=RenewalPolicy(period=timedelta(microseconds=1)), now=_now()
        )
    _save_keyring(keyring_path, keyring)
    render(_local_rows(keyring)[-1], output)


def _keys_config(
    server: ServerOption = None,
    token: TokenOption = None,
    tls_skip_verify: TlsSkipVerifyOption = False,
    ca_cert: CaCertOption = None,
    renew_period: Annotated[
        str | None,
        typer.Option("--renew-period", help="Renewal period (e.g. 30d, 720h; 0 disables)."),
    ] = None,
    cutoff: Annotated[
        str | None,
        typer.Option(
            "--key-cutoff-time",
            help="RFC 3339 time: a newest key made before it is replaced at once ('' clears).",
        ),
    ] = None,
    key_bits: Annotated[
        int | None, typer.Option("--key-bits", help="Size of new RSA sealing keys (>= 2048).")
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show or change the server's sealing key renewal settings."""
    with _server(server, token, tls_skip_verify, ca_cert) as client:
        if renew_period is None and cutoff is None and key_bits is None:
            config = client.sealing.read_config()
        else:
            config = client.sealing.configure(
                renew_period=renew_period, key_cutoff_time=cutoff, key_bits=key_bits
            )
    render(config, output)


def _keys_backup(
    write: Annotated[
        Path, typer.Option("--write", "-w", help="Where to write the encrypted bundle.")
    ],
    age_recipient: Annotated[
        list[str] | None,
        typer.Option("--age-recipient", help="age X25519 recipient (age1...); repeatable."),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option("--passphrase-file", help=f"Passphrase file (or ${_PASSPHRASE_ENV})."),
    ] = None,
    keyring_path: LocalOrServerKeyring = None,
    server: ServerOption = None,
    token: TokenOption = None,
    tls_skip_verify: TlsSkipVerifyOption = False,
    ca_cert: CaCertOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Write an encrypted backup bundle of every key (age or passphrase); the server's needs sudo."""
    recipients = _split(age_recipient)
    passphrase = None if recipients else _passphrase(passphrase_file)
    if not recipients and passphrase is None:
        fail(
            f"give --age-recipient or a passphrase (--passphrase-file or ${_PASSPHRASE_ENV})",
            code=2,
        )
    if _server_mode(keyring_path, server):
        with _server(server, token, tls_skip_verify, ca_cert) as client:
            answer = client.sealing.backup_keys(
                passphrase=passphrase.reveal() if passphrase is not None else None,
                age_recipients=recipients,
            )
        try:
            write.write_text(str(answer["backup"]))
        except OSError as exc:
            fail(f"cannot write {write}: {exc.strerror}")
        render(
            {
                "written": str(write),
                "keys": answer.get("keys"),
                "encryption": answer.get("encryption"),
            },
            output,
        )
        return
    assert keyring_path is not None  # noqa: S101
    keyring = _load_keyring(keyring_path)
    try:
        bundle = write_backup(keyring, passphrase=passphrase, age_recipients=recipients)
    except KustosError as exc:
        fail(str(exc))
    write.write_bytes(bundle)
    render(
        {
            "written": str(write),
            "keys": len(keyring),
            "encryption": "age" if recipients else "passphrase",
        },
        output,
    )


def _keys_import(
    files: Annotated[
        list[Path],
        typer.Option(
            "--file",
            "-f",
            help="Sealed Secrets key Secrets (YAML/JSON/List), a key backup, or a keyring; repeatable.",
        ),
    ],
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file", help=f"Passphrase of a key backup (or ${_PASSPHRASE_ENV})."
        ),
    ] = None,
    age_identity: Annotated[
        list[Path] | None,
        typer.Option("--age-identity", help="age identity file for an age backup."),
    ] = None,
    keyring_path: LocalOrServerKeyring = None,
    server: ServerOption = None,
    token: TokenOption = None,
    tls_skip_verify: TlsSkipVerifyOption = False,
    ca_cert: CaCertOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Import Sealed Secrets key Secrets or a backup bundle (into the server: sudo; or --keyring)."""
    if _server_mode(keyring_path, server):
        _import_to_server(
            files,
            passphrase_file=passphrase_file,
            age_identity=age_identity,
            client_args=(server, token, tls_skip_verify, ca_cert),
            output=output,
        )
        return
    assert keyring_path is not None  # noqa: S101
    keyring = _load_keyring(keyring_path, must_exist=False)
    new: list[SealingKeyEntry] = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}")
        try:
            if is_backup(data):
                new.extend(
                    read_backup(
                        data,
                        passphrase=_passphrase(passphrase_file),
                        age_identities=_age_identities(age_identity),
                    ).entries
                )
            elif data.lstrip().startswith(b"{") and b"sealing-keyring" in data:
                new.extend(SealingKeyring.from_bytes(data).entries)
            else:
                new.extend(import_sealed_secrets_keys(load_manifests(data, source=str(path))))
        except KustosError as exc:
            fail(f"{path}: {exc}")
    before = {e.key_id for e in keyring.entries}
    keyring = keyring.with_entries(new)
    _save_keyring(keyring_path, keyring)
    render(
        [{**e.describe(), "imported": e.key_id not in before} for e in new],
        output,
        columns=["key_id", "created_at", "origin", "imported"],
    )


def _import_to_server(
    files: list[Path],
    *,
    passphrase_file: Path | None,
    age_identity: list[Path] | None,
    client_args: tuple[str | None, str | None, bool, Path | None],
    output: OutputFormat,
) -> None:
    manifests: list[str] = []
    backups: list[str] = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}")
        if is_backup(data):
            backups.append(data.decode())
        elif data.lstrip().startswith(b"{") and b"sealing-keyring" in data:
            fail(f"{path}: a plaintext keyring file; import it with --keyring, or back it up first")
        else:
            try:
                load_manifests(data, source=str(path))  # a clear local error for bad YAML
            except KustosError as exc:
                fail(f"{path}: {exc}")
            manifests.append(data.decode())
    passphrase = _passphrase(passphrase_file)
    identities = [i.decode() for i in _age_identities(age_identity)]
    rows: list[dict[str, Any]] = []
    with _server(*client_args) as client:
        for text in manifests:
            rows.extend(dict(k) for k in client.sealing.import_keys(manifest=text))
        for text in backups:
            rows.extend(
                dict(k)
                for k in client.sealing.import_keys(
                    backup=text,
                    passphrase=passphrase.reveal() if passphrase is not None else None,
                    age_identities=identities,
                )
            )
    render(rows, output, columns=["key_id", "created", "origin", "active", "imported"])


def register(app: typer.Typer) -> None:
    """Add ``kustos seal`` and ``kustos seal keys ...`` to the root app."""
    seal_app = typer.Typer(
        name="seal",
        help="Seal Secrets for Git (kubeseal compatible); `kustos seal keys` manages sealing keys.",
        no_args_is_help=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    seal_app.callback(invoke_without_command=True)(_seal)
    keys_app = typer.Typer(
        name="keys",
        help="Sealing keys on a Kustos server (--server / $KUSTOS_ADDR) or in a local --keyring file.",
        no_args_is_help=True,
    )
    keys_app.command("generate")(_keys_generate)
    keys_app.command("list")(_keys_list)
    keys_app.command("cert")(_keys_cert)
    keys_app.command("rotate")(_keys_rotate)
    keys_app.command("config")(_keys_config)
    keys_app.command("backup")(_keys_backup)
    keys_app.command("import")(_keys_import)
    seal_app.add_typer(keys_app, name="keys")
    app.add_typer(seal_app, name="seal")
