"""``--template`` files: the Kustos template language, or Vault agent templates translated to it.

A template is compiled once (:class:`TemplateRenderer`). A Go template
(Vault agent, consul-template: ``{{ with secret "secret/data/x" }}...``) is
translated first (:mod:`kustos.gitops.gotemplates`); anything else is
Kustos's sandboxed Jinja (:mod:`kustos.gitops.rendering`, what the operator
renders ExternalSecret templates with).

What a template sees:

* ``secret(path)`` — a secret in Vault's response shape
  (``.Data.data.<key>``, ``.Data.metadata.version``); ``path`` as Vault
  names it (``secret/data/app/db``) or as the CLI does (``secret/app/db``);
* each ``--secret NAME`` as a variable ``NAME`` (when it is an identifier)
  and in ``secrets["NAME"]``: the secret's data, or its field.

Rendering is pure: the caller's ``lookup`` answers ``secret(path)`` from what
it has read, raising :class:`SecretNeeded` for a path not read yet (the
agent reads it and renders again) or :class:`SecretUnavailable` for one that
cannot be read (the file is then removed). The paths a render used are its
dependencies: a change to any of them renders it again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError

from kustos.agent.specs import TemplateSpec
from kustos.errors import InvalidRequestError
from kustos.gitops.gotemplates import HELPERS, is_go_template, translate
from kustos.gitops.rendering import make_environment, safe_message

__all__ = ["Rendered", "SecretNeeded", "SecretUnavailable", "TemplateRenderer", "vault_shape"]


class SecretNeeded(Exception):  # noqa: N818 - control flow, not an error
    """A template asked for a secret that has not been read yet."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class SecretUnavailable(Exception):  # noqa: N818 - carries why a secret cannot be used
    """A template asked for a secret that does not exist or may not be read."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Rendered:
    content: bytes
    paths: frozenset[str]
    """The ``secret(...)`` paths the render read, as the template spelled them."""


def vault_shape(data: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A KV v2 secret as Vault's API (and so consul-template) presents it."""
    return {
        "Data": {"data": dict(data), "metadata": dict(metadata)},
        "LeaseID": "",
        "LeaseDuration": 0,
        "Renewable": False,
        "Warnings": None,
    }


class TemplateRenderer:
    """One ``--template``, compiled."""

    def __init__(self, spec: TemplateSpec) -> None:
        self.spec = spec
        where = f"--template {spec.name} ({spec.file})"
        self.go = is_go_template(spec.source)
        source = translate(spec.source, where=where) if self.go else spec.source
        env = make_environment(lenient_conditions=True)
        env.globals.update(HELPERS)
        try:
            self._template = env.from_string(source)
        except TemplateError as exc:
            raise InvalidRequestError(
                f"{where}: {type(exc).__name__}: {safe_message(exc)}"
            ) from None
        self._where = where

    def render(
        self, *, lookup: Callable[[str], dict[str, Any]], named: Mapping[str, Any]
    ) -> Rendered:
        """Render with ``lookup`` answering ``secret(path)``; :class:`SecretNeeded` propagates."""
        used: set[str] = set()

        def secret(path: object) -> dict[str, Any]:
            text = str(path).strip().strip("/")
            used.add(text)
            return lookup(text)

        context: dict[str, Any] = {"secret": secret, "secrets": dict(named)}
        context.update({k: v for k, v in named.items() if k.isidentifier()})
        try:
            text = self._template.render(context)
        except (SecretNeeded, SecretUnavailable):
            raise
        except TemplateError as exc:
            raise InvalidRequestError(
                f"{self._where}: {type(exc).__name__}: {safe_message(exc)}"
            ) from None
        except (
            Exception
        ) as exc:  # a helper failed (bad base64, missing index): name it, not the value
            raise InvalidRequestError(
                f"{self._where}: rendering failed in a function ({type(exc).__name__})"
            ) from None
        return Rendered(content=text.encode("utf-8"), paths=frozenset(used))
