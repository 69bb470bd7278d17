"""The ``kubernetes`` auth method: a pod logs in with its service-account token.

Endpoints under ``auth/<mount>/`` (Vault's names and shapes):

* ``config`` — ``kubernetes_host``, ``kubernetes_ca_cert``, ``token_reviewer_jwt``
  (secret: stored encrypted, never returned), ``pem_keys``, ``issuer``,
  ``disable_iss_validation``; Kustos extensions ``jwks`` (an inline JWKS
  document) and ``jwks_url`` (+ ``jwks_ca_pem``).
* ``role/<name>`` — ``bound_service_account_names``,
  ``bound_service_account_namespaces`` (``*`` and ``app-*`` globs),
  ``audience`` and the ``token_*`` fields; ``LIST role``.
* ``login`` — ``{role, jwt}``, no token needed.

Verification: with public keys configured (``pem_keys``, ``jwks`` or
``jwks_url``) the JWT is verified offline (:mod:`kustos.server.auth.jwts`);
otherwise the server asks the cluster with a TokenReview
(``POST {kubernetes_host}/apis/authentication.k8s.io/v1/tokenreviews``,
authenticated with ``token_reviewer_jwt`` or, without one, the JWT itself).
Then the role's bound names, namespaces and audience are checked; the
token's metadata names the role, namespace and service account.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import httpx
import orjson

from kustos.errors import InvalidRequestError, KustosError, NotFoundError, PermissionDeniedError
from kustos.server.auth import MethodDeps
from kustos.server.auth.issuing import TokenSettings, login_reply, str_field
from kustos.server.auth.jwts import (
    ServiceAccount,
    check_claims,
    glob_match,
    load_jwks,
    load_pem_keys,
    service_account_from_claims,
    unverified_claims,
    verify_signature,
)
from kustos.server.auth.keysets import KeySets, KeySetSource, ca_context
from kustos.server.auth.mounts import AuthMount
from kustos.server.auth.records import Records
from kustos.server.auth.roles import role_endpoint
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.params import bool_param, str_list_param

__all__ = ["KubernetesMethod", "TokenReviewError", "service_account_uid"]

_ROLE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_REVIEW_PATH: Final = "/apis/authentication.k8s.io/v1/tokenreviews"
_HTTP_TIMEOUT: Final = 10.0
_MAX_JWT: Final = 16 * 1024


class TokenReviewError(KustosError):
    """The Kubernetes API could not be asked (unreachable, refused the reviewer, bad answer): 500."""


@dataclass(frozen=True)
class _Config:
    kubernetes_host: str = ""
    kubernetes_ca_cert: str = ""
    token_reviewer_jwt: str = ""
    pem_keys: tuple[str, ...] = ()
    jwks: dict[str, Any] | None = None
    jwks_url: str = ""
    jwks_ca_pem: str = ""
    issuer: str = ""
    disable_iss_validation: bool = False
    disable_local_ca_jwt: bool = False

    def to_doc(self) -> dict[str, Any]:
        return {
            "kubernetes_host": self.kubernetes_host,
            "kubernetes_ca_cert": self.kubernetes_ca_cert,
            "token_reviewer_jwt": self.token_reviewer_jwt,
            "pem_keys": list(self.pem_keys),
            "jwks": self.jwks,
            "jwks_url": self.jwks_url,
            "jwks_ca_pem": self.jwks_ca_pem,
            "issuer": self.issuer,
            "disable_iss_validation": self.disable_iss_validation,
            "disable_local_ca_jwt": self.disable_local_ca_jwt,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> _Config:
        return cls(
            kubernetes_host=str(doc.get("kubernetes_host", "")),
            kubernetes_ca_cert=str(doc.get("kubernetes_ca_cert", "")),
            token_reviewer_jwt=str(doc.get("token_reviewer_jwt", "")),
            pem_keys=tuple(str(k) for k in doc.get("pem_keys") or ()),
            jwks=doc.get("jwks") if isinstance(doc.get("jwks"), dict) else None,
            jwks_url=str(doc.get("jwks_url", "")),
            jwks_ca_pem=str(doc.get("jwks_ca_pem", "")),
            issuer=str(doc.get("issuer", "")),
            disable_iss_validation=bool(doc.get("disable_iss_validation", False)),
            disable_local_ca_jwt=bool(doc.get("disable_local_ca_jwt", False)),
        )

    def describe(self) -> dict[str, Any]:
        """The config as a read returns it: never the reviewer JWT, only whether it is set."""
        doc = self.to_doc()
        doc.pop("token_reviewer_jwt")
        doc["token_reviewer_jwt_set"] = bool(self.token_reviewer_jwt)
        return doc

    @property
    def offline(self) -> bool:
        return bool(self.pem_keys or self.jwks or self.jwks_url)


@dataclass(frozen=True)
class _Role:
    names: tuple[str, ...]
    namespaces: tuple[str, ...]
    audience: str
    alias_name_source: str
    token: TokenSettings

    def to_doc(self) -> dict[str, Any]:
        return {
            "bound_service_account_names": list(self.names),
            "bound_service_account_namespaces": list(self.namespaces),
            "audience": self.audience,
            "alias_name_source": self.alias_name_source,
            "token": self.token.to_doc(),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> _Role:
        return cls(
            names=tuple(doc.get("bound_service_account_names", ())),
            namespaces=tuple(doc.get("bound_service_account_namespaces", ())),
            audience=str(doc.get("audience", "")),
            alias_name_source=str(doc.get("alias_name_source", "serviceaccount_uid")),
            token=TokenSettings.from_doc(doc.get("token", {})),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "bound_service_account_names": list(self.names),
            "bound_service_account_namespaces": list(self.namespaces),
            "audience": self.audience,
            "alias_name_source": self.alias_name_source,
            **self.token.describe(),
        }


class KubernetesMethod:
    """Serves every mount of type ``kubernetes``."""

    def __init__(self, deps: MethodDeps, *, keysets: KeySets | None = None) -> None:
        self._deps = deps
        self._keysets = keysets or KeySets(clock=deps.clock)

    @staticmethod
    def route(rest: str) -> str:
        rest = rest.rstrip("/")
        if rest in ("login", "config", "role", ""):
            return rest or "root"
        return "role/:name" if rest.startswith("role/") else "unknown"

    async def handle(self, call: Call, mount: AuthMount, rest: str) -> Reply:
        rest = rest.rstrip("/")
        if rest == "login":
            return await self._login(call, mount)
        if rest == "config":
            return await self._config(call, mount)
        if rest == "role":
            if call.method != "LIST":
                raise unsupported(call)
            self._deps.require(call, "list")
            names = await self._deps.records(mount).list("role/")
            return Reply(data={"keys": names}) if names else _not_found()
        if rest.startswith("role/"):
            return await self._role(call, mount, rest[len("role/") :])
        raise NotFoundError(f'no handler for route "{call.path}". route entry not found.')

    # -- config -----------------------------------------------------------------------

    async def _config(self, call: Call, mount: AuthMount) -> Reply:
        records = self._deps.records(mount)
        if call.method == "GET":
            self._deps.require(call, "read")
            doc = await records.get("config")
            if doc is None:
                return _not_found()
            return Reply(data=_Config.from_doc(doc).describe())
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._deps.require(call, "update")
        body = call.json()
        config = _parse_config(body)
        done = answer_at_commit(Reply.no_content())
        await records.put("config", config.to_doc())
        self._keysets.forget(mount.uuid)
        return done

    # -- roles ----------------------------------------------------------------------------

    async def _role(self, call: Call, mount: AuthMount, name: str) -> Reply:
        return await role_endpoint(
            call,
            self._deps,
            mount,
            name,
            name_rule=_ROLE_NAME,
            name_error="role name must be 1-128 letters, digits, '.', '_', '@' or '-'",
            from_doc=_Role.from_doc,
            parse=_parse_role,
        )

    # -- login ------------------------------------------------------------------------------

    async def _login(self, call: Call, mount: AuthMount) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        body = call.json()
        role_name = str_field(body, "role")
        token = str_field(body, "jwt").strip()
        if not role_name:
            raise InvalidRequestError("missing role")
        if not token:
            raise InvalidRequestError("missing jwt")
        if len(token) > _MAX_JWT:
            raise InvalidRequestError("jwt is too long")
        records = self._deps.records(mount)
        role_doc = (
            await records.get(f"role/{role_name}") if _ROLE_NAME.fullmatch(role_name) else None
        )
        if role_doc is None:
            raise InvalidRequestError(f'invalid role name "{role_name[:128]}"')
        role = _Role.from_doc(role_doc)
        config_doc = await records.get("config")
        if config_doc is None:
            raise InvalidRequestError(
                f"the kubernetes auth method at auth/{mount.path} is not configured: write auth/{mount.path}config first"
            )
        config = _Config.from_doc(config_doc)
        now = self._deps.clock()
        if config.offline:
            issuer = config.issuer if config.issuer and not config.disable_iss_validation else None
            claims = check_claims(
                await self._signed_claims(mount, config, token),
                now=now,
                issuer=issuer,
                audience=role.audience or None,
            )
            account = service_account_from_claims(claims)
        else:
            account = await _token_review(config, token, audience=role.audience)
        if not glob_match(role.names, account.name):
            raise PermissionDeniedError("service account name not authorized")
        if not glob_match(role.namespaces, account.namespace):
            raise PermissionDeniedError("namespace not authorized")
        metadata = {
            "role": role_name,
            "service_account_name": account.name,
            "service_account_namespace": account.namespace,
            "service_account_uid": account.uid,
            "service_account_secret_name": account.secret_name,
        }
        if account.pod_name:
            metadata["service_account_pod_name"] = account.pod_name
        if account.pod_uid:
            metadata["service_account_pod_uid"] = account.pod_uid
        return await login_reply(
            storage=self._deps.storage,
            tokens=self._deps.tokens,
            mount=mount,
            settings=role.token,
            display_name=f"{account.namespace}-{account.name}",
            metadata=metadata,
            now=now,
        )

    async def _signed_claims(self, mount: AuthMount, config: _Config, token: str) -> dict[str, Any]:
        """The claims of ``token`` once its signature checks out with the configured keys.

        Keys fetched from ``jwks_url`` are cached and fetched again when a
        token names a key the cached set lacks (see :mod:`.keysets`).
        """
        keys = load_pem_keys(config.pem_keys)
        if config.jwks:
            keys += load_jwks(config.jwks)
        if not config.jwks_url:
            return verify_signature(token, keys=keys)
        source = KeySetSource(jwks_url=config.jwks_url, ca_pem=config.jwks_ca_pem)
        verified = await self._keysets.verify(
            token, owner=mount.uuid, source=source, extra_keys=keys
        )
        return verified.claims


def _not_found() -> NoReturn:
    raise NotFoundError("")


def _parse_config(body: dict[str, Any]) -> _Config:
    host = str_field(body, "kubernetes_host").strip().rstrip("/")
    if host and not host.startswith(("https://", "http://")):
        raise InvalidRequestError(
            "kubernetes_host must be a URL starting with https:// (or http://)"
        )
    ca = str_field(body, "kubernetes_ca_cert").strip()
    if ca:
        ca_context(ca, field="kubernetes_ca_cert")
    pem_keys = (
        str_list_param(body.get("pem_keys"), field="pem_keys")
        if not isinstance(body.get("pem_keys"), str)
        else [body["pem_keys"]]
    )
    pem_keys = [k for k in pem_keys if k.strip()]
    load_pem_keys(pem_keys)
    jwks_raw = body.get("jwks")
    jwks: dict[str, Any] | None = None
    if isinstance(jwks_raw, str) and jwks_raw.strip():
        try:
            jwks_raw = orjson.loads(jwks_raw)
        except orjson.JSONDecodeError:
            raise InvalidRequestError(
                "jwks must be a JSON Web Key Set (JSON object or JSON text)"
            ) from None
    if isinstance(jwks_raw, dict):
        load_jwks(jwks_raw)
        jwks = jwks_raw
    elif jwks_raw not in (None, ""):
        raise InvalidRequestError("jwks must be a JSON Web Key Set (JSON object or JSON text)")
    jwks_url = str_field(body, "jwks_url").strip()
    if jwks_url and not jwks_url.startswith(("https://", "http://")):
        raise InvalidRequestError("jwks_url must be an https:// URL")
    jwks_ca = str_field(body, "jwks_ca_pem").strip()
    if jwks_ca:
        ca_context(jwks_ca, field="jwks_ca_pem")
    if not (host or pem_keys or jwks or jwks_url):
        raise InvalidRequestError(
            "kubernetes_host is required unless pem_keys, jwks or jwks_url is set"
        )
    flags = {}
    for name in ("disable_iss_validation", "disable_local_ca_jwt"):
        flags[name] = body.get(name) is not None and bool_param(body[name], field=name)
    return _Config(
        kubernetes_host=host,
        kubernetes_ca_cert=ca,
        token_reviewer_jwt=str_field(body, "token_reviewer_jwt").strip(),
        pem_keys=tuple(pem_keys),
        jwks=jwks,
        jwks_url=jwks_url,
        jwks_ca_pem=jwks_ca,
        issuer=str_field(body, "issuer").strip(),
        disable_iss_validation=flags["disable_iss_validation"],
        disable_local_ca_jwt=flags["disable_local_ca_jwt"],
    )


def _parse_role(body: dict[str, Any], current: _Role | None) -> _Role:
    def bound(name: str, existing: tuple[str, ...]) -> tuple[str, ...]:
        if name not in body:
            return existing
        return tuple(dict.fromkeys(str_list_param(body[name], field=name)))

    names = bound("bound_service_account_names", current.names if current else ())
    namespaces = bound("bound_service_account_namespaces", current.namespaces if current else ())
    if not names:
        raise InvalidRequestError('"bound_service_account_names" can not be empty')
    if not namespaces:
        raise InvalidRequestError('"bound_service_account_namespaces" can not be empty')
    if names == ("*",) and namespaces == ("*",):
        raise InvalidRequestError(
            '"bound_service_account_names" and "bound_service_account_namespaces" can not both be "*"'
        )
    audience = current.audience if current else ""
    if "audience" in body:
        audience = str_field(body, "audience").strip()
    alias = current.alias_name_source if current else "serviceaccount_uid"
    if "alias_name_source" in body:
        alias = str_field(body, "alias_name_source")
        if alias not in ("serviceaccount_uid", "serviceaccount_name"):
            raise InvalidRequestError(
                'alias_name_source must be "serviceaccount_uid" or "serviceaccount_name"'
            )
    token = (current.token if current else TokenSettings()).updated(body)
    return _Role(
        names=names, namespaces=namespaces, audience=audience, alias_name_source=alias, token=token
    )


def _parse_username(username: str) -> tuple[str, str] | None:
    parts = username.split(":")
    if (
        len(parts) != 4
        or parts[0] != "system"
        or parts[1] != "serviceaccount"
        or not parts[2]
        or not parts[3]
    ):
        return None
    return parts[2], parts[3]


async def _token_review(config: _Config, token: str, *, audience: str) -> ServiceAccount:
    """Ask the cluster whether ``token`` is valid (TokenReview) and whom it names."""
    if not config.kubernetes_host:
        raise InvalidRequestError("kubernetes_host is not configured and no public keys are set")
    try:
        claims: dict[str, Any] | None = unverified_claims(token)
    except InvalidRequestError:
        claims = None
    bearer = config.token_reviewer_jwt or token
    spec: dict[str, Any] = {"token": token}
    if audience:
        spec["audiences"] = [audience]
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
    verify: bool | ssl.SSLContext = True
    if config.kubernetes_ca_cert:
        verify = ca_context(config.kubernetes_ca_cert, field="kubernetes_ca_cert")
    url = config.kubernetes_host + _REVIEW_PATH
    try:
        async with httpx.AsyncClient(verify=verify, timeout=_HTTP_TIMEOUT) as http:
            response = await http.post(
                url, json=review, headers={"Authorization": f"Bearer {bearer}"}
            )
    except httpx.HTTPError as exc:
        raise TokenReviewError(
            f"TokenReview request to {config.kubernetes_host} failed: {type(exc).__name__}"
        ) from None
    if response.status_code in (401, 403):
        raise TokenReviewError(
            f"the Kubernetes API refused the TokenReview (HTTP {response.status_code}): the reviewer needs "
            "permission to create tokenreviews (ClusterRole system:auth-delegator)"
        )
    if response.status_code not in (200, 201):
        raise TokenReviewError(
            f"TokenReview failed: the Kubernetes API answered HTTP {response.status_code}"
        )
    try:
        doc = orjson.loads(response.content)
        status = doc.get("status") or {}
        authenticated = bool(status.get("authenticated"))
        user = status.get("user") or {}
        username = str(user.get("username", ""))
        uid = str(user.get("uid", ""))
        extra = user.get("extra") or {}
        audiences = status.get("audiences")
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        raise TokenReviewError(
            "TokenReview failed: the Kubernetes API answered with a malformed body"
        ) from None
    if not authenticated:
        raise PermissionDeniedError(
            "lookup failed: service account unauthorized; this could mean it has been deleted or recreated with a new token"
        )
    parsed = _parse_username(username)
    if parsed is None:
        raise PermissionDeniedError("the token does not belong to a service account")
    namespace, name = parsed
    if audience and isinstance(audiences, list) and audience not in audiences:
        raise PermissionDeniedError(
            f"invalid audience (aud) claim: the token is not for audience {audience!r}"
        )
    pod_names = (
        extra.get("authentication.kubernetes.io/pod-name") if isinstance(extra, dict) else None
    )
    pod_uids = (
        extra.get("authentication.kubernetes.io/pod-uid") if isinstance(extra, dict) else None
    )
    secret_name = ""
    if claims is not None:
        try:
            from_claims = service_account_from_claims(claims)
        except PermissionDeniedError:
            from_claims = None
        if from_claims is not None:
            if (from_claims.namespace, from_claims.name) != (namespace, name):
                raise PermissionDeniedError(
                    "the JWT's claims do not match the service account the TokenReview names"
                )
            secret_name = from_claims.secret_name
    return ServiceAccount(
        namespace=namespace,
        name=name,
        uid=uid,
        secret_name=secret_name,
        pod_name=str(pod_names[0]) if isinstance(pod_names, list) and pod_names else "",
        pod_uid=str(pod_uids[0]) if isinstance(pod_uids, list) and pod_uids else "",
    )


async def service_account_uid(records: Records, *, namespace: str, name: str) -> str:
    """The UID of ``namespace/name``, read from the cluster this mount is configured for.

    ``GET {kubernetes_host}/api/v1/namespaces/<ns>/serviceaccounts/<name>``
    with the ``token_reviewer_jwt`` (which then needs ``get`` on
    ``serviceaccounts``). Raises :class:`NotFoundError` when the account does
    not exist, :class:`TokenReviewError` when the cluster cannot be asked.
    """
    doc = await records.get("config")
    if doc is None:
        raise InvalidRequestError(
            "the kubernetes auth method is not configured: write its config first"
        )
    config = _Config.from_doc(doc)
    if not config.kubernetes_host or not config.token_reviewer_jwt:
        raise InvalidRequestError(
            "looking up a service account's uid needs kubernetes_host and token_reviewer_jwt "
            "in the kubernetes auth config (or pass the uid)"
        )
    verify: bool | ssl.SSLContext = True
    if config.kubernetes_ca_cert:
        verify = ca_context(config.kubernetes_ca_cert, field="kubernetes_ca_cert")
    url = f"{config.kubernetes_host}/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
    try:
        async with httpx.AsyncClient(verify=verify, timeout=_HTTP_TIMEOUT) as http:
            response = await http.get(
                url, headers={"Authorization": f"Bearer {config.token_reviewer_jwt}"}
            )
    except httpx.HTTPError as exc:
        raise TokenReviewError(
            f"reading service account {namespace}/{name} from {config.kubernetes_host} failed: "
            f"{type(exc).__name__}"
        ) from None
    if response.status_code == 404:
        raise NotFoundError(f"service account {namespace}/{name} does not exist in the cluster")
    if response.status_code in (401, 403):
        raise TokenReviewError(
            f"the Kubernetes API refused to read service account {namespace}/{name} "
            f"(HTTP {response.status_code}): the reviewer needs get on serviceaccounts"
        )
    try:
        uid = str(orjson.loads(response.content)["metadata"]["uid"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        uid = ""
    if response.status_code != 200 or not uid:
        raise TokenReviewError(
            f"reading service account {namespace}/{name} failed: HTTP {response.status_code}"
        )
    return uid
