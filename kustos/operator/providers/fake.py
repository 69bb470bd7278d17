"""The ``fake`` provider: values written in the SecretStore itself, as in External Secrets.

``spec.provider.fake.data[]`` holds ``{key, value, version, valueMap}``
entries. It needs no backend, so it serves tests, demos and the benchmark.
PushSecrets write into the provider's memory only (as in External Secrets):
what they push lives as long as the provider and reads back like an entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kustos.errors import NotFoundError
from kustos.operator.providers.base import (
    FindSpec,
    Provider,
    ProviderContext,
    PushRef,
    RemoteRef,
    extract_property,
    json_to_map,
    refuse_metadata,
)
from kustos.sensitive import Sensitive

__all__ = ["FakeProvider", "create"]


class FakeProvider:
    """Serves the entries of ``spec.provider.fake.data``."""

    def __init__(self, *, entries: list[Mapping[str, Any]]) -> None:
        self._entries = entries

    def _value(self, key: str, version: str) -> bytes:
        for entry in self._entries:
            if entry.get("key") == key and (entry.get("version") or "") == version:
                if "valueMap" in entry and "value" not in entry:
                    return json.dumps(entry["valueMap"], separators=(",", ":")).encode()
                return str(entry.get("value", "")).encode()
        raise NotFoundError(
            f"fake store has no key {key!r}" + (f" at version {version!r}" if version else "")
        )

    async def get(self, ref: RemoteRef) -> Sensitive[bytes]:
        refuse_metadata(ref, "fake")
        value = self._value(ref.key, ref.version)
        return Sensitive(
            extract_property(value, ref.property, key=ref.key) if ref.property else value
        )

    async def get_map(self, ref: RemoteRef) -> dict[str, Sensitive[bytes]]:
        refuse_metadata(ref, "fake")
        value = self._value(ref.key, ref.version)
        if ref.property:
            value = extract_property(value, ref.property, key=ref.key)
        return json_to_map(value, key=ref.key)

    async def find(self, spec: FindSpec) -> dict[str, Sensitive[bytes]]:
        return {
            entry["key"]: Sensitive(str(entry.get("value", "")).encode())
            for entry in self._entries
            if not entry.get("version") and spec.matches_name(entry.get("key", ""))
        }

    async def push(self, ref: PushRef, value: Sensitive[bytes]) -> None:
        text = value.reveal().decode("utf-8", "replace")
        current = next((e for e in self._entries if e.get("key") == ref.remote_key), None)
        if ref.property:
            members = json.loads(str(current.get("value") or "{}")) if current else {}
            members[ref.property] = text
            text = json.dumps(members, separators=(",", ":"), sort_keys=True)
        self._entries = [e for e in self._entries if e.get("key") != ref.remote_key]
        self._entries.append({"key": ref.remote_key, "value": text})

    async def exists(self, ref: PushRef) -> bool:
        current = next((e for e in self._entries if e.get("key") == ref.remote_key), None)
        if current is None or not ref.property:
            return current is not None
        return ref.property in json.loads(str(current.get("value") or "{}"))

    async def delete(self, ref: PushRef) -> None:
        self._entries = [e for e in self._entries if e.get("key") != ref.remote_key]

    async def validate(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def create(context: ProviderContext) -> Provider:
    """Factory registered as ``fake``."""
    return FakeProvider(entries=list(context.config.get("data") or []))
