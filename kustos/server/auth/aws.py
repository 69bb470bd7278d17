"""The ``aws`` auth method, IAM type: an AWS workload logs in with the IAM identity it already has.

The client signs an ``sts:GetCallerIdentity`` request with its AWS
credentials (SigV4) and sends the signed request, not the credentials; the
server replays it to STS, which answers with the caller's ARN. Nobody but
the holder of the credentials could have signed it, and STS refuses a
signature older than 15 minutes. Vault's paths and shapes:

* ``config/client`` — ``sts_endpoint`` (default ``https://sts.amazonaws.com``;
  the only place requests go), ``sts_region``, ``iam_server_id_header_value``
  (then every login must carry a *signed* ``X-Vault-AWS-IAM-Server-ID`` header
  with that value, so a request signed for another server cannot be replayed
  here), ``allowed_sts_header_values``, ``max_retries``. No AWS credentials:
  the server never calls AWS as itself (``access_key``/``secret_key`` are refused).
* ``role/<name>`` — ``auth_type: iam``, ``bound_iam_principal_arn`` (a list;
  ``*`` wildcards, e.g. ``arn:aws:iam::123456789012:role/deploy-*``), the
  ``token_*`` fields; ``LIST role``. EC2-only bounds are refused.
* ``login`` — ``{role, iam_http_request_method, iam_request_url,
  iam_request_body, iam_request_headers}`` (URL and body base64; headers
  base64 of a JSON object, or the object itself; what ``vault login
  -method=aws`` and hvac's ``auth.aws.iam_login`` send). Without ``role``,
  the role named like the principal (user or role name) is used.

The request must be ``POST`` of exactly ``Action=GetCallerIdentity`` (and
``Version``) to the URL's root with no query string, so the server can only
ever ask STS who the caller is. The principal matched against the role is
the *canonical* ARN: ``arn:aws:iam::<account>:user/<name>`` for a user,
``arn:aws:iam::<account>:role/<name>`` for an assumed role (STS does not
return a role's path, so bind roles without one). Unique-id resolution
(``resolve_aws_unique_ids``) needs IAM read access and is not done.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from kustos.errors import InvalidRequestError, KustosError, NotFoundError, PermissionDeniedError
from kustos.server.auth import MethodDeps
from kustos.server.auth.issuing import TokenSettings, login_reply, str_field
from kustos.server.auth.jwts import glob_match
from kustos.server.auth.keysets import check_url
from kustos.server.auth.mounts import AuthMount
from kustos.server.auth.roles import role_endpoint
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.params import bool_param, int_param, str_list_param

__all__ = ["DEFAULT_STS_ENDPOINT", "AwsMethod", "CallerIdentity", "StsUnavailableError"]

DEFAULT_STS_ENDPOINT: Final = "https://sts.amazonaws.com"
SERVER_ID_HEADER: Final = "X-Vault-AWS-IAM-Server-ID"
_ROLE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=,-]{0,127}")
_ARN_PATTERN: Final = re.compile(
    r"arn:[a-z0-9*-]{1,32}:iam::(\d{12}|\*):[A-Za-z0-9+=,.@_/*-]{1,512}"
)
_DEFAULT_ALLOWED_HEADERS: Final = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-content-sha256",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-signature",
        "x-amz-signedheaders",
        "x-amz-user-agent",
    }
)
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_EC2_ONLY: Final = (
    "bound_ami_id",
    "bound_account_id",
    "bound_region",
    "bound_vpc_id",
    "bound_subnet_id",
    "bound_iam_role_arn",
    "bound_iam_instance_profile_arn",
    "bound_ec2_instance_id",
    "role_tag",
    "inferred_entity_type",
    "inferred_aws_region",
)
_CREDENTIALS: Final = ("access_key", "secret_key", "endpoint", "iam_endpoint")
_MAX_URL: Final = 2048
_MAX_BODY: Final = 1024
_MAX_HEADERS: Final = 64
_MAX_HEADER_VALUE: Final = 8192
_MAX_ANSWER: Final = 64 * 1024
_TIMEOUT: Final = 10.0
_STS_NS: Final = re.compile(r"^\{[^}]*\}")


class StsUnavailableError(KustosError):
    """STS could not be asked (unreachable, timed out, answered 5xx or garbage): 500."""


def _not_found() -> NoReturn:
    raise NotFoundError("")


@dataclass(frozen=True)
class CallerIdentity:
    """Who STS says signed the request, and the canonical form a role's bound ARNs are matched to."""

    arn: str
    user_id: str
    account: str
    canonical_arn: str
    friendly_name: str
    entity_type: str

    @classmethod
    def from_arn(cls, arn: str, *, user_id: str, account: str) -> CallerIdentity:
        """Parse ``arn`` (``arn:aws:iam::1:user/p/name``, ``arn:aws:sts::1:assumed-role/R/s``, ...)."""
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn" or parts[2] not in ("iam", "sts"):
            raise PermissionDeniedError("STS answered with an ARN that is not an IAM principal")
        partition, account_id, resource = parts[1], parts[4], parts[5]
        pieces = resource.split("/")
        kind = pieces[0]
        if kind == "assumed-role" and len(pieces) >= 3:
            name, canonical_kind = pieces[1], "role"
        elif kind in ("user", "role", "federated-user") and len(pieces) >= 2:
            name, canonical_kind = pieces[-1], kind
        elif kind == "root" and len(pieces) == 1:
            return cls(
                arn, user_id, account_id, f"arn:{partition}:iam::{account_id}:root", "root", "root"
            )
        else:
            raise PermissionDeniedError(
                f"STS answered with an unsupported principal type {kind[:32]!r}"
            )
        if account and account != account_id:
            raise PermissionDeniedError("STS answered with an ARN of another account")
        canonical_service = "sts" if canonical_kind == "federated-user" else "iam"
        return cls(
            arn=arn,
            user_id=user_id,
            account=account_id,
            canonical_arn=f"arn:{partition}:{canonical_service}::{account_id}:{canonical_kind}/{name}",
            friendly_name=name,
            entity_type=kind,
        )


