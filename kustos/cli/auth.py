"""``kustos login`` and ``kustos auth enable|list|disable``.

``kustos login`` checks a token against the server (or, with ``--method
userpass|approle|kubernetes``, logs in with that auth method to get one) and
keeps it in ``~/.kustos/token``. Later commands find the saved token when
neither ``--token`` nor ``KUSTOS_TOKEN``/``VAULT_TOKEN`` is given (see
:mod:`kustos.cli.connection`). Tokens, passwords and secret ids are prompted
for without echo (or read from stdin) when not given, and never printed.
``kustos auth ...`` manages auth methods (``sys/auth``); their roles and
users are written with the generic ``kustos write`` (:mod:`kustos.cli.generic`).
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kustos.cli.connection import (
    EXIT_BAD_INPUT,
    Connection,
    connected,
    save_token,
)
from kustos.cli.output import OutputFormat, OutputOption, fail, render, report, stderr
from kustos.sensitive import Sensitive

__all__ = ["public_token_info", "register"]

_SECRET_FIELDS = frozenset({"id", "client_token"})
_FROM_STDIN = "-"
_SA_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def public_token_info(info: dict[str, Any]) -> dict[str, Any]:
    """A token's lookup data without the token itself (``id``)."""
    return {k: v for k, v in info.items() if k not in _SECRET_FIELDS}


class LoginMethod(enum.StrEnum):
    token = "token"  # noqa: S105 - a method name, not a secret
    userpass = "userpass"
    approle = "approle"
    kubernetes = "kubernetes"


def _secret_input(value: str | None, *, prompt: str, what: str) -> str:
    """``value``, or stdin for ``-`` or when stdin is not a terminal, else a prompt without echo."""
    if value == _FROM_STDIN or (value is None and not sys.stdin.isatty()):
        secret = sys.stdin.readline().strip()
    elif value is not None:
        secret = value.strip()
    else:
        secret = typer.prompt(prompt, hide_input=True, err=True).strip()
    if not secret:
        fail(f"{what} is required", code=EXIT_BAD_INPUT)
    return secret


def _method_login(
    *,
    method: LoginMethod,
    mount: str | None,
    username: str | None,
    password: str | None,
    role_id: str | None,
    secret_id: str | None,
    role: str | None,
    jwt_file: Path,
    connection: Connection,
) -> tuple[str, dict[str, Any]]:
    """Log in with an auth method; return the new token and the public part of the answer."""
    path = mount or method.value
    if method is LoginMethod.userpass:
        if not username:
            fail("--username is required with --method userpass", code=EXIT_BAD_INPUT)
        secret = _secret_input(password, prompt="Password (input hidden)", what="a password")
    elif method is LoginMethod.approle:
        if not role_id:
            fail("--role-id is required with --method approle", code=EXIT_BAD_INPUT)
        secret = _secret_input(secret_id, prompt="Secret ID (input hidden)", what="a secret id")
    else:
        if not role:
            fail("--role is required with --method kubernetes", code=EXIT_BAD_INPUT)
        try:
            secret = jwt_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            fail(
                f"cannot read the service-account token {jwt_file}: {exc.strerror or exc}",
                code=EXIT_BAD_INPUT,
            )
        if not secret:
            fail(f"the service-account token file {jwt_file} is empty", code=EXIT_BAD_INPUT)
    with connection.client() as client:
        client.token = None
        methods = client.auth_methods
        if method is LoginMethod.userpass:
            auth = methods.login_userpass(
                username=str(username), password=Sensitive(secret), mount_point=path
            )
        elif method is LoginMethod.approle:
            auth = methods.login_approle(
                role_id=str(role_id), secret_id=Sensitive(secret), mount_point=path
            )
        else:
            auth = methods.login_kubernetes(role=str(role), jwt=Sensitive(secret), mount_point=path)
    answer = dict(auth)
    return str(answer.pop("client_token")), public_token_info(answer)


