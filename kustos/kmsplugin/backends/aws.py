"""The ``aws`` backend: seeds wrapped by AWS KMS keys (``kustos.keys.providers.awskms``).

Keys are given as ids, ARNs or aliases, newest first. The key id the plugin
reports is ``aws:<key ARN>``; ``status`` resolves the first key again, so
pointing its alias at a new key is a rotation the API server notices at its
next ``Status`` call, without restarting the plugin. A seed wrapped under a
key that is no longer listed still unwraps: its key id names the ARN, and
AWS KMS checks that the ciphertext was made by that key.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from kustos.errors import ConfigError, KustosError
from kustos.keys import KeyProvider
from kustos.keys.providers.awskms import AwsKmsKeyProvider, kms_client
from kustos.kmsplugin.backends.base import BackendStatus
from kustos.kmsplugin.backends.keyed import KeyedBackend

__all__ = ["AwsBackend"]

_PREFIX = "aws:"


class AwsBackend(KeyedBackend):
    """A :class:`KeyedBackend` whose first key follows its alias, and that unwraps by ARN."""

    def __init__(
        self,
        keys: Sequence[str],
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        if not keys:
            raise ConfigError("the aws backend needs at least one AWS KMS key (--aws-key-id)")
        region = region or next((_region(k) for k in keys if _region(k)), None)
        self._client = client or kms_client(region=region, endpoint_url=endpoint_url)
        self._make_lock = threading.Lock()
        self._head = AwsKmsKeyProvider(keys[0], client=self._client)
        pinned: dict[str, KeyProvider] = {}
        for ref in keys:
            provider = AwsKmsKeyProvider(ref, client=self._client)
            pinned.setdefault(_PREFIX + provider.key_arn, self._pin(provider.key_arn))
        super().__init__("aws", list(pinned.items()))
        self._set_current(_PREFIX + self._head.key_arn, pinned[_PREFIX + self._head.key_arn])

    def _pin(self, arn: str) -> AwsKmsKeyProvider:
        return AwsKmsKeyProvider(arn, client=self._client)

    def status(self) -> BackendStatus:
        try:
            arn = self._head.refresh()
        except KustosError as exc:
            return BackendStatus(self.key_ids[0], f"aws backend unavailable: {exc}")
        key_id = _PREFIX + arn
        if key_id != self.key_ids[0]:
            self._set_current(key_id, self._provider(key_id) or self._pin(arn))
        return super().status()

    def _unknown(self, key_id: str) -> KeyProvider:
        if not key_id.startswith(_PREFIX + "arn:"):
            return super()._unknown(key_id)
        with self._make_lock:
            provider = self._provider(key_id)
            if provider is None:
                provider = self._pin(key_id[len(_PREFIX) :])
                with self._lock:
                    self._keys[key_id] = provider
        return provider


def _region(key: str) -> str | None:
    parts = key.split(":")
    return parts[3] if key.startswith("arn:") and len(parts) > 3 and parts[3] else None