# -- config ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Config:
    sts_endpoint: str = ""
    sts_region: str = ""
    iam_server_id_header_value: str = ""
    allowed_sts_header_values: tuple[str, ...] = ()
    max_retries: int = -1

    def to_doc(self) -> dict[str, Any]:
        return {
            "sts_endpoint": self.sts_endpoint,
            "sts_region": self.sts_region,
            "iam_server_id_header_value": self.iam_server_id_header_value,
            "allowed_sts_header_values": list(self.allowed_sts_header_values),
            "max_retries": self.max_retries,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> _Config:
        return cls(
            sts_endpoint=str(doc.get("sts_endpoint", "")),
            sts_region=str(doc.get("sts_region", "")),
            iam_server_id_header_value=str(doc.get("iam_server_id_header_value", "")),
            allowed_sts_header_values=tuple(doc.get("allowed_sts_header_values") or ()),
            max_retries=int(doc.get("max_retries", -1)),
        )

    def describe(self) -> dict[str, Any]:
        return {
            **self.to_doc(),
            "access_key": "",
            "endpoint": "",
            "iam_endpoint": "",
            "use_sts_region_from_client": False,
        }

    @property
    def endpoint(self) -> str:
        return (self.sts_endpoint or DEFAULT_STS_ENDPOINT).rstrip("/")


def _parse_config(body: Mapping[str, Any]) -> _Config:
    for name in _CREDENTIALS:
        if body.get(name) not in (None, ""):
            raise InvalidRequestError(
                f"{name} is not needed and not accepted: the iam login is verified by STS with the "
                "client's own signature, Kustos keeps no AWS credentials (set sts_endpoint instead)"
            )
    endpoint = str_field(body, "sts_endpoint").strip()
    if endpoint:
        check_url(endpoint, field="sts_endpoint")
        if urlsplit(endpoint).query:
            raise InvalidRequestError("sts_endpoint must not have a query string")
    region = str_field(body, "sts_region").strip()
    if region and not re.fullmatch(r"[a-z0-9-]{1,32}", region):
        raise InvalidRequestError("sts_region must be an AWS region name such as us-east-1")
    header_value = str_field(body, "iam_server_id_header_value").strip()
    if len(header_value) > 256 or not header_value.isprintable():
        raise InvalidRequestError(
            "iam_server_id_header_value must be printable and 256 characters at most"
        )
    allowed = str_list_param(
        body.get("allowed_sts_header_values"), field="allowed_sts_header_values"
    )
    for name in allowed:
        if not re.fullmatch(r"[A-Za-z0-9-]{1,128}", name):
            raise InvalidRequestError(
                f"allowed_sts_header_values: {name[:64]!r} is not an HTTP header name"
            )
    retries = -1
    if body.get("max_retries") not in (None, ""):
        retries = int_param(body["max_retries"], field="max_retries", minimum=-1, maximum=10)
    return _Config(
        sts_endpoint=endpoint,
        sts_region=region,
        iam_server_id_header_value=header_value,
        allowed_sts_header_values=tuple(dict.fromkeys(allowed)),
        max_retries=retries,
    )


# -- roles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Role:
    bound_iam_principal_arn: tuple[str, ...]
    token: TokenSettings = field(default_factory=TokenSettings)

    def to_doc(self) -> dict[str, Any]:
        return {
            "bound_iam_principal_arn": list(self.bound_iam_principal_arn),
            "token": self.token.to_doc(),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> _Role:
        return cls(
            bound_iam_principal_arn=tuple(doc.get("bound_iam_principal_arn") or ()),
            token=TokenSettings.from_doc(doc.get("token", {})),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "auth_type": "iam",
            "bound_iam_principal_arn": list(self.bound_iam_principal_arn),
            "resolve_aws_unique_ids": False,
            "inferred_entity_type": "",
            "allow_instance_migration": False,
            "disallow_reauthentication": False,
            **self.token.describe(),
        }


def _parse_role(body: Mapping[str, Any], current: _Role | None) -> _Role:
    auth_type = str_field(body, "auth_type").strip() or "iam"
    if auth_type != "iam":
        raise InvalidRequestError(
            f"auth_type {auth_type[:16]!r} is not supported: Kustos has the iam auth type only"
        )
    for name in _EC2_ONLY:
        if body.get(name) not in (None, "", []):
            raise InvalidRequestError(
                f"{name} needs the ec2 auth type or inference, which Kustos does not support; "
                "bind the role with bound_iam_principal_arn"
            )
    if body.get("resolve_aws_unique_ids") not in (None, "") and bool_param(
        body["resolve_aws_unique_ids"], field="resolve_aws_unique_ids"
    ):
        raise InvalidRequestError(
            "resolve_aws_unique_ids=true needs IAM read access, which Kustos does not use; "
            "set it to false (the principal is matched by its canonical ARN)"
        )
    arns = current.bound_iam_principal_arn if current else ()
    if "bound_iam_principal_arn" in body:
        arns = tuple(
            dict.fromkeys(
                str_list_param(body["bound_iam_principal_arn"], field="bound_iam_principal_arn")
            )
        )
    if not arns:
        raise InvalidRequestError(
            "bound_iam_principal_arn is required: the IAM users or roles (ARNs, * wildcards) that may log in"
        )
    for arn in arns:
        if not _ARN_PATTERN.fullmatch(arn):
            raise InvalidRequestError(
                f"bound_iam_principal_arn: {arn[:128]!r} is not an IAM ARN such as "
                "arn:aws:iam::123456789012:role/deploy (or arn:aws:iam::123456789012:*)"
            )
    return _Role(
        bound_iam_principal_arn=arns,
        token=(current.token if current else TokenSettings()).updated(body),
    )


# -- the signed request ---------------------------------------------------------------------


@dataclass(frozen=True)
class _SignedRequest:
    url: str
    body: bytes
    headers: tuple[tuple[str, str], ...]


def _b64_text(body: Mapping[str, Any], name: str, *, limit: int) -> str:
    raw = str_field(body, name).strip()
    if not raw:
        raise InvalidRequestError(f"missing {name}")
    if len(raw) > limit * 2:
        raise InvalidRequestError(f"{name} is too long")
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"failed to base64 decode {name}") from None


def _headers(value: Any) -> dict[str, list[str]]:
    """``iam_request_headers``: base64 of a JSON object, or the object; values a string or a list."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise InvalidRequestError("missing iam_request_headers")
        if len(text) > _MAX_HEADERS * _MAX_HEADER_VALUE:
            raise InvalidRequestError("iam_request_headers is too long")
        try:
            decoded = base64.b64decode(text, validate=True) if not text.startswith("{") else text
            value = orjson.loads(decoded)
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            raise InvalidRequestError(
                "iam_request_headers must be base64 of a JSON object of header names to values"
            ) from None
    if not isinstance(value, dict) or not value:
        raise InvalidRequestError(
            "iam_request_headers must be a non-empty JSON object of header names to values"
        )
    if len(value) > _MAX_HEADERS:
        raise InvalidRequestError(f"iam_request_headers has more than {_MAX_HEADERS} headers")
    headers: dict[str, list[str]] = {}
    for name, raw in value.items():
        items = raw if isinstance(raw, list) else [raw]
        if not re.fullmatch(r"[A-Za-z0-9-]{1,128}", name) or not all(
            isinstance(i, str) and len(i) <= _MAX_HEADER_VALUE and "\n" not in i and "\r" not in i
            for i in items
        ):
            raise InvalidRequestError(
                "iam_request_headers: every header needs a token name and string values"
            )
        headers.setdefault(name.lower(), []).extend(items)
    return headers


def _signed_request(body: Mapping[str, Any], config: _Config) -> _SignedRequest:
    method = str_field(body, "iam_http_request_method").strip()
    if not method:
        raise InvalidRequestError("missing iam_http_request_method")
    if method != "POST":
        raise InvalidRequestError(
            "invalid iam_http_request_method; currently only 'POST' is supported"
        )
    url = _b64_text(body, "iam_request_url", limit=_MAX_URL)
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidRequestError("iam_request_url must be an absolute https:// URL")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise InvalidRequestError(
            "iam_request_url must be the STS endpoint's root, with no path or query string"
        )
    text = _b64_text(body, "iam_request_body", limit=_MAX_BODY)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InvalidRequestError("iam_request_body is not a form-encoded STS request") from None
    names = [k for k, _ in pairs]
    if (
        names.count("Action") != 1
        or dict(pairs).get("Action") != "GetCallerIdentity"
        or any(k not in ("Action", "Version") for k in names)
    ):
        raise InvalidRequestError(
            "iam_request_body must be an sts:GetCallerIdentity request "
            "(Action=GetCallerIdentity&Version=2011-06-15) and nothing else"
        )
    headers = _headers(body.get("iam_request_headers"))
    allowed = _DEFAULT_ALLOWED_HEADERS | {h.lower() for h in config.allowed_sts_header_values}
    for name in headers:
        if name.startswith("x-amz-") and name not in allowed:
            raise InvalidRequestError(f"invalid request header: {name}")
    if config.iam_server_id_header_value:
        _check_server_id(headers, config.iam_server_id_header_value)
    headers.setdefault("host", [parts.netloc])
    flat = tuple(
        (name, value)
        for name, values in headers.items()
        if name not in _HOP_BY_HOP
        for value in values
    )
    return _SignedRequest(url=url, body=text.encode(), headers=flat)


def _check_server_id(headers: Mapping[str, list[str]], expected: str) -> None:
    given = ",".join(headers.get(SERVER_ID_HEADER.lower(), []))
    if not given:
        raise PermissionDeniedError(f"missing header {SERVER_ID_HEADER!r}")
    if given != expected:
        raise PermissionDeniedError(
            f"the {SERVER_ID_HEADER} header is {given[:64]!r}, this server expects {expected!r}"
        )
    authorization = ",".join(headers.get("authorization", []))
    signed = re.findall(r"SignedHeaders=([^,\s]+)", authorization)
    if len(signed) != 1:
        raise PermissionDeniedError(
            f"the {SERVER_ID_HEADER} header must be signed (no single SignedHeaders in Authorization)"
        )
    if SERVER_ID_HEADER.lower() not in signed[0].lower().split(";"):
        raise PermissionDeniedError(
            f"the {SERVER_ID_HEADER} header is not among the signed headers"
        )


def _local(tag: str) -> str:
    return _STS_NS.sub("", tag)


def _parse_answer(status: int, content: bytes) -> CallerIdentity:
    try:
        root = ElementTree.fromstring(content)
    except (ElementTree.ParseError, DefusedXmlException, ValueError):
        root = None
    fields: dict[str, str] = {}
    if root is not None:
        for element in root.iter():
            if element.text and _local(element.tag) in ("Arn", "UserId", "Account", "Code"):
                fields.setdefault(_local(element.tag), element.text.strip())
    if 400 <= status < 500:
        code = re.sub(r"[^A-Za-z0-9.]", "", fields.get("Code", ""))[:64] or "no error code"
        raise PermissionDeniedError(
            f"AWS STS refused the signed GetCallerIdentity request (HTTP {status}, {code})"
        )
    if status != 200:
        raise StsUnavailableError(f"AWS STS answered HTTP {status} to GetCallerIdentity")
    if not fields.get("Arn"):
        raise StsUnavailableError("AWS STS answered GetCallerIdentity without an ARN")
    return CallerIdentity.from_arn(
        fields["Arn"], user_id=fields.get("UserId", ""), account=fields.get("Account", "")
    )


async def _ask_sts(
    config: _Config, request: _SignedRequest, *, verify: ssl.SSLContext
) -> CallerIdentity:
    """Send the client's signed request to the configured STS endpoint; the answer's identity."""
    target = config.endpoint + "/"
    headers = [(k, v) for k, v in request.headers if k != "content-length"]
    headers.append(("content-length", str(len(request.body))))
    attempts = 1 + max(config.max_retries, 0) if config.max_retries >= 0 else 3
    last = "no answer"
    for _ in range(attempts):
        try:
            async with httpx.AsyncClient(
                verify=verify, timeout=_TIMEOUT, follow_redirects=False
            ) as http:
                async with http.stream(
                    "POST", target, content=request.body, headers=headers
                ) as response:
                    content = b""
                    async for chunk in response.aiter_bytes():
                        content += chunk
                        if len(content) > _MAX_ANSWER:
                            raise StsUnavailableError("AWS STS answered with more than 64 KiB")
                    status = response.status_code
        except httpx.HTTPError as exc:
            last = type(exc).__name__
            continue
        if status >= 500:
            last = f"HTTP {status}"
            continue
        return _parse_answer(status, content)
    raise StsUnavailableError(f"could not ask AWS STS at {config.endpoint}: {last}")


# -- the method -----------------------------------------------------------------------------


class AwsMethod:
    """Serves every mount of type ``aws``."""

    def __init__(self, deps: MethodDeps) -> None:
        self._deps = deps
        self._tls: ssl.SSLContext | None = None

    def _verify(self) -> ssl.SSLContext:
        """The TLS context for STS, built once: loading the CA bundle costs more than a login."""
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return self._tls

    @staticmethod
    def route(rest: str) -> str:
        rest = rest.rstrip("/")
        if rest in ("login", "config/client", "role", "roles", ""):
            return rest or "root"
        return "role/:name" if rest.startswith("role/") else "unknown"

    async def handle(self, call: Call, mount: AuthMount, rest: str) -> Reply:
        rest = rest.rstrip("/")
        if rest == "login":
            return await self._login(call, mount)
        if rest == "config/client":
            return await self._config(call, mount)
        if rest in ("role", "roles"):
            if call.method != "LIST":
                raise unsupported(call)
            self._deps.require(call, "list")
            names = await self._deps.records(mount).list("role/")
            return Reply(data={"keys": names}) if names else _not_found()
        if rest.startswith("role/"):
            return await self._role(call, mount, rest[len("role/") :])
        raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')

    async def _config(self, call: Call, mount: AuthMount) -> Reply:
        records = self._deps.records(mount)
        if call.method == "GET":
            self._deps.require(call, "read")
            doc = await records.get("config/client")
            return _not_found() if doc is None else Reply(data=_Config.from_doc(doc).describe())
        if call.method == "DELETE":
            self._deps.require(call, "delete")
            done = answer_at_commit(Reply.no_content())
            await records.delete("config/client")
            return done
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._deps.require(call, "update")
        config = _parse_config(call.json())
        done = answer_at_commit(Reply.no_content())
        await records.put("config/client", config.to_doc())
        return done

    async def _role(self, call: Call, mount: AuthMount, name: str) -> Reply:
        return await role_endpoint(
            call,
            self._deps,
            mount,
            name,
            name_rule=_ROLE_NAME,
            name_error="role name must be 1-128 letters, digits or any of '._@+=,-'",
            from_doc=_Role.from_doc,
            parse=_parse_role,
        )

    async def _login(self, call: Call, mount: AuthMount) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        body = call.json()
        role_name = str_field(body, "role").strip()
        if role_name and not _ROLE_NAME.fullmatch(role_name):
            raise InvalidRequestError(f'invalid role name "{role_name[:128]}"')
        records = self._deps.records(mount)
        config = _Config.from_doc(await records.get("config/client") or {})
        request = _signed_request(body, config)
        identity = await _ask_sts(config, request, verify=self._verify())
        role_name = role_name or identity.friendly_name
        role_doc = (
            await records.get(f"role/{role_name}") if _ROLE_NAME.fullmatch(role_name) else None
        )
        if role_doc is None:
            raise InvalidRequestError(f'entry for role "{role_name[:128]}" not found')
        role = _Role.from_doc(role_doc)
        if not glob_match(role.bound_iam_principal_arn, identity.canonical_arn):
            raise PermissionDeniedError(
                f"IAM principal {identity.canonical_arn!r} does not belong to the role "
                f'"{role_name}" (it is not in bound_iam_principal_arn)'
            )
        metadata = {
            "role": role_name,
            "auth_type": "iam",
            "account_id": identity.account,
            "canonical_arn": identity.canonical_arn,
            "client_arn": identity.arn,
            "client_user_id": identity.user_id,
        }
        return await login_reply(
            storage=self._deps.storage,
            tokens=self._deps.tokens,
            mount=mount,
            settings=role.token,
            display_name=identity.friendly_name[:128],
            metadata=metadata,
            now=self._deps.clock(),
        )
