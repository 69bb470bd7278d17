"""Values only one ServiceAccount can open: ``/v1/sys/bound/*``, and opening them in place.

Reach the endpoints as ``client.bound``. A bound value
(``kustos:bound:v1:...``, :mod:`kustos.crypto.bound`) is made by
:meth:`Bound.encrypt` for ``namespace/name`` and opened by
:meth:`Bound.decrypt` with a token from a kubernetes login *as that
ServiceAccount* (the client's token: log in first with
``client.auth_methods.login_kubernetes``). The server refuses every other
token, root included.

:func:`open_in_place` is what the agent, the CSI provider and the operator
share: given a secret's key/value data and an opener, it returns the data
with every bound value opened (other values untouched), naming the key
whose value could not be opened, never the value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any, TypedDict, cast

from kustos.client._http import Adapter, JSONObject
from kustos.client.errors import ServerUnreachableError
from kustos.crypto.bound import PREFIX, is_bound
from kustos.errors import KustosError
from kustos.sensitive import Sensitive

__all__ = ["PREFIX", "Bound", "BoundCiphertext", "is_bound", "open_in_place"]


class BoundCiphertext(TypedDict):
    """What ``sys/bound/encrypt`` answers."""

    ciphertext: str
    namespace: str
    service_account: str
    uid: str
    key_version: int


def _data(body: JSONObject | None, *, what: str) -> JSONObject:
    if body is None or not isinstance(body.get("data"), dict):
        raise KustosError(f"{what}: the server's answer has no 'data' object")
    return cast(JSONObject, body["data"])


class Bound:
    """Endpoints under ``/v1/sys/bound/``."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter

    def encrypt(
        self,
        plaintext: bytes | str | Sensitive[bytes] | Sensitive[str],
        *,
        namespace: str,
        service_account: str,
        uid: str | None = None,
        bind_uid: bool = False,
    ) -> BoundCiphertext:
        """``POST /v1/sys/bound/encrypt``: seal ``plaintext`` for ``namespace/service_account``.

        ``uid`` pins the value to one incarnation of the account; ``bind_uid``
        asks the server to look the UID up in the cluster.
        """
        raw = plaintext.reveal() if isinstance(plaintext, Sensitive) else plaintext
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        payload: dict[str, Any] = {
            "namespace": namespace,
            "service_account": service_account,
            "plaintext": base64.b64encode(data).decode("ascii"),
        }
        if uid:
            payload["uid"] = uid
        elif bind_uid:
            payload["bind_uid"] = True
        body = self._adapter.request("POST", "sys/bound/encrypt", json=payload)
        return cast(BoundCiphertext, _data(body, what="bound encrypt"))

    def decrypt(self, ciphertext: str) -> Sensitive[bytes]:
        """``POST /v1/sys/bound/decrypt``: open a bound value with this client's (ServiceAccount) token."""
        body = self._adapter.request("POST", "sys/bound/decrypt", json={"ciphertext": ciphertext})
        text = _data(body, what="bound decrypt").get("plaintext")
        if not isinstance(text, str):
            raise KustosError("bound decrypt: the server's answer has no plaintext")
        try:
            return Sensitive(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise KustosError("bound decrypt: the server's plaintext is not base64") from None

    def rotate(self) -> int:
        """``POST /v1/sys/bound/rotate``: a new root key version seals from now on; returns it."""
        body = self._adapter.request("POST", "sys/bound/rotate")
        return int(_data(body, what="bound rotate")["active_version"])

    def read_config(self) -> JSONObject:
        """``GET /v1/sys/bound/config``."""
        return _data(self._adapter.request("GET", "sys/bound/config"), what="bound config")

    def write_config(
        self,
        *,
        kubernetes_mount: str | None = None,
        allow_unauthenticated_encrypt: bool | None = None,
    ) -> None:
        """``POST /v1/sys/bound/config``: only the given settings change."""
        payload: dict[str, Any] = {}
        if kubernetes_mount is not None:
            payload["kubernetes_mount"] = kubernetes_mount
        if allow_unauthenticated_encrypt is not None:
            payload["allow_unauthenticated_encrypt"] = allow_unauthenticated_encrypt
        self._adapter.request("POST", "sys/bound/config", json=payload)


def open_in_place(
    data: Mapping[str, Any], *, opener: Callable[[str], Sensitive[bytes]], where: str = ""
) -> dict[str, Any]:
    """``data`` with every bound string value replaced by its opened text.

    ``opener`` is :meth:`Bound.decrypt` of a client logged in as the
    ServiceAccount (or an async caller's equivalent run to completion).
    Opened values that are not UTF-8 text stay ``bytes``. A value that does
    not open raises the opener's error, prefixed with ``where`` and the key.
    """
    opened: dict[str, Any] = {}
    for key, value in data.items():
        if not is_bound(value) or not isinstance(value, str):
            opened[key] = value
            continue
        try:
            plain = opener(value.strip()).reveal()
        except ServerUnreachableError:
            raise
        except KustosError as exc:
            place = f"{where} key {key!r}" if where else f"key {key!r}"
            raise type(exc)(f"cannot open the bound value of {place}: {exc}") from None
        try:
            opened[key] = plain.decode("utf-8")
        except UnicodeDecodeError:
            opened[key] = plain
    return opened
