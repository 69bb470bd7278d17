"""Vault password policies: how generated passwords look, and the generator itself.

A password policy is HCL (or JSON) with a ``length`` and ``rule "charset"``
blocks, each a ``charset`` and an optional ``min-chars``::

    length = 24
    rule "charset" {
      charset   = "abcdefghijklmnopqrstuvwxyz"
      min-chars = 1
    }
    rule "charset" {
      charset   = "0123456789"
      min-chars = 2
    }

Generated passwords draw every character from the union of the charsets
with :mod:`secrets`, after first drawing each rule's ``min-chars`` from its
own charset, then shuffle; so every rule holds by construction. Policies are
stored (not secret) at ``core/password-policy/<name>`` and served by
``sys/policies/password/<name>`` (:mod:`kustos.server.routes.passwords`).
The database engine and KV rotation rules generate through them;
:data:`DEFAULT_POLICY` is Vault's default (20 characters from letters,
digits and ``-``, at least one of each).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any, Final

import hcl
import orjson

from kustos.errors import InvalidRequestError, NotFoundError, StorageError
from kustos.sensitive import Sensitive
from kustos.store.base import StorageBackend

__all__ = [
    "DEFAULT_POLICY",
    "MAX_LENGTH",
    "MIN_LENGTH",
    "PASSWORD_POLICY_PREFIX",
    "CharsetRule",
    "PasswordPolicies",
    "PasswordPolicy",
    "parse_password_policy",
    "validate_policy_name",
]

PASSWORD_POLICY_PREFIX: Final = "core/password-policy/"  # noqa: S105 - a storage prefix
MIN_LENGTH: Final = 4
MAX_LENGTH: Final = 100
"""Vault's bounds on ``length``."""
_MAX_TEXT: Final = 16 * 1024
_MAX_RULES: Final = 32
_MAX_CHARSET: Final = 1024
_NAME: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9_])?")
_random: Final = secrets.SystemRandom()


@dataclass(frozen=True)
class CharsetRule:
    """``rule "charset"``: at least ``min_chars`` characters from ``charset``."""

    charset: str
    min_chars: int = 0


@dataclass(frozen=True)
class PasswordPolicy:
    """A parsed password policy: the length and the charset rules."""

    length: int
    rules: tuple[CharsetRule, ...]

    @property
    def alphabet(self) -> str:
        """Every character any rule allows, each once, in first-seen order."""
        return "".join(dict.fromkeys("".join(rule.charset for rule in self.rules)))

    def generate(self) -> Sensitive[str]:
        """A new password that satisfies every rule (drawn with :mod:`secrets`)."""
        chars: list[str] = []
        for rule in self.rules:
            chars.extend(secrets.choice(rule.charset) for _ in range(rule.min_chars))
        alphabet = self.alphabet
        chars.extend(secrets.choice(alphabet) for _ in range(self.length - len(chars)))
        _random.shuffle(chars)
        return Sensitive("".join(chars))

    def satisfied_by(self, password: str) -> bool:
        """Whether ``password`` has the length and meets every rule (tests and checks)."""
        if len(password) != self.length or any(ch not in self.alphabet for ch in password):
            return False
        return all(
            sum(ch in rule.charset for ch in password) >= rule.min_chars for rule in self.rules
        )


