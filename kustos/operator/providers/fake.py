"""The ``fake`` provider: values written in the SecretStore itself, as in External Secrets.

``spec.provider.fake.data[]`` holds ``{key, value, version, valueMap}``
entries. It needs no backend, so it serves tests, demos and the benchmark.
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
    RemoteRef,
    extract_property,
    json_to_map,
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
        value = self._value(ref.key, ref.version)
        return Sensitive(
            extract_property(value, ref.property, key=ref.key) if ref.property else value
        )

    async def get_map(self, ref: RemoteRef) -> dict[str, Sensitive[bytes]]:
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

    async def validate(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def create(context: ProviderContext) -> Provider:
    """Factory registered as ``fake``."""
    return FakeProvider(entries=list(context.config.get("data") or []))