@connected(token=False)
def login(
    connection: Connection,
    token: Annotated[
        str | None,
        typer.Argument(
            help="The token ('-' reads it from stdin; omitted: prompt without echo). Only with --method token.",
            show_default=False,
        ),
    ] = None,
    method: Annotated[
        LoginMethod, typer.Option("--method", "-m", help="How to log in.", case_sensitive=False)
    ] = LoginMethod.token,
    mount: Annotated[
        str | None,
        typer.Option(
            "--path",
            help="Where the auth method is enabled (default: its type).",
            show_default=False,
        ),
    ] = None,
    username: Annotated[
        str | None, typer.Option("--username", help="userpass: the user name.", show_default=False)
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            help="userpass: the password ('-': stdin; omitted: prompt).",
            show_default=False,
        ),
    ] = None,
    role_id: Annotated[
        str | None, typer.Option("--role-id", help="approle: the role id.", show_default=False)
    ] = None,
    secret_id: Annotated[
        str | None,
        typer.Option(
            "--secret-id",
            help="approle: the secret id ('-': stdin; omitted: prompt).",
            show_default=False,
        ),
    ] = None,
    role: Annotated[
        str | None,
        typer.Option("--role", help="kubernetes: the role to log in as.", show_default=False),
    ] = None,
    jwt_file: Annotated[
        Path, typer.Option("--jwt-file", help="kubernetes: the service-account token file.")
    ] = _SA_TOKEN,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Log in and save the token to ~/.kustos/token (mode 0600).

    With --method token (the default) the given token is verified (lookup-self);
    with userpass, approle or kubernetes the auth method issues a new token.
    """
    if method is not LoginMethod.token:
        if token is not None:
            fail("a token argument is only accepted with --method token", code=EXIT_BAD_INPUT)
        new_token, info = _method_login(
            method=method,
            mount=mount,
            username=username,
            password=password,
            role_id=role_id,
            secret_id=secret_id,
            role=role,
            jwt_file=jwt_file,
            connection=connection,
        )
        path = save_token(Sensitive(new_token), home=Path.home())
        stderr.print(
            f"Logged in with {method.value}; token saved to {path} (mode 0600).", highlight=False
        )
        render(info, output)
        return
    if token == _FROM_STDIN or (token is None and not sys.stdin.isatty()):
        secret = sys.stdin.readline().strip()
    elif token is not None:
        secret = token.strip()
    else:
        secret = typer.prompt("Token (input hidden)", hide_input=True, err=True).strip()
    if not secret:
        fail("a token is required", code=EXIT_BAD_INPUT)
    with connection.client(token=secret) as client:
        info = client.auth_token.lookup_self()
    path = save_token(Sensitive(secret), home=Path.home())
    stderr.print(f"Logged in; token saved to {path} (mode 0600).", highlight=False)
    render(public_token_info(info), output)


auth_app = typer.Typer(
    name="auth", help="Enable, list and disable auth methods (sys/auth).", no_args_is_help=True
)


@auth_app.command("enable")
@connected()
def enable(
    connection: Connection,
    method_type: Annotated[
        str, typer.Argument(metavar="TYPE", help="kubernetes, approle or userpass.")
    ],
    mount: Annotated[
        str | None,
        typer.Option(
            "--path", help="Where to enable it (default: the type's name).", show_default=False
        ),
    ] = None,
    description: Annotated[
        str, typer.Option("--description", help="A human-readable description.")
    ] = "",
    output: OutputOption = OutputFormat.table,
) -> None:
    """Enable an auth method, e.g. `kustos auth enable kubernetes`."""
    path = (mount or method_type).strip("/")
    with connection.client() as client:
        client.auth_methods.enable_auth_method(method_type, path=path, description=description)
    report(
        f"Success! Enabled {method_type} auth method at: auth/{path}/",
        {"path": f"{path}/", "type": method_type, "enabled": True},
        output,
    )


@auth_app.command("list")
@connected()
def list_methods(
    connection: Connection,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the enabled auth methods."""
    with connection.client() as client:
        methods = client.auth_methods.list_auth_methods()
    rows = [
        {
            "path": path,
            "type": info.get("type", ""),
            "accessor": info.get("accessor", ""),
            "description": info.get("description", ""),
        }
        for path, info in sorted(methods.items())
        if isinstance(info, dict)
    ]
    render(rows, output, columns=["path", "type", "accessor", "description"])


@auth_app.command("disable")
@connected()
def disable(
    connection: Connection,
    path: Annotated[
        str, typer.Argument(help="The path the method is enabled at, e.g. kubernetes.")
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Disable an auth method: its roles/users are deleted and the tokens it issued are revoked."""
    with connection.client() as client:
        client.auth_methods.disable_auth_method(path.strip("/"))
    report(
        f"Success! Disabled the auth method at: auth/{path.strip('/')}/",
        {"path": f"{path.strip('/')}/", "disabled": True},
        output,
    )


def register(app: typer.Typer) -> None:
    """Add ``kustos login`` and ``kustos auth ...`` to the root app."""
    app.command("login")(login)
    app.add_typer(auth_app)
