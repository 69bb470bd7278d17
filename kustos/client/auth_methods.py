"""Auth methods other than tokens: ``/v1/sys/auth`` and logins under ``/v1/auth/<mount>/``.

Reach it as ``client.auth_methods``. Management (enable, list, disable) maps
to ``sys/auth``; the logins map to Vault's login endpoints and return
the ``auth`` object (``client_token`` shown once). ``login_*`` does not set
the client's token: the caller decides (``client.token = auth["client_token"]``).
Roles, users and configs are plain paths: use :class:`~kustos.client.generic.Generic`
(``client.generic.write("auth/kubernetes/role/app", {...})``).
"""

from __future__ import annotations

from typing import Any, cast

from kustos.client._http import Adapter, JSONObject, join_path
from kustos.client.auth_token import TokenAuth
from kustos.client.aws_iam import IamLoginData
from kustos.errors import KustosError
from kustos.sensitive import Sensitive

__all__ = ["AuthMethods"]


def _auth(body: JSONObject | None, *, what: str) -> TokenAuth:
    if body is None or not isinstance(body.get("auth"), dict):
        raise KustosError(f"{what}: the server's answer has no 'auth' object")
    return cast(TokenAuth, body["auth"])


def _reveal(value: str | Sensitive[str]) -> str:
    return value.reveal() if isinstance(value, Sensitive) else value


class AuthMethods:
    """Endpoints under ``/v1/sys/auth`` and the login endpoints of each method."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter

    def enable_auth_method(
        self, method_type: str, *, path: str | None = None, description: str = ""
    ) -> None:
        """``POST /v1/sys/auth/<path>``: enable ``method_type`` at ``path`` (default: the type's name)."""
        payload: dict[str, Any] = {"type": method_type}
        if description:
            payload["description"] = description
        self._adapter.request("POST", join_path("sys/auth", path or method_type), json=payload)

    def list_auth_methods(self) -> dict[str, JSONObject]:
        """``GET /v1/sys/auth``: enabled methods by path (``token/`` included)."""
        body = self._adapter.request("GET", "sys/auth")
        if body is None or not isinstance(body.get("data"), dict):
            raise KustosError("list auth methods: the server's answer has no 'data' object")
        return cast(dict[str, JSONObject], body["data"])

    def disable_auth_method(self, path: str) -> None:
        """``DELETE /v1/sys/auth/<path>``: disable it, deleting its roles and revoking its tokens."""
        self._adapter.request("DELETE", join_path("sys/auth", path))

    def login_kubernetes(
        self, *, role: str, jwt: str | Sensitive[str], mount_point: str = "kubernetes"
    ) -> TokenAuth:
        """``POST /v1/auth/<mount>/login``: log in with a service-account JWT."""
        body = self._adapter.request(
            "POST",
            join_path("auth", mount_point, "login"),
            json={"role": role, "jwt": _reveal(jwt)},
        )
        return _auth(body, what="kubernetes login")

    def login_approle(
        self, *, role_id: str, secret_id: str | Sensitive[str] = "", mount_point: str = "approle"
    ) -> TokenAuth:
        """``POST /v1/auth/<mount>/login``: log in with a role id and secret id."""
        body = self._adapter.request(
            "POST",
            join_path("auth", mount_point, "login"),
            json={"role_id": role_id, "secret_id": _reveal(secret_id)},
        )
        return _auth(body, what="approle login")

    def login_userpass(
        self, *, username: str, password: str | Sensitive[str], mount_point: str = "userpass"
    ) -> TokenAuth:
        """``POST /v1/auth/<mount>/login/<username>``: log in with a password."""
        body = self._adapter.request(
            "POST",
            join_path("auth", mount_point, "login", username),
            json={"password": _reveal(password)},
        )
        return _auth(body, what="userpass login")

    def login_jwt(
        self, *, role: str, jwt: str | Sensitive[str], mount_point: str = "jwt"
    ) -> TokenAuth:
        """``POST /v1/auth/<mount>/login``: log in with an OIDC/JWT token (``role`` may be ``""``
        to use the method's ``default_role``)."""
        payload = {"jwt": _reveal(jwt)}
        if role:
            payload["role"] = role
        body = self._adapter.request("POST", join_path("auth", mount_point, "login"), json=payload)
        return _auth(body, what="jwt login")

    def login_aws_iam(
        self, *, role: str, request: IamLoginData, mount_point: str = "aws"
    ) -> TokenAuth:
        """``POST /v1/auth/<mount>/login``: log in with a signed ``sts:GetCallerIdentity``
        (:func:`kustos.client.aws_iam.iam_login_data`); ``role`` ``""`` means the principal's name."""
        payload: dict[str, Any] = dict(request)
        if role:
            payload["role"] = role
        body = self._adapter.request("POST", join_path("auth", mount_point, "login"), json=payload)
        return _auth(body, what="aws login")
