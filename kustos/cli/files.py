"""CLI area `files`: sops-compatible encrypted files, and using them without plaintext on disk.

Top-level commands with sops's names and flags: ``kustos encrypt|decrypt|
edit|set|unset|updatekeys|rotate FILE``; ``exec-env`` and ``exec-file`` run a
command with the decrypted values in its environment or in a tmpfs file;
``helm`` runs helm with every encrypted ``-f`` values file decrypted into
tmpfs; ``git textconv`` shows decrypted content to ``git diff``. The work
happens in :mod:`kustos.gitops.sops`; this module only maps flags,
environment variables and ``.sops.yaml`` to it.

``--output`` is sops's flag here: the file to write (not a table/json/yaml
choice); the document format is ``--output-type``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from kustos.cli.output import fail, stderr
from kustos.cli.writing import write_atomic
from kustos.errors import KustosError
from kustos.gitops.sops import (
    EncryptionRules,
    KeyServices,
    MasterKey,
    decrypt_file,
    encrypt_file,
    extract,
    find_config,
    load_rule,
    parse_tree_path,
    recipients_from,
    reencrypt,
    removed_recipients,
    rotate,
    set_value,
    store_for,
    unset_value,
    update_keys,
)
from kustos.gitops.sops.stores import Store

__all__ = ["register"]

_FILE = Annotated[Path, typer.Argument(help="The file to work on.")]
_INPUT_TYPE = Annotated[
    str | None,
    typer.Option(
        "--input-type", help="yaml, json, dotenv, ini or binary (default: from the extension)."
    ),
]
_OUTPUT_TYPE = Annotated[
    str | None, typer.Option("--output-type", help="Format to write (default: the input type).")
]
_OUTPUT = Annotated[
    Path | None, typer.Option("--output", help="Write to this file instead of stdout.")
]
_IN_PLACE = Annotated[bool, typer.Option("--in-place", "-i", help="Write the result back to FILE.")]
_IGNORE_MAC = Annotated[
    bool, typer.Option("--ignore-mac", help="Do not verify the MAC (as sops --ignore-mac).")
]
_CONFIG = Annotated[
    Path | None, typer.Option("--config", help="Path to .sops.yaml (default: search upwards).")
]
_AGE = Annotated[
    str | None,
    typer.Option("--age", "-a", help="Comma-separated age recipients \\[env SOPS_AGE_RECIPIENTS]."),
]
_PGP = Annotated[
    str | None,
    typer.Option("--pgp", "-p", help="Comma-separated PGP fingerprints \\[env SOPS_PGP_FP]."),
]
_KMS = Annotated[
    str | None,
    typer.Option("--kms", "-k", help="Comma-separated AWS KMS ARNs \\[env SOPS_KMS_ARN]."),
]
_VAULT = Annotated[
    str | None,
    typer.Option(
        "--hc-vault-transit", help="Comma-separated transit key URIs \\[env SOPS_VAULT_URIS]."
    ),
]
_CONTEXT = Annotated[
    str | None,
    typer.Option("--encryption-context", help="KMS encryption context: key:value,key:value."),
]
_AWS_PROFILE = Annotated[
    str | None, typer.Option("--aws-profile", help="AWS profile for KMS keys.")
]
_THRESHOLD = Annotated[
    int | None,
    typer.Option(
        "--shamir-secret-sharing-threshold",
        help="Key groups needed to decrypt (with several groups).",
    ),
]
_UNENC_SUFFIX = Annotated[
    str | None, typer.Option("--unencrypted-suffix", help="Keys ending with this stay clear.")
]
_ENC_SUFFIX = Annotated[
    str | None, typer.Option("--encrypted-suffix", help="Only keys ending with this are encrypted.")
]
_UNENC_REGEX = Annotated[
    str | None, typer.Option("--unencrypted-regex", help="Keys matching this stay clear.")
]
_ENC_REGEX = Annotated[
    str | None, typer.Option("--encrypted-regex", help="Only keys matching this are encrypted.")
]
_MAC_ONLY = Annotated[
    bool, typer.Option("--mac-only-encrypted", help="Compute the MAC over encrypted values only.")
]


def _services() -> KeyServices:
    return KeyServices(env=dict(os.environ))


def _store(path: Path, file_type: str | None) -> Store:
    return store_for(path=str(path), file_type=file_type)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


def _write_result(
    data: bytes, *, path: Path, in_place: bool, output: Path | None, private: bool = False
) -> None:
    """``data`` to stdout, or atomically to ``--output``/FILE (mode 0600 when ``private``)."""
    target = path if in_place else output
    if target is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        write_atomic(target, data, private=private)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror}")


def _context(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in (text or "").split(","):
        if pair.strip():
            key, sep, value = pair.partition(":")
            if not sep:
                raise typer.BadParameter(f"encryption context entry {pair!r} must be key:value")
            out[key.strip()] = value.strip()
    return out


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _recipients(
    path: Path,
    *,
    age: str | None,
    pgp: str | None,
    kms: str | None,
    vault: str | None,
    context: str | None,
    aws_profile: str | None,
    threshold: int | None,
    config: Path | None,
    env: Mapping[str, str],
) -> tuple[list[list[MasterKey]], int, EncryptionRules | None]:
    """Key groups from flags, then environment, then ``.sops.yaml`` (as sops chooses)."""
    group = recipients_from(
        age_recipients=_split(age if age is not None else env.get("SOPS_AGE_RECIPIENTS")),
        pgp_fps=_split(pgp if pgp is not None else env.get("SOPS_PGP_FP")),
        kms_arns=_split(kms if kms is not None else env.get("SOPS_KMS_ARN")),
        vault_uris=_split(vault if vault is not None else env.get("SOPS_VAULT_URIS")),
        kms_context=_context(context),
        aws_profile=aws_profile or "",
    )
    if group:
        return [list(group)], threshold or 0, None
    config_path = config or find_config(Path.cwd())
    if config_path is not None:
        rule = load_rule(config_path, path)
        if rule is not None and rule.key_groups:
            return (
                [list(g) for g in rule.key_groups],
                threshold or rule.shamir_threshold,
                rule.rules,
            )
    fail(
        "no recipients: give --age, --pgp, --kms or --hc-vault-transit (or SOPS_AGE_RECIPIENTS, SOPS_PGP_FP, ...), "
        "or a .sops.yaml creation rule matching this file"
    )


def _rules(
    base: EncryptionRules | None,
    *,
    unencrypted_suffix: str | None,
    encrypted_suffix: str | None,
    unencrypted_regex: str | None,
    encrypted_regex: str | None,
    mac_only_encrypted: bool,
) -> EncryptionRules:
    flags = EncryptionRules(
        unencrypted_suffix=unencrypted_suffix or "",
        encrypted_suffix=encrypted_suffix or "",
        unencrypted_regex=unencrypted_regex or "",
        encrypted_regex=encrypted_regex or "",
        mac_only_encrypted=mac_only_encrypted,
    )
    if (
        any((unencrypted_suffix, encrypted_suffix, unencrypted_regex, encrypted_regex))
        or base is None
    ):
        return flags
    if mac_only_encrypted:
        return EncryptionRules(**{**base.to_dict(), "mac_only_encrypted": True})
    return base


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except KustosError as exc:
        fail(str(exc))


@contextlib.contextmanager
def memory_file(data: bytes, *, name: str) -> Iterator[Path]:
    """A 0600 file on tmpfs holding ``data``, removed (with its 0700 directory) afterwards."""
    base = None
    for candidate in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):  # noqa: S108
        if candidate and _is_tmpfs(candidate):
            base = candidate
            break
    if base is None:
        fail(
            "no tmpfs (/dev/shm or $XDG_RUNTIME_DIR) available: refusing to write plaintext to disk"
        )
    directory = tempfile.mkdtemp(prefix="kustos-", dir=base)
    path = Path(directory) / Path(name).name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _is_tmpfs(directory: str) -> bool:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    real = os.path.realpath(directory)
    best, fstype = "", ""
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and (real == fields[1] or real.startswith(fields[1].rstrip("/") + "/")):
            if len(fields[1]) > len(best):
                best, fstype = fields[1], fields[2]
    return fstype in ("tmpfs", "ramfs") and os.access(real, os.W_OK)


_NONINTERACTIVE_EDITS: Final = 3
"""Without a terminal to wait on, an editor that keeps writing invalid syntax gets this many tries."""


def _run_editor(editor: str, path: Path, *, file: Path) -> None:
    try:
        argv = [*shlex.split(editor), str(path)]
    except ValueError as exc:
        fail(f"cannot parse the editor command {editor!r} ($SOPS_EDITOR or $EDITOR): {exc}")
    try:
        done = subprocess.run(argv, check=False)  # noqa: S603 - the user's own editor
    except OSError as exc:
        fail(
            f"cannot run the editor {argv[0]!r} ({exc.strerror or exc}): set $SOPS_EDITOR or "
            f"$EDITOR to an editor on your PATH; {file} was not changed"
        )
    if done.returncode != 0:
        fail(f"editor exited with status {done.returncode}; {file} was not changed")


def _edit_until_valid(editor: str, path: Path, *, store: Store, file: Path) -> bytes:
    """Run the editor on ``path`` until what it leaves parses in the file's format (as sops does).

    Invalid syntax re-opens the editor on the same (tmpfs) file, so no edit
    is lost: on a terminal after the user presses Enter (Ctrl+C gives up,
    leaving FILE as it was), otherwise at once, a few times at most.
    """
    tries = 0
    while True:
        tries += 1
        _run_editor(editor, path, file=file)
        edited = path.read_bytes()
        try:
            store.load_plain(edited)
            return edited
        except KustosError as exc:
            problem = " ".join(str(exc).split())  # parsers' messages span lines
        interactive = sys.stdin.isatty()
        if not interactive and tries >= _NONINTERACTIVE_EDITS:
            fail(
                f"{file}: {problem}; the editor left invalid content {tries} times, {file} was not changed"
            )
        stderr.print(
            f"[yellow]{file}: {problem}.[/] "
            + (
                "Press Enter to return to the editor, or Ctrl+C to leave the file unchanged."
                if interactive
                else "Returning to the editor."
            ),
            highlight=False,
            soft_wrap=True,
        )
        if interactive:
            try:
                input()
            except (EOFError, KeyboardInterrupt):
                fail(f"{file} was not changed")


def _emit_extract(value: Any, store: Store) -> bytes:
    if isinstance(value, dict | list):
        return (
            store.emit_plain(value)
            if store.name in ("yaml", "json")
            else json.dumps(value).encode()
        )
    if isinstance(value, bool):
        return b"true" if value else b"false"
    return str(value).encode("utf-8", "surrogateescape")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""

    @app.command("encrypt")
    def encrypt_cmd(
        file: _FILE,
        age: _AGE = None,
        pgp: _PGP = None,
        kms: _KMS = None,
        hc_vault_transit: _VAULT = None,
        encryption_context: _CONTEXT = None,
        aws_profile: _AWS_PROFILE = None,
        shamir_secret_sharing_threshold: _THRESHOLD = None,
        unencrypted_suffix: _UNENC_SUFFIX = None,
        encrypted_suffix: _ENC_SUFFIX = None,
        unencrypted_regex: _UNENC_REGEX = None,
        encrypted_regex: _ENC_REGEX = None,
        mac_only_encrypted: _MAC_ONLY = False,
        input_type: _INPUT_TYPE = None,
        output_type: _OUTPUT_TYPE = None,
        in_place: _IN_PLACE = False,
        output: _OUTPUT = None,
        config: _CONFIG = None,
    ) -> None:
        """Encrypt FILE in the sops format (values encrypted, keys readable)."""
        with _errors():
            groups, threshold, rule_rules = _recipients(
                file, age=age, pgp=pgp, kms=kms, vault=hc_vault_transit, context=encryption_context,
                aws_profile=aws_profile, threshold=shamir_secret_sharing_threshold, config=config,
                env=os.environ,
            )  # fmt: skip
            rules = _rules(
                rule_rules, unencrypted_suffix=unencrypted_suffix, encrypted_suffix=encrypted_suffix,
                unencrypted_regex=unencrypted_regex, encrypted_regex=encrypted_regex,
                mac_only_encrypted=mac_only_encrypted,
            )  # fmt: skip
            data = _read(file)
            in_store = _store(file, input_type)
            if output_type and output_type != in_store.name:
                data = _store(file, output_type).emit_plain(in_store.load_plain(data))
            out_store = _store(file, output_type or input_type)
            result = encrypt_file(
                data, store=out_store, key_groups=groups, services=_services(),
                shamir_threshold=threshold, rules=rules,
            )  # fmt: skip
            _write_result(result, path=file, in_place=in_place, output=output)

    @app.command("decrypt")
    def decrypt_cmd(
        file: _FILE,
        extract_path: Annotated[
            str | None, typer.Option("--extract", help='Print only this part, e.g. \'["a"]["b"]\'.')
        ] = None,
        ignore_mac: _IGNORE_MAC = False,
        input_type: _INPUT_TYPE = None,
        output_type: _OUTPUT_TYPE = None,
        in_place: _IN_PLACE = False,
        output: _OUTPUT = None,
    ) -> None:
        """Decrypt FILE and print it (or write it with --output / --in-place)."""
        with _errors():
            store = _store(file, input_type)
            result = decrypt_file(
                _read(file), store=store, services=_services(), ignore_mac=ignore_mac
            )
            data = result.plaintext
            if extract_path:
                data = _emit_extract(extract(result.tree, parse_tree_path(extract_path)), store)
            elif output_type and output_type != store.name:
                data = _store(file, output_type).emit_plain(result.tree)
            _write_result(data, path=file, in_place=in_place, output=output, private=True)

    @app.command("edit")
    def edit_cmd(
        file: _FILE,
        age: _AGE = None,
        pgp: _PGP = None,
        kms: _KMS = None,
        hc_vault_transit: _VAULT = None,
        shamir_secret_sharing_threshold: _THRESHOLD = None,
        ignore_mac: _IGNORE_MAC = False,
        input_type: _INPUT_TYPE = None,
        config: _CONFIG = None,
    ) -> None:
        """Open FILE decrypted in $SOPS_EDITOR/$EDITOR (tmpfs), then re-encrypt what changed."""
        with _errors():
            store = _store(file, input_type)
            services = _services()
            editor = os.environ.get("SOPS_EDITOR") or os.environ.get("EDITOR") or "vi"
            previous = None
            plaintext = b""
            if file.exists():
                previous = decrypt_file(
                    _read(file), store=store, services=services, ignore_mac=ignore_mac
                )
                plaintext = previous.plaintext
            with memory_file(plaintext, name=file.name) as tmp:
                edited = _edit_until_valid(editor, tmp, store=store, file=file)
            if previous is not None:
                if edited == plaintext:
                    stderr.print("File has not changed, not writing it.")
                    return
                result = reencrypt(edited, store=store, previous=previous, services=services)
            else:
                groups, threshold, rules = _recipients(
                    file, age=age, pgp=pgp, kms=kms, vault=hc_vault_transit, context=None, aws_profile=None,
                    threshold=shamir_secret_sharing_threshold, config=config, env=os.environ,
                )  # fmt: skip
                result = encrypt_file(
                    edited,
                    store=store,
                    key_groups=groups,
                    services=services,
                    shamir_threshold=threshold,
                    rules=rules,
                )
            _write_result(result, path=file, in_place=True, output=None)

    @app.command("set")
    def set_cmd(
        file: _FILE,
        index: Annotated[str, typer.Argument(help='Where, e.g. \'["a"]["b"]\'.')],
        value: Annotated[
            str, typer.Argument(help="The new value as JSON, e.g. '\"secret\"' or '{\"k\": 1}'.")
        ],
        ignore_mac: _IGNORE_MAC = False,
        input_type: _INPUT_TYPE = None,
    ) -> None:
        """Set one value in FILE (in place); other values keep their ciphertext."""
        with _errors():
            try:
                new_value = json.loads(value)
            except json.JSONDecodeError as exc:
                fail(f"value is not valid JSON: {exc.msg}")
            store = _store(file, input_type)
            services = _services()
            previous = decrypt_file(
                _read(file), store=store, services=services, ignore_mac=ignore_mac
            )
            tree = set_value(previous.tree, parse_tree_path(index), new_value)
            result = reencrypt(
                store.emit_plain(tree), store=store, previous=previous, services=services
            )
            _write_result(result, path=file, in_place=True, output=None)

    @app.command("unset")
    def unset_cmd(
        file: _FILE,
        index: Annotated[str, typer.Argument(help='What to remove, e.g. \'["a"]["b"]\'.')],
        ignore_mac: _IGNORE_MAC = False,
        input_type: _INPUT_TYPE = None,
    ) -> None:
        """Remove one value from FILE (in place)."""
        with _errors():
            store = _store(file, input_type)
            services = _services()
            previous = decrypt_file(
                _read(file), store=store, services=services, ignore_mac=ignore_mac
            )
            tree = unset_value(previous.tree, parse_tree_path(index))
            result = reencrypt(
                store.emit_plain(tree), store=store, previous=previous, services=services
            )
            _write_result(result, path=file, in_place=True, output=None)

    @app.command("rotate")
    def rotate_cmd(
        file: _FILE,
        ignore_mac: _IGNORE_MAC = False,
        input_type: _INPUT_TYPE = None,
        in_place: _IN_PLACE = False,
        output: _OUTPUT = None,
    ) -> None:
        """Generate a new data key and re-encrypt every value with it."""
        with _errors():
            store = _store(file, input_type)
            services = _services()
            previous = decrypt_file(
                _read(file), store=store, services=services, ignore_mac=ignore_mac
            )
            _write_result(
                rotate(previous, store=store, services=services),
                path=file,
                in_place=in_place,
                output=output,
            )

    @app.command("updatekeys")
    def updatekeys_cmd(
        file: _FILE,
        rotate_key: Annotated[
            bool,
            typer.Option(
                "--rotate", help="Also make a new data key, so removed recipients lose access."
            ),
        ] = False,
        yes: Annotated[
            bool, typer.Option("--yes", "-y", help="Do not ask (kustos never asks).")
        ] = False,
        age: _AGE = None,
        pgp: _PGP = None,
        kms: _KMS = None,
        hc_vault_transit: _VAULT = None,
        shamir_secret_sharing_threshold: _THRESHOLD = None,
        input_type: _INPUT_TYPE = None,
        config: _CONFIG = None,
    ) -> None:
        """Re-wrap the data key of FILE for the recipients of .sops.yaml (or the flags), in place."""
        del yes
        with _errors():
            store = _store(file, input_type)
            services = _services()
            groups, threshold, _ = _recipients(
                file, age=age, pgp=pgp, kms=kms, vault=hc_vault_transit, context=None, aws_profile=None,
                threshold=shamir_secret_sharing_threshold, config=config, env=os.environ,
            )  # fmt: skip
            previous = decrypt_file(_read(file), store=store, services=services)
            removed = removed_recipients(previous, groups)
            if rotate_key:
                result = rotate(
                    previous,
                    store=store,
                    services=services,
                    key_groups=groups,
                    shamir_threshold=threshold,
                )
            else:
                result = update_keys(
                    previous,
                    store=store,
                    services=services,
                    key_groups=groups,
                    shamir_threshold=threshold,
                )
                for name in removed:
                    stderr.print(
                        f"[yellow]Warning:[/] removed recipient {name} may still hold the old data key and can "
                        "decrypt this file from Git history and future edits; use --rotate to make a new data key.",
                        highlight=False,
                        soft_wrap=True,
                    )
            _write_result(result, path=file, in_place=True, output=None)
            stderr.print(
                f"{file}: {len(removed)} recipient(s) removed, data key {'rotated' if rotate_key else 'kept'}.",
                highlight=False,
                soft_wrap=True,
            )

    _args = {"allow_extra_args": True, "ignore_unknown_options": True}

    @app.command("exec-env", context_settings=_args)
    def exec_env_cmd(
        ctx: typer.Context,
        file: _FILE,
        ignore_mac: _IGNORE_MAC = False,
        input_type: _INPUT_TYPE = None,
    ) -> None:
        """Run a command (after --) with FILE's top-level values in its environment."""
        command = list(ctx.args)
        if not command:
            fail("give the command to run after --, e.g. kustos exec-env secrets.env -- ./run.sh")
        with _errors():
            store = _store(file, input_type)
            result = decrypt_file(
                _read(file), store=store, services=_services(), ignore_mac=ignore_mac
            )
            if not isinstance(result.tree, dict):
                fail("exec-env needs a file whose top level is a mapping")
            env = dict(os.environ)
            for key, value in result.tree.items():
                if isinstance(value, dict | list):
                    continue
                env[str(key)] = _emit_extract(value, store).decode("utf-8", "surrogateescape")
        argv = ["/bin/sh", "-c", command[0]] if len(command) == 1 else command
        raise typer.Exit(subprocess.run(argv, env=env, check=False).returncode)  # noqa: S603

    @app.command("exec-file", context_settings=_args)
    def exec_file_cmd(
        ctx: typer.Context,
        file: _FILE,
        filename: Annotated[
            str | None, typer.Option("--filename", help="Name of the tmpfs file.")
        ] = None,
        ignore_mac: _IGNORE_MAC = False,
        input_type: _INPUT_TYPE = None,
        output_type: _OUTPUT_TYPE = None,
    ) -> None:
        """Run a command (after --) with {} replaced by a tmpfs file holding FILE decrypted."""
        command = list(ctx.args)
        if not command:
            fail("give the command to run after --, e.g. kustos exec-file values.yaml -- cat {}")
        with _errors():
            store = _store(file, input_type)
            result = decrypt_file(
                _read(file), store=store, services=_services(), ignore_mac=ignore_mac
            )
            data = result.plaintext
            if output_type and output_type != store.name:
                data = _store(file, output_type).emit_plain(result.tree)
        with memory_file(data, name=filename or file.name) as tmp:
            argv = [part.replace("{}", str(tmp)) for part in command]
            if len(argv) == 1:
                argv = ["/bin/sh", "-c", argv[0]]
            code = subprocess.run(argv, check=False).returncode  # noqa: S603
        raise typer.Exit(code)

    @app.command("helm", context_settings={**_args, "help_option_names": []})
    def helm_cmd(ctx: typer.Context) -> None:
        """Run helm with every encrypted -f/--values file decrypted into tmpfs (removed afterwards)."""
        args = list(ctx.args)
        helm = os.environ.get("KUSTOS_HELM") or os.environ.get("HELM_BIN") or "helm"
        services = _services()
        with contextlib.ExitStack() as stack:
            out: list[str] = []
            i = 0
            while i < len(args):
                arg = args[i]
                value: str | None = None
                prefix = ""
                if arg in ("-f", "--values") and i + 1 < len(args):
                    out.append(arg)
                    value = args[i + 1]
                    i += 2
                elif arg.startswith("--values="):
                    prefix, value = "--values=", arg[len("--values=") :]
                    i += 1
                elif arg.startswith("-f") and len(arg) > 2:
                    prefix, value = "-f", arg[2:].lstrip("=")
                    i += 1
                else:
                    out.append(arg)
                    i += 1
                    continue
                paths = []
                for item in value.split(","):
                    paths.append(
                        _helm_values(Path(item), services, stack)
                        if item and Path(item).is_file()
                        else item
                    )
                out.append(prefix + ",".join(paths))
            try:
                code = subprocess.run([helm, *out], check=False).returncode  # noqa: S603
            except FileNotFoundError:
                fail(f"{helm}: helm is not installed or not on PATH")
        raise typer.Exit(code)

    git = typer.Typer(
        help="Git integration: decrypted diffs of encrypted files.", no_args_is_help=True
    )

    @git.command("textconv")
    def textconv_cmd(file: _FILE) -> None:
        """Print FILE decrypted if this user can; otherwise print it as it is (for git diff)."""
        data = _read(file)
        store = _store(file, None)
        if store.looks_encrypted(data):
            try:
                data = decrypt_file(data, store=store, services=_services()).plaintext
            except KustosError:
                pass
        sys.stdout.buffer.write(data)

    app.add_typer(git, name="git")


def _helm_values(path: Path, services: KeyServices, stack: contextlib.ExitStack) -> str:
    data = path.read_bytes()
    store = store_for(path=str(path))
    if not store.looks_encrypted(data):
        return str(path)
    try:
        plaintext = decrypt_file(data, store=store, services=services).plaintext
    except KustosError as exc:
        fail(f"{path}: {exc}")
    return str(stack.enter_context(memory_file(plaintext, name=path.name)))