DEFAULT_POLICY: Final = PasswordPolicy(
    length=20,
    rules=(
        CharsetRule("abcdefghijklmnopqrstuvwxyz", 1),
        CharsetRule("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1),
        CharsetRule("0123456789", 1),
        CharsetRule("-", 1),
    ),
)
"""Vault's default generator: 20 characters, at least one lower, upper, digit and ``-``."""


def validate_policy_name(name: str) -> str:
    """A policy name: 1-128 letters, digits, ``_``, ``-``, ``.``; raise naming the problem."""
    if not _NAME.fullmatch(name):
        raise InvalidRequestError(
            f"invalid password policy name {name[:40]!r}: 1-128 letters, digits, '_', '-' or '.', "
            "starting and ending with a letter, digit or '_'"
        )
    return name


def _document(text: str) -> dict[str, Any]:
    stripped = text.strip()
    try:
        if stripped.startswith("{"):
            doc = hcl.loads(stripped)  # JSON
        else:
            # inside a block, pyhcl keeps repeated `rule "charset"` blocks as a list
            doc = hcl.loads("__policy__ {\n" + text + "\n}\n").get("__policy__")
    except Exception as exc:  # pyhcl raises ValueError and its own lexer/parser errors
        raise InvalidRequestError(f"policy could not be parsed: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidRequestError("policy could not be parsed: expected length and rule blocks")
    return doc


def _rules(raw: object) -> list[dict[str, Any]]:
    """The ``charset`` bodies of ``rule "charset"`` blocks, whatever shape pyhcl gave them."""
    items = raw if isinstance(raw, list) else [raw]
    bodies: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"charset"}:
            raise InvalidRequestError('policy: only rule "charset" blocks are supported')
        body = item["charset"]
        for one in body if isinstance(body, list) else [body]:
            if not isinstance(one, dict):
                raise InvalidRequestError('policy: a rule "charset" block must have a body')
            bodies.append(one)
    return bodies


def parse_password_policy(text: str) -> PasswordPolicy:
    """Parse and check a policy; :class:`InvalidRequestError` names what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError('missing policy: HCL with length and rule "charset" blocks')
    if len(text) > _MAX_TEXT:
        raise InvalidRequestError(f"policy is longer than {_MAX_TEXT} characters")
    doc = _document(text)
    unknown = sorted(set(doc) - {"length", "rule"})
    if unknown:
        raise InvalidRequestError(f"policy: unknown setting(s) {', '.join(unknown)}")
    length = doc.get("length")
    if isinstance(length, bool) or not isinstance(length, int):
        raise InvalidRequestError("policy: length must be an integer")
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise InvalidRequestError(f"policy: length must be between {MIN_LENGTH} and {MAX_LENGTH}")
    if "rule" not in doc:
        raise InvalidRequestError('policy: at least one rule "charset" block is required')
    bodies = _rules(doc["rule"])
    if len(bodies) > _MAX_RULES:
        raise InvalidRequestError(f"policy: more than {_MAX_RULES} rules")
    rules: list[CharsetRule] = []
    for index, body in enumerate(bodies, 1):
        unknown = sorted(set(body) - {"charset", "min-chars"})
        if unknown:
            raise InvalidRequestError(
                f"policy: rule {index}: unknown setting(s) {', '.join(unknown)}"
            )
        charset = body.get("charset")
        if not isinstance(charset, str) or not charset:
            raise InvalidRequestError(f"policy: rule {index}: charset must be a non-empty string")
        if len(charset) > _MAX_CHARSET:
            raise InvalidRequestError(
                f"policy: rule {index}: charset is longer than {_MAX_CHARSET} characters"
            )
        if any(not ch.isprintable() or ch.isspace() for ch in charset):
            raise InvalidRequestError(
                f"policy: rule {index}: charset may hold only printable, non-space characters"
            )
        min_chars = body.get("min-chars", 0)
        if isinstance(min_chars, bool) or not isinstance(min_chars, int) or min_chars < 0:
            raise InvalidRequestError(f"policy: rule {index}: min-chars must be 0 or more")
        rules.append(CharsetRule("".join(dict.fromkeys(charset)), min_chars))
    if sum(rule.min_chars for rule in rules) > length:
        raise InvalidRequestError("policy: the rules' min-chars add up to more than length")
    return PasswordPolicy(length=length, rules=tuple(rules))


class PasswordPolicies:
    """Password policies in storage (``core/password-policy/<name>``, JSON with the HCL text)."""

    def __init__(self, *, storage: StorageBackend) -> None:
        self._storage = storage

    async def write(self, name: str, text: str) -> PasswordPolicy:
        policy = parse_password_policy(text)
        key = PASSWORD_POLICY_PREFIX + validate_policy_name(name)
        async with self._storage.transaction() as tx:
            await tx.put(key, orjson.dumps({"v": 1, "name": name, "policy": text}))
        return policy

    async def read_text(self, name: str) -> str | None:
        raw = await self._storage.get(PASSWORD_POLICY_PREFIX + validate_policy_name(name))
        if raw is None:
            return None
        try:
            text = orjson.loads(raw)["policy"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise StorageError("a stored password policy is malformed") from None
        if not isinstance(text, str):
            raise StorageError("a stored password policy is malformed")
        return text

    async def get(self, name: str) -> PasswordPolicy:
        """The policy ``name`` (``""``: :data:`DEFAULT_POLICY`); :class:`InvalidRequestError` if unknown."""
        if not name:
            return DEFAULT_POLICY
        text = await self.read_text(name)
        if text is None:
            raise InvalidRequestError(f"password policy {name!r} does not exist")
        return parse_password_policy(text)

    async def delete(self, name: str) -> None:
        key = PASSWORD_POLICY_PREFIX + validate_policy_name(name)
        async with self._storage.transaction() as tx:
            await tx.delete(key)

    async def names(self) -> list[str]:
        return [n for n in await self._storage.list(PASSWORD_POLICY_PREFIX) if not n.endswith("/")]

    async def generate(self, name: str) -> Sensitive[str]:
        """A password from policy ``name``; :class:`NotFoundError` if there is no such policy."""
        text = await self.read_text(name)
        if text is None:
            raise NotFoundError(f"password policy {name!r} does not exist")
        return parse_password_policy(text).generate()
