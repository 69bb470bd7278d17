"""``kustos login`` and ``kustos auth enable|list|disable``.

``kustos login`` checks a token against the server (or, with ``-method
userpass|approle|kubernetes|jwt|aws``, logs in with that auth method to get
one; arguments as ``key=value`` like ``vault login``) and
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
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from botocore.exceptions import BotoCoreError

from kustos.cli.connection import (
    EXIT_BAD_INPUT,
    Connection,
    connected,
    save_token,
)
from kustos.cli.output import OutputFormat, OutputOption, fail, render, report, stderr
from kustos.client.aws_iam import IamLoginData, iam_login_data
from kustos.errors import ConfigError
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
    jwt = "jwt"
    aws = "aws"


_LOGIN_KEYS: Final[dict[LoginMethod, tuple[str, ...]]] = {
    LoginMethod.token: ("token",),
    LoginMethod.userpass: ("username", "password"),
    LoginMethod.approle: ("role_id", "secret_id"),
    LoginMethod.kubernetes: ("role", "jwt"),
    LoginMethod.jwt: ("role", "jwt"),
    LoginMethod.aws: ("role", "header_value", "region", "profile"),
}
"""The ``key=value`` arguments each method takes (Vault's ``vault login -method=aws role=...``)."""


@dataclass
class _LoginInput:
    """What a login needs, from options and ``key=value`` arguments (the latter win)."""

    token: str | None = None
    username: str | None = None
    password: str | None = None
    role_id: str | None = None
    secret_id: str | None = None
    role: str | None = None
    jwt: str | None = None
    jwt_file: Path | None = None
    header_value: str | None = None
    region: str | None = None
    profile: str | None = None


def _apply_pairs(method: LoginMethod, words: list[str], given: _LoginInput) -> None:
    allowed = _LOGIN_KEYS[method]
    for word in words:
        key, sep, value = word.partition("=")
        if method is LoginMethod.token and (not sep or key not in allowed):
            if given.token is not None:
                fail("give one token", code=EXIT_BAD_INPUT)
            given.token = word
            continue
        if not sep or key not in allowed:
            fail(
                f"{word.split('=')[0]!r} is not an argument of -method={method.value}; "
                f"it takes {', '.join(k + '=...' for k in allowed)}",
                code=EXIT_BAD_INPUT,
            )
        setattr(given, key, value)


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


def _read_jwt(given: _LoginInput, *, default_file: Path | None) -> str:
    """The JWT from ``jwt=`` (``@file`` reads a file, ``-`` stdin) or ``--jwt-file``."""
    value = given.jwt
    path = given.jwt_file or default_file
    if value is not None and value.startswith("@"):
        path, value = Path(value[1:]), None
    if value is not None:
        return _secret_input(value, prompt="JWT (input hidden)", what="a JWT")
    if path is None:
        fail(
            "give the token: jwt=@FILE, jwt=- (stdin) or --jwt-file FILE",
            code=EXIT_BAD_INPUT,
        )
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        fail(f"cannot read the token file {path}: {exc.strerror or exc}", code=EXIT_BAD_INPUT)
    if not secret:
        fail(f"the token file {path} is empty", code=EXIT_BAD_INPUT)
    return secret


def _method_login(
    *, method: LoginMethod, mount: str | None, given: _LoginInput, connection: Connection
) -> tuple[str, dict[str, Any]]:
    """Log in with an auth method; return the new token and the public part of the answer."""
    path = mount or method.value
    iam_request: IamLoginData | None = None
    if method is LoginMethod.userpass:
        if not given.username:
            fail(
                "--username is required (or username=...) with -method=userpass",
                code=EXIT_BAD_INPUT,
            )
        secret = _secret_input(given.password, prompt="Password (input hidden)", what="a password")
    elif method is LoginMethod.approle:
        if not given.role_id:
            fail("--role-id is required (or role_id=...) with -method=approle", code=EXIT_BAD_INPUT)
        secret = _secret_input(
            given.secret_id, prompt="Secret ID (input hidden)", what="a secret id"
        )
    elif method is LoginMethod.aws:
        secret = ""
        try:
            iam_request = iam_login_data(
                region=given.region or None,
                header_value=given.header_value or "",
                profile=given.profile or None,
            )
        except (ConfigError, BotoCoreError) as exc:
            fail(f"cannot sign the AWS login request: {exc}", code=EXIT_BAD_INPUT)
    else:
        if not given.role and method is LoginMethod.kubernetes:
            fail("--role is required (or role=...) with -method=kubernetes", code=EXIT_BAD_INPUT)
        secret = _read_jwt(
            given, default_file=_SA_TOKEN if method is LoginMethod.kubernetes else None
        )
    with connection.client() as client:
        client.token = None
        methods = client.auth_methods
        if method is LoginMethod.userpass:
            auth = methods.login_userpass(
                username=str(given.username), password=Sensitive(secret), mount_point=path
            )
        elif method is LoginMethod.approle:
            auth = methods.login_approle(
                role_id=str(given.role_id), secret_id=Sensitive(secret), mount_point=path
            )
        elif method is LoginMethod.kubernetes:
            auth = methods.login_kubernetes(
                role=str(given.role), jwt=Sensitive(secret), mount_point=path
            )
        elif method is LoginMethod.jwt:
            auth = methods.login_jwt(role=given.role or "", jwt=Sensitive(secret), mount_point=path)
        else:
            assert iam_request is not None  # noqa: S101 - set above for aws
            auth = methods.login_aws_iam(
                role=given.role or "", request=iam_request, mount_point=path
            )
    answer = dict(auth)
    return str(answer.pop("client_token")), public_token_info(answer)


@connected(token=False)
def login(
    connection: Connection,
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="TOKEN|KEY=VALUE",
            help=(
                "-method=token: the token ('-' reads it from stdin; omitted: prompt without echo). "
                "Other methods: KEY=VALUE arguments as in `vault login`: userpass username= password=; "
                "approle role_id= secret_id=; kubernetes and jwt role= jwt= (jwt=@FILE reads a file, "
                "jwt=- stdin); aws role= header_value= region= profile=."
            ),
            show_default=False,
        ),
    ] = None,
    method: Annotated[
        LoginMethod,
        typer.Option(
            "--method", "-m", help="How to log in (Vault's -method=...).", case_sensitive=False
        ),
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
        typer.Option(
            "--role", help="kubernetes, jwt, aws: the role to log in as.", show_default=False
        ),
    ] = None,
    jwt_file: Annotated[
        Path | None,
        typer.Option(
            "--jwt-file",
            help=f"kubernetes, jwt: a file holding the token (kubernetes default: {_SA_TOKEN}).",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Log in and save the token to ~/.kustos/token (mode 0600).

    With -method=token (the default) the given token is verified (lookup-self);
    with userpass, approle, kubernetes, jwt or aws the auth method issues a new
    token. Examples: `kustos login -method=jwt role=deploy jwt=@$TOKEN_FILE`,
    `kustos login -method=aws role=deploy` (signs sts:GetCallerIdentity with the
    usual AWS credential chain; the credentials are not sent).
    """
    given = _LoginInput(
        username=username,
        password=password,
        role_id=role_id,
        secret_id=secret_id,
        role=role,
        jwt_file=jwt_file,
    )
    _apply_pairs(method, list(args or []), given)
    if method is not LoginMethod.token:
        new_token, info = _method_login(
            method=method, mount=mount, given=given, connection=connection
        )
        path = save_token(Sensitive(new_token), home=Path.home())
        stderr.print(
            f"Logged in with {method.value}; token saved to {path} (mode 0600).", highlight=False
        )
        render(info, output)
        return
    token = given.token
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
        str,
        typer.Argument(metavar="TYPE", help="kubernetes, approle, userpass, jwt or aws."),
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
