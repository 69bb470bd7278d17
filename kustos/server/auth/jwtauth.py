"""The ``jwt`` auth method: a CI job or a cloud workload logs in with an OIDC token it already has.

GitHub Actions, GitLab CI, cloud workload identities and Kubernetes itself
issue short-lived signed JWTs; this method trusts an issuer's keys and maps
token claims to policies, so no long-lived Kustos token has to sit in CI
settings. Vault's paths and shapes (its ``jwt`` plugin, role type ``jwt``):

* ``config`` — exactly one key source: ``oidc_discovery_url`` (+
  ``oidc_discovery_ca_pem``), ``jwks_url`` (+ ``jwks_ca_pem``) or
  ``jwt_validation_pubkeys`` (PEM); ``bound_issuer``, ``jwt_supported_algs``
  (RSA and EC algorithms only), ``default_role``. A remote source is fetched
  when the config is written, so a typo is a 400 then, not at the first login.
* ``role/<name>`` — ``role_type: jwt``, ``user_claim`` (required;
  ``user_claim_json_pointer``), ``bound_audiences``, ``bound_subject``,
  ``bound_claims`` (a claim name or JSON pointer → a value or a list of
  values; ``bound_claims_type: string`` matches exactly, ``glob`` with
  ``*``), ``claim_mappings`` (claim → token metadata key),
  ``clock_skew_leeway`` / ``expiration_leeway`` / ``not_before_leeway``
  (seconds; 0 means the default, -1 none), and the ``token_*`` fields. A
  role needs at least one of ``bound_audiences``, ``bound_subject`` or
  ``bound_claims``. ``LIST role``.
* ``login`` — ``{role, jwt}`` (``role`` defaults to ``default_role``), no token.

Login checks, in order, each refusal a 403 naming what failed: signature
(algorithm allowed, a key of the set; an unknown key id makes the set be
fetched again, see :mod:`.keysets`), ``exp`` (required) / ``nbf`` / ``iat``
with the role's leeways, issuer (the discovered one, or ``bound_issuer``),
audience (a token with an ``aud`` needs a role with ``bound_audiences``, as
in Vault), subject, bound claims, the user claim. The token's metadata holds
``role`` and the mapped claims; its display name is the user claim.

Not supported (refused with a message): role type ``oidc`` (the browser
flow), ``oidc_client_id``/``oidc_client_secret``, ``groups_claim`` (Kustos
has no identity groups).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from kustos.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from kustos.server.auth import MethodDeps
from kustos.server.auth.issuing import TokenSettings, login_reply, str_field
from kustos.server.auth.jwts import (
    ALLOWED_ALGORITHMS,
    DEFAULT_LEEWAY,
    Leeway,
    check_times,
    glob_match,
    load_pem_keys,
    verify_signature,
)
from kustos.server.auth.keysets import KeySets, KeySetSource, ca_context, check_url
from kustos.server.auth.mounts import AuthMount
from kustos.server.auth.roles import role_endpoint
from kustos.server.calls import Call, Reply, unsupported
from kustos.server.committing import answer_at_commit
from kustos.server.params import bool_param, str_list_param
from kustos.server.times import parse_duration

__all__ = ["JwtMethod", "claim_value", "match_bound_claims"]

_ROLE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_MAX_JWT: Final = 16 * 1024
_MAX_TEXT: Final = 1024
_MAX_PEM: Final = 64 * 1024
_MAX_CLAIMS: Final = 64
_MAX_VALUES: Final = 256
_MAX_LEEWAY: Final = 3600
_DEFAULT_EXPIRATION_LEEWAY: Final = 150.0
_DEFAULT_NOT_BEFORE_LEEWAY: Final = 150.0
_CLAIM_TYPES: Final = ("string", "glob")


def _not_found() -> NoReturn:
    raise NotFoundError("")


def _text(body: Mapping[str, Any], name: str, *, limit: int = _MAX_TEXT) -> str:
    value = str_field(body, name).strip()
    if len(value) > limit:
        raise InvalidRequestError(f"{name} is longer than {limit} characters")
    return value


# -- claims ---------------------------------------------------------------------------------


def claim_value(claims: Mapping[str, Any], name: str, *, pointer: bool | None = None) -> Any:
    """The claim ``name``: a top-level key, or a JSON pointer (``/a/b/0``) when it starts with ``/``.

    ``pointer`` forces one reading. Returns ``None`` when the claim is absent.
    """
    if pointer is None:
        pointer = name.startswith("/")
    if not pointer:
        return claims.get(name)
    node: Any = claims
    for raw in name.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isascii() and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    return node


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def match_bound_claims(
    bound: Sequence[tuple[str, tuple[str, ...]]], claims: Mapping[str, Any], *, glob: bool
) -> None:
    """Raise naming the first bound claim the token lacks or whose value matches none allowed.

    A claim that is a list matches when one of its items does.
    """
    for name, allowed in bound:
        actual = claim_value(claims, name)
        if actual is None:
            raise PermissionDeniedError(f"claim {name!r} is missing from the token")
        items = actual if isinstance(actual, list) else [actual]
        texts = [t for t in (_scalar_text(i) for i in items) if t is not None]
        if not texts and items:
            raise PermissionDeniedError(f"claim {name!r} is not a string or a list of strings")
        for text in texts:
            if (glob and glob_match(allowed, text)) or (not glob and text in allowed):
                break
        else:
            raise PermissionDeniedError(
                f"claim {name!r} does not match any associated bound claim values"
            )


# -- config ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Config:
    oidc_discovery_url: str = ""
    oidc_discovery_ca_pem: str = ""
    jwks_url: str = ""
    jwks_ca_pem: str = ""
    jwt_validation_pubkeys: tuple[str, ...] = ()
    bound_issuer: str = ""
    jwt_supported_algs: tuple[str, ...] = ()
    default_role: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {
            "oidc_discovery_url": self.oidc_discovery_url,
            "oidc_discovery_ca_pem": self.oidc_discovery_ca_pem,
            "jwks_url": self.jwks_url,
            "jwks_ca_pem": self.jwks_ca_pem,
            "jwt_validation_pubkeys": list(self.jwt_validation_pubkeys),
            "bound_issuer": self.bound_issuer,
            "jwt_supported_algs": list(self.jwt_supported_algs),
            "default_role": self.default_role,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> _Config:
        return cls(
            oidc_discovery_url=str(doc.get("oidc_discovery_url", "")),
            oidc_discovery_ca_pem=str(doc.get("oidc_discovery_ca_pem", "")),
            jwks_url=str(doc.get("jwks_url", "")),
            jwks_ca_pem=str(doc.get("jwks_ca_pem", "")),
            jwt_validation_pubkeys=tuple(str(k) for k in doc.get("jwt_validation_pubkeys") or ()),
            bound_issuer=str(doc.get("bound_issuer", "")),
            jwt_supported_algs=tuple(str(a) for a in doc.get("jwt_supported_algs") or ()),
            default_role=str(doc.get("default_role", "")),
        )

    def describe(self) -> dict[str, Any]:
        return {
            **self.to_doc(),
            "oidc_client_id": "",
            "oidc_response_mode": "",
            "oidc_response_types": [],
            "provider_config": {},
            "namespace_in_state": True,
        }

    @property
    def source(self) -> KeySetSource | None:
        if self.oidc_discovery_url:
            return KeySetSource(
                discovery_url=self.oidc_discovery_url, ca_pem=self.oidc_discovery_ca_pem
            )
        if self.jwks_url:
            return KeySetSource(jwks_url=self.jwks_url, ca_pem=self.jwks_ca_pem)
        return None

    @property
    def algorithms(self) -> tuple[str, ...]:
        return self.jwt_supported_algs or ALLOWED_ALGORITHMS


def _parse_config(body: Mapping[str, Any]) -> _Config:
    for name in ("oidc_client_id", "oidc_client_secret"):
        if body.get(name) not in (None, ""):
            raise InvalidRequestError(
                f"{name} is for the OIDC browser login, which Kustos does not support; "
                "leave it unset (jwt roles need no client)"
            )
    discovery = _text(body, "oidc_discovery_url", limit=2048)
    jwks_url = _text(body, "jwks_url", limit=2048)
    raw_keys = body.get("jwt_validation_pubkeys")
    pems = [raw_keys] if isinstance(raw_keys, str) else raw_keys
    if pems is not None and not (isinstance(pems, list) and all(isinstance(p, str) for p in pems)):
        raise InvalidRequestError("jwt_validation_pubkeys must be a list of PEM strings")
    pubkeys = [p.strip() for p in pems or () if p.strip()]
    if len(pubkeys) > _MAX_VALUES or any(len(p) > _MAX_PEM for p in pubkeys):
        raise InvalidRequestError("jwt_validation_pubkeys has too many or too long entries")
    chosen = [n for n, v in (("oidc_discovery_url", discovery), ("jwks_url", jwks_url),
                             ("jwt_validation_pubkeys", pubkeys)) if v]  # fmt: skip
    if len(chosen) != 1:
        raise InvalidRequestError(
            "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if discovery:
        check_url(discovery, field="oidc_discovery_url")
    if jwks_url:
        check_url(jwks_url, field="jwks_url")
    load_pem_keys(pubkeys)
    cas: dict[str, str] = {}
    for name in ("oidc_discovery_ca_pem", "jwks_ca_pem"):
        cas[name] = _text(body, name, limit=_MAX_PEM)
        if cas[name]:
            ca_context(cas[name], field=name)
    if cas["oidc_discovery_ca_pem"] and not discovery:
        raise InvalidRequestError("oidc_discovery_ca_pem needs oidc_discovery_url")
    if cas["jwks_ca_pem"] and not jwks_url:
        raise InvalidRequestError("jwks_ca_pem needs jwks_url")
    algorithms = str_list_param(body.get("jwt_supported_algs"), field="jwt_supported_algs")
    for algorithm in algorithms:
        if algorithm not in ALLOWED_ALGORITHMS:
            raise InvalidRequestError(
                f"jwt_supported_algs: {algorithm[:16]!r} is not allowed; choose from "
                f"{', '.join(ALLOWED_ALGORITHMS)} (no 'none', no HMAC)"
            )
    default_role = _text(body, "default_role")
    if default_role and not _ROLE_NAME.fullmatch(default_role):
        raise InvalidRequestError("default_role is not a valid role name")
    return _Config(
        oidc_discovery_url=discovery,
        oidc_discovery_ca_pem=cas["oidc_discovery_ca_pem"],
        jwks_url=jwks_url,
        jwks_ca_pem=cas["jwks_ca_pem"],
        jwt_validation_pubkeys=tuple(pubkeys),
        bound_issuer=_text(body, "bound_issuer"),
        jwt_supported_algs=tuple(dict.fromkeys(algorithms)),
        default_role=default_role,
    )


# -- roles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Role:
    user_claim: str
    user_claim_json_pointer: bool = False
    bound_audiences: tuple[str, ...] = ()
    bound_subject: str = ""
    bound_claims: tuple[tuple[str, tuple[str, ...]], ...] = ()
    bound_claims_type: str = "string"
    claim_mappings: tuple[tuple[str, str], ...] = ()
    clock_skew_leeway: int = 0
    expiration_leeway: int = 0
    not_before_leeway: int = 0
    token: TokenSettings = field(default_factory=TokenSettings)

    def to_doc(self) -> dict[str, Any]:
        return {
            "user_claim": self.user_claim,
            "user_claim_json_pointer": self.user_claim_json_pointer,
            "bound_audiences": list(self.bound_audiences),
            "bound_subject": self.bound_subject,
            "bound_claims": {name: list(values) for name, values in self.bound_claims},
            "bound_claims_type": self.bound_claims_type,
            "claim_mappings": dict(self.claim_mappings),
            "clock_skew_leeway": self.clock_skew_leeway,
            "expiration_leeway": self.expiration_leeway,
            "not_before_leeway": self.not_before_leeway,
            "token": self.token.to_doc(),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> _Role:
        return cls(
            user_claim=str(doc.get("user_claim", "sub")),
            user_claim_json_pointer=bool(doc.get("user_claim_json_pointer", False)),
            bound_audiences=tuple(doc.get("bound_audiences") or ()),
            bound_subject=str(doc.get("bound_subject", "")),
            bound_claims=tuple(
                (str(k), tuple(str(v) for v in vs))
                for k, vs in (doc.get("bound_claims") or {}).items()
            ),
            bound_claims_type=str(doc.get("bound_claims_type", "string")),
            claim_mappings=tuple(
                (str(k), str(v)) for k, v in (doc.get("claim_mappings") or {}).items()
            ),
            clock_skew_leeway=int(doc.get("clock_skew_leeway", 0)),
            expiration_leeway=int(doc.get("expiration_leeway", 0)),
            not_before_leeway=int(doc.get("not_before_leeway", 0)),
            token=TokenSettings.from_doc(doc.get("token", {})),
        )

    def describe(self) -> dict[str, Any]:
        doc = self.to_doc()
        doc.pop("token")
        return {
            "role_type": "jwt",
            **doc,
            "groups_claim": "",
            "oidc_scopes": None,
            "allowed_redirect_uris": [],
            "verbose_oidc_logging": False,
            "max_age": 0,
            **self.token.describe(),
        }

    @property
    def leeway(self) -> Leeway:
        def effective(value: int, default: float) -> float:
            return default if value == 0 else 0.0 if value < 0 else float(value)

        return Leeway(
            clock_skew=effective(self.clock_skew_leeway, DEFAULT_LEEWAY),
            expiration=effective(self.expiration_leeway, _DEFAULT_EXPIRATION_LEEWAY),
            not_before=effective(self.not_before_leeway, _DEFAULT_NOT_BEFORE_LEEWAY),
        )


def _leeway(body: Mapping[str, Any], name: str, current: int) -> int:
    value = body.get(name)
    if value in (None, ""):
        return current
    if isinstance(value, bool):
        raise InvalidRequestError(f"{name} must be a number of seconds or a duration")
    if isinstance(value, int) or (isinstance(value, str) and value.strip() == "-1"):
        seconds = int(value)
    else:
        seconds = int(parse_duration(value, field=name))
    if not -1 <= seconds <= _MAX_LEEWAY:
        raise InvalidRequestError(f"{name} must be between -1 and {_MAX_LEEWAY} seconds")
    return seconds


def _claim_name(name: object, *, field: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 256:
        raise InvalidRequestError(f"{field}: claim names must be non-empty strings (256 at most)")
    return name


def _bound_claims(value: Any, *, parse_commas: bool) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if value is None or value == "":
        return ()
    if not isinstance(value, dict):
        raise InvalidRequestError("bound_claims must be a JSON object (claim -> value or list)")
    if len(value) > _MAX_CLAIMS:
        raise InvalidRequestError(f"bound_claims has more than {_MAX_CLAIMS} claims")
    out: list[tuple[str, tuple[str, ...]]] = []
    for name, raw in value.items():
        _claim_name(name, field="bound_claims")
        items = raw if isinstance(raw, list) else [raw]
        values: list[str] = []
        for item in items:
            text = _scalar_text(item)
            if text is None:
                raise InvalidRequestError(
                    f"bound_claims[{name!r}] must be a string, a number, a boolean or a list of them"
                )
            parts = text.split(",") if parse_commas and isinstance(item, str) else [text]
            values.extend(p.strip() for p in parts if p.strip())
        if not values or len(values) > _MAX_VALUES or any(len(v) > _MAX_TEXT for v in values):
            raise InvalidRequestError(
                f"bound_claims[{name!r}] needs 1 to {_MAX_VALUES} values of at most {_MAX_TEXT} characters"
            )
        out.append((name, tuple(dict.fromkeys(values))))
    return tuple(out)


def _claim_mappings(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None or value == "":
        return ()
    if not isinstance(value, dict) or len(value) > _MAX_CLAIMS:
        raise InvalidRequestError(
            f"claim_mappings must be a JSON object of at most {_MAX_CLAIMS} claim -> metadata key"
        )
    targets: set[str] = set()
    out: list[tuple[str, str]] = []
    for claim, target in value.items():
        _claim_name(claim, field="claim_mappings")
        if not isinstance(target, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", target):
            raise InvalidRequestError(
                f"claim_mappings[{claim!r}]: the metadata key must be 1-128 letters, digits, '_', '.' or '-'"
            )
        if target == "role":
            raise InvalidRequestError("claim_mappings: metadata key 'role' is reserved")
        if target in targets:
            raise InvalidRequestError(
                f"claim_mappings: metadata key {target!r} is used more than once"
            )
        targets.add(target)
        out.append((claim, target))
    return tuple(out)


def _parse_role(body: Mapping[str, Any], current: _Role | None) -> _Role:
    role_type = _text(body, "role_type") or "jwt"
    if role_type != "jwt":
        raise InvalidRequestError(
            f"role_type {role_type[:32]!r} is not supported: Kustos has jwt roles only (no OIDC browser login)"
        )
    if body.get("groups_claim") not in (None, ""):
        raise InvalidRequestError("groups_claim is not supported: Kustos has no identity groups")
    base = current or _Role(user_claim="")
    user_claim = _text(body, "user_claim", limit=256) if "user_claim" in body else base.user_claim
    if not user_claim:
        raise InvalidRequestError("user_claim is required (for example sub)")
    pointer = base.user_claim_json_pointer
    if body.get("user_claim_json_pointer") not in (None, ""):
        pointer = bool_param(body["user_claim_json_pointer"], field="user_claim_json_pointer")
    audiences = base.bound_audiences
    if "bound_audiences" in body:
        audiences = tuple(
            dict.fromkeys(str_list_param(body["bound_audiences"], field="bound_audiences"))
        )
    if len(audiences) > _MAX_VALUES:
        raise InvalidRequestError(f"bound_audiences has more than {_MAX_VALUES} items")
    subject = _text(body, "bound_subject") if "bound_subject" in body else base.bound_subject
    claims_type = base.bound_claims_type
    if body.get("bound_claims_type") not in (None, ""):
        claims_type = str_field(body, "bound_claims_type")
        if claims_type not in _CLAIM_TYPES:
            raise InvalidRequestError('bound_claims_type must be "string" or "glob"')
    parse_commas = not (
        body.get("disable_bound_claims_parsing") not in (None, "")
        and bool_param(body["disable_bound_claims_parsing"], field="disable_bound_claims_parsing")
    )
    bound = base.bound_claims
    if "bound_claims" in body:
        bound = _bound_claims(body["bound_claims"], parse_commas=parse_commas)
    mappings = base.claim_mappings
    if "claim_mappings" in body:
        mappings = _claim_mappings(body["claim_mappings"])
    if not (audiences or subject or bound):
        raise InvalidRequestError(
            "must have at least one bound constraint when creating/updating a role: "
            "bound_audiences, bound_subject or bound_claims"
        )
    return _Role(
        user_claim=user_claim,
        user_claim_json_pointer=pointer,
        bound_audiences=audiences,
        bound_subject=subject,
        bound_claims=bound,
        bound_claims_type=claims_type,
        claim_mappings=mappings,
        clock_skew_leeway=_leeway(body, "clock_skew_leeway", base.clock_skew_leeway),
        expiration_leeway=_leeway(body, "expiration_leeway", base.expiration_leeway),
        not_before_leeway=_leeway(body, "not_before_leeway", base.not_before_leeway),
        token=base.token.updated(body),
    )


# -- the method -----------------------------------------------------------------------------


class JwtMethod:
    """Serves every mount of type ``jwt``."""

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

    async def _config(self, call: Call, mount: AuthMount) -> Reply:
        records = self._deps.records(mount)
        if call.method == "GET":
            self._deps.require(call, "read")
            doc = await records.get("config")
            return _not_found() if doc is None else Reply(data=_Config.from_doc(doc).describe())
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        self._deps.require(call, "update")
        config = _parse_config(call.json())
        if config.source is not None:
            await self._keysets.check(config.source)
        done = answer_at_commit(Reply.no_content())
        await records.put("config", config.to_doc())
        self._keysets.forget(mount.uuid)
        return done

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

    async def _login(self, call: Call, mount: AuthMount) -> Reply:
        if call.method not in ("POST", "PUT"):
            raise unsupported(call)
        body = call.json()
        token = str_field(body, "jwt").strip()
        if not token:
            raise InvalidRequestError("missing jwt")
        if len(token) > _MAX_JWT:
            raise InvalidRequestError("jwt is too long")
        records = self._deps.records(mount)
        config_doc = await records.get("config")
        if config_doc is None:
            raise InvalidRequestError(
                f"the jwt auth method at auth/{mount.path} is not configured: write auth/{mount.path}config first"
            )
        config = _Config.from_doc(config_doc)
        role_name = str_field(body, "role").strip() or config.default_role
        if not role_name:
            raise InvalidRequestError("missing role (and no default_role is configured)")
        role_doc = (
            await records.get(f"role/{role_name}") if _ROLE_NAME.fullmatch(role_name) else None
        )
        if role_doc is None:
            raise InvalidRequestError(f'role "{role_name[:128]}" could not be found')
        role = _Role.from_doc(role_doc)
        claims = await self._verified_claims(token, mount=mount, config=config, role=role)
        user = _scalar_text(
            claim_value(claims, role.user_claim, pointer=role.user_claim_json_pointer)
        )
        if not user:
            raise PermissionDeniedError(
                f"claim {role.user_claim!r} (user_claim) is missing from the token or not a string"
            )
        metadata = {"role": role_name}
        for claim, target in role.claim_mappings:
            value = claim_value(claims, claim)
            if value is None:
                continue
            text = _scalar_text(value)
            if text is None:
                raise PermissionDeniedError(f"error converting claim {claim!r} to string")
            metadata[target] = text[:_MAX_TEXT]
        return await login_reply(
            storage=self._deps.storage,
            tokens=self._deps.tokens,
            mount=mount,
            settings=role.token,
            display_name=user[:128],
            metadata=metadata,
            now=self._deps.clock(),
        )

    async def _verified_claims(
        self, token: str, *, mount: AuthMount, config: _Config, role: _Role
    ) -> dict[str, Any]:
        source = config.source
        issuer = config.bound_issuer
        if source is None:
            claims = verify_signature(
                token,
                keys=load_pem_keys(config.jwt_validation_pubkeys),
                algorithms=config.algorithms,
            )
        else:
            verified = await self._keysets.verify(
                token, owner=mount.uuid, source=source, algorithms=config.algorithms
            )
            claims = verified.claims
            issuer = verified.issuer or issuer
        check_times(
            claims,
            now=self._deps.clock(),
            leeway=role.leeway,
            what="the JWT",
            require_exp=True,
            check_iat=True,
        )
        if issuer and claims.get("iss") != issuer:
            raise PermissionDeniedError(
                f"invalid issuer (iss) claim: expected {issuer!r}, got {str(claims.get('iss'))[:200]!r}"
            )
        raw_aud = claims.get("aud")
        audiences = (
            [raw_aud]
            if isinstance(raw_aud, str)
            else [a for a in raw_aud if isinstance(a, str)]
            if isinstance(raw_aud, list)
            else []
        )
        if role.bound_audiences:
            if not set(audiences) & set(role.bound_audiences):
                raise PermissionDeniedError(
                    "invalid audience (aud) claim: aud claim does not match any bound audience"
                )
        elif audiences:
            raise PermissionDeniedError(
                "audience claim found in JWT but no audiences bound to the role"
            )
        if role.bound_subject and claims.get("sub") != role.bound_subject:
            raise PermissionDeniedError("sub claim does not match bound subject")
        match_bound_claims(role.bound_claims, claims, glob=role.bound_claims_type == "glob")
        return claims
