"""Reading and writing the Kubernetes manifests sealing works on.

Input manifests arrive as YAML or JSON text (kubeseal accepts both, and so
does ``kustos seal``); this module turns them into plain dicts, checks that a
document is the kind we expect, and decodes a Secret into
:class:`SecretManifest` (``data`` base64-decoded, ``stringData`` merged over
it, values wrapped in :class:`~kustos.sensitive.Sensitive`). Output goes back
through :func:`dump_manifest` as JSON (kubeseal's default) or YAML.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from kustos.errors import InvalidRequestError
from kustos.sensitive import Sensitive

__all__ = [
    "LAST_APPLIED_ANNOTATIONS",
    "MAX_MANIFEST_DEPTH",
    "SERVER_SIDE_METADATA",
    "ManifestFormat",
    "SecretManifest",
    "describe",
    "dump_manifest",
    "dump_manifests",
    "load_manifest",
    "load_manifests",
    "parse_secret",
]

ManifestFormat = Literal["json", "yaml"]

MAX_MANIFEST_DEPTH: Final = 64
"""Deepest nesting of mappings and lists a manifest may have (Kubernetes objects nest a dozen)."""

LAST_APPLIED_ANNOTATIONS: Final = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "kubecfg.ksonnet.io/last-applied-configuration",
)
"""Annotations that hold a full copy of the object (plaintext values): always stripped."""

SERVER_SIDE_METADATA: Final = (
    "uid",
    "resourceVersion",
    "selfLink",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "ownerReferences",
)
"""Read-only metadata the API server adds; dropped before sealing."""


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 1 << 30  # keep each ciphertext on one line (one-line Git diffs)
    return yaml


def load_manifests(text: str | bytes, *, source: str = "input") -> list[dict[str, Any]]:
    """Every document in ``text`` (JSON, or YAML with ``---`` separators); a ``List`` is flattened."""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError:
            raise InvalidRequestError(f"{source}: manifest is not UTF-8 text") from None
    stripped = text.strip()
    if not stripped:
        raise InvalidRequestError(f"{source}: empty input, expected a manifest")
    docs: list[Any]
    if stripped.startswith(("{", "[")):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(
                f"{source}: invalid JSON: {exc.msg} at line {exc.lineno}"
            ) from None
        except RecursionError:
            raise InvalidRequestError(f"{source}: invalid JSON: nested too deeply") from None
        docs = parsed if isinstance(parsed, list) else [parsed]
    else:
        try:
            docs = [d for d in _yaml().load_all(stripped) if d is not None]
        except YAMLError as exc:
            raise InvalidRequestError(
                f"{source}: invalid YAML: {str(exc).splitlines()[0]}"
            ) from None
        except RecursionError:
            raise InvalidRequestError(f"{source}: invalid YAML: nested too deeply") from None
    for doc in docs:
        _check_structure(doc, source=source)
    out: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict):
            raise InvalidRequestError(
                f"{source}: expected a Kubernetes object (a mapping), got {type(doc).__name__}"
            )
        kind = doc.get("kind")
        if kind == "List" or (
            isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list)
        ):
            for item in doc.get("items") or []:
                if not isinstance(item, dict):
                    raise InvalidRequestError(f"{source}: List item is not a Kubernetes object")
                out.append(item)
        else:
            out.append(doc)
    if not out:
        raise InvalidRequestError(f"{source}: no manifest found")
    return out


def load_manifest(text: str | bytes, *, source: str = "input") -> dict[str, Any]:
    """Exactly one document; several are an error (as in kubeseal)."""
    docs = load_manifests(text, source=source)
    if len(docs) != 1:
        raise InvalidRequestError(
            f"{source}: expected one manifest, found {len(docs)} (multi-document input is not supported)"
        )
    return docs[0]


def _check_structure(doc: object, *, source: str) -> None:
    """Refuse YAML aliases to mappings and lists (a few lines of them expand to gigabytes once the
    document is copied or serialized: the "billion laughs"; manifests never need them) and nesting
    deeper than :data:`MAX_MANIFEST_DEPTH` (serializers and copies recurse)."""
    seen: set[int] = set()
    stack: list[tuple[object, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if id(node) in seen:
                raise InvalidRequestError(
                    f"{source}: YAML anchors and aliases are not supported in manifests"
                )
            if depth > MAX_MANIFEST_DEPTH:
                raise InvalidRequestError(
                    f"{source}: the manifest nests deeper than {MAX_MANIFEST_DEPTH} levels"
                )
            seen.add(id(node))
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)


def describe(doc: Mapping[str, Any]) -> str:
    """``Kind namespace/name`` for error messages."""
    meta = doc.get("metadata") or {}
    if not isinstance(meta, Mapping):
        meta = {}
    kind = _short(doc.get("kind")) or "object"
    ns, name = _short(meta.get("namespace")), _short(meta.get("name")) or "<unnamed>"
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


def _short(value: object) -> str:
    """A name for messages: strings as they are (cut at 253 characters), anything else as its type."""
    if value is None or value == "":
        return ""
    return value[:253] if isinstance(value, str) else f"<{type(value).__name__}>"


def dump_manifest(doc: Mapping[str, Any], fmt: ManifestFormat) -> str:
    """One manifest as pretty JSON (2-space indent) or block YAML, ending with a newline."""
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    buffer = io.StringIO()
    _yaml().dump(json.loads(json.dumps(doc)), buffer)
    return buffer.getvalue()


def dump_manifests(docs: list[dict[str, Any]], fmt: ManifestFormat) -> str:
    """Several manifests: a ``v1 List`` in JSON, ``---``-separated documents in YAML."""
    if len(docs) == 1:
        return dump_manifest(docs[0], fmt)
    if fmt == "json":
        return dump_manifest({"apiVersion": "v1", "kind": "List", "items": docs}, "json")
    return "---\n".join(dump_manifest(d, "yaml") for d in docs)


@dataclass(frozen=True)
class SecretManifest:
    """A ``v1 Secret`` as sealing needs it: metadata kept as given, values decoded."""

    metadata: dict[str, Any]
    data: dict[str, Sensitive[bytes]] = field(repr=False)
    type: str | None = None
    immutable: bool | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or "")

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "")

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.metadata.get("annotations") or {})


def parse_secret(doc: Mapping[str, Any], *, source: str = "input") -> SecretManifest:
    """Check that ``doc`` is a ``v1 Secret`` and decode it.

    ``data`` values are base64-decoded (an invalid one is an error naming the
    key); ``stringData`` values are UTF-8 encoded and win over ``data`` for
    the same key, as the API server does.
    """
    kind, api = doc.get("kind"), doc.get("apiVersion")
    if kind != "Secret" or api not in ("v1", None):
        raise InvalidRequestError(
            f"{source}: expected a v1 Secret, got {describe(doc)} (apiVersion {api!r})"
        )
    metadata = doc.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidRequestError(f"{source}: {describe(doc)}: metadata must be a mapping")
    data: dict[str, Sensitive[bytes]] = {}
    raw_data = doc.get("data") or {}
    string_data = doc.get("stringData") or {}
    if not isinstance(raw_data, dict) or not isinstance(string_data, dict):
        raise InvalidRequestError(
            f"{source}: {describe(doc)}: data and stringData must be mappings"
        )
    for key, value in raw_data.items():
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise InvalidRequestError(
                f"{source}: {describe(doc)}: data key {key!r} must be a base64 string"
            )
        try:
            data[str(key)] = Sensitive(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidRequestError(
                f"{source}: {describe(doc)}: data key {key!r} is not valid base64"
            ) from None
    for key, value in string_data.items():
        if value is None:
            value = ""
        if isinstance(value, bool | int | float):
            raise InvalidRequestError(
                f"{source}: {describe(doc)}: stringData key {key!r} must be a string (quote it)"
            )
        data[str(key)] = Sensitive(str(value).encode())
    immutable = doc.get("immutable")
    return SecretManifest(
        metadata=json.loads(json.dumps(metadata, default=str)),
        data=data,
        type=doc.get("type"),
        immutable=bool(immutable) if immutable is not None else None,
    )


def b64(data: bytes) -> str:
    """Standard base64 with padding, as Kubernetes and Sealed Secrets write it."""
    return base64.b64encode(data).decode()


def unb64(text: str, *, what: str) -> bytes:
    """Strict standard base64 decode; ``what`` names the value in the error."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidRequestError(f"{what} is not valid base64") from None
