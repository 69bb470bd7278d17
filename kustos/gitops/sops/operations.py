"""What the ``kustos encrypt|decrypt|edit|set|unset|rotate|updatekeys`` commands do, as functions.

Everything works on bytes in and bytes out, so the CLI, the helm wrapper and
the operator share it and nothing here writes plaintext anywhere.

- :func:`encrypt_file`: new data key, wrapped for the recipients, every leaf
  encrypted, MAC computed.
- :func:`decrypt_file`: data key recovered (one key-source call per file),
  every leaf decrypted, MAC verified unless ``ignore_mac``. The result keeps
  the data key and the cipher with its IV stash.
- :func:`reencrypt`: a changed plaintext back into a file under the same data
  key and recipients; unchanged values keep byte-identical ciphertext.
- :func:`rotate`: a new data key for the same (or new) recipients.
- :func:`update_keys`: re-wrap the same data key for a new set of recipients.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from kustos.crypto.sops import ValueCipher, generate_data_key
from kustos.errors import ConfigError, DecryptionError

from .keysources import KeyServices, recover_data_key, wrap_data_key
from .models import EncryptionRules, MasterKey, Metadata, metadata_from_dict, metadata_to_dict
from .stores import Store
from .trees import LeafDecryptor, LeafEncryptor

__all__ = [
    "DecryptedFile",
    "decrypt_file",
    "encrypt_file",
    "extract",
    "parse_tree_path",
    "reencrypt",
    "removed_recipients",
    "rotate",
    "set_value",
    "unset_value",
    "update_keys",
]


@dataclass(frozen=True)
class DecryptedFile:
    """A decrypted file: plaintext bytes, the values as a tree, and what re-encrypting needs."""

    plaintext: bytes
    tree: Any
    metadata: Metadata
    cipher: ValueCipher
    data_key: bytes

    def __repr__(self) -> str:
        return f"DecryptedFile(<{len(self.plaintext)} bytes redacted>, metadata={self.metadata!r})"


def _finish(
    store: Store,
    plaintext: bytes,
    *,
    metadata: Metadata,
    cipher: ValueCipher,
    services: KeyServices,
) -> bytes:
    handler = LeafEncryptor(cipher=cipher, rules=metadata.rules)
    emit = store.encrypt(plaintext, handler)
    lastmodified = services.timestamp()
    mac = cipher.encrypt(handler.mac.hexdigest().encode(), aad=lastmodified, value_type="str")
    final = replace(metadata, lastmodified=lastmodified, mac=mac)
    return emit(metadata_to_dict(final))


def encrypt_file(
    plaintext: bytes,
    *,
    store: Store,
    key_groups: Sequence[Sequence[MasterKey]],
    services: KeyServices,
    shamir_threshold: int = 0,
    rules: EncryptionRules | None = None,
) -> bytes:
    """Encrypt a plaintext file for ``key_groups`` (a fresh data key)."""
    if store.looks_encrypted(plaintext):
        raise ConfigError("the file is already encrypted with sops metadata")
    data_key = generate_data_key()
    threshold = shamir_threshold if len(key_groups) > 1 else 0
    groups = wrap_data_key(key_groups, data_key, threshold=threshold, services=services)
    metadata = Metadata(
        key_groups=groups,
        rules=(rules or EncryptionRules()).normalized(),
        shamir_threshold=(threshold or len(groups)) if len(groups) > 1 else 0,
    )
    return _finish(
        store, plaintext, metadata=metadata, cipher=ValueCipher(data_key), services=services
    )


def decrypt_file(
    data: bytes,
    *,
    store: Store,
    services: KeyServices,
    ignore_mac: bool = False,
) -> DecryptedFile:
    """Decrypt and verify a sops file. :class:`DecryptionError` names what failed."""
    loaded = store.load_encrypted(data)
    metadata = metadata_from_dict(loaded.metadata)
    data_key = recover_data_key(
        metadata.key_groups, threshold=metadata.shamir_threshold, services=services
    )
    cipher = ValueCipher(data_key)
    handler = LeafDecryptor(cipher=cipher, rules=metadata.rules)
    decrypted = loaded.decrypt(handler)
    if not ignore_mac:
        if not metadata.mac:
            raise DecryptionError("MAC mismatch: the file has no MAC")
        try:
            stored, _ = cipher.decrypt(metadata.mac, aad=metadata.lastmodified)
        except DecryptionError:
            raise DecryptionError(
                "cannot decrypt the MAC: it or its lastmodified timestamp was tampered with"
            ) from None
        if not hmac.compare_digest(stored, handler.mac.hexdigest().encode()):
            raise DecryptionError(
                "MAC mismatch: the file's values were changed outside sops/kustos (use --ignore-mac to decrypt anyway)"
            )
    return DecryptedFile(
        plaintext=decrypted.plaintext,
        tree=decrypted.tree,
        metadata=metadata,
        cipher=cipher,
        data_key=data_key,
    )


def reencrypt(
    plaintext: bytes, *, store: Store, previous: DecryptedFile, services: KeyServices
) -> bytes:
    """Encrypt an edited plaintext under the same data key; unchanged values keep their ciphertext."""
    return _finish(
        store, plaintext, metadata=previous.metadata, cipher=previous.cipher, services=services
    )


def rotate(
    previous: DecryptedFile,
    *,
    store: Store,
    services: KeyServices,
    key_groups: Sequence[Sequence[MasterKey]] | None = None,
    shamir_threshold: int | None = None,
) -> bytes:
    """A new data key (every value re-encrypted with fresh IVs), wrapped for the recipients."""
    groups_in = (
        key_groups
        if key_groups is not None
        else [[replace(k, enc="") for k in g] for g in previous.metadata.key_groups]
    )
    threshold = previous.metadata.shamir_threshold if shamir_threshold is None else shamir_threshold
    data_key = generate_data_key()
    groups = wrap_data_key(
        groups_in, data_key, threshold=threshold if len(groups_in) > 1 else 0, services=services
    )
    metadata = replace(
        previous.metadata,
        key_groups=groups,
        shamir_threshold=(threshold or len(groups)) if len(groups) > 1 else 0,
    )
    return _finish(
        store,
        previous.plaintext,
        metadata=metadata,
        cipher=ValueCipher(data_key),
        services=services,
    )


def removed_recipients(
    previous: DecryptedFile, key_groups: Sequence[Sequence[MasterKey]]
) -> list[str]:
    """Recipients of ``previous`` that ``key_groups`` no longer contains."""
    new = {k.identifier() for g in key_groups for k in g}
    return [k.identifier() for k in previous.metadata.all_keys() if k.identifier() not in new]


def update_keys(
    previous: DecryptedFile,
    *,
    store: Store,
    services: KeyServices,
    key_groups: Sequence[Sequence[MasterKey]],
    shamir_threshold: int = 0,
) -> bytes:
    """Re-wrap the *same* data key for ``key_groups``; values keep their ciphertext."""
    threshold = shamir_threshold if len(key_groups) > 1 else 0
    groups = wrap_data_key(key_groups, previous.data_key, threshold=threshold, services=services)
    metadata = replace(
        previous.metadata,
        key_groups=groups,
        shamir_threshold=(threshold or len(groups)) if len(groups) > 1 else 0,
    )
    return _finish(
        store, previous.plaintext, metadata=metadata, cipher=previous.cipher, services=services
    )


_COMPONENT = re.compile(r'\[(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|(-?\d+))\]')


def parse_tree_path(text: str) -> list[str | int]:
    """``["a"]["b"][0]`` (sops's ``--extract``/``set`` syntax) as a list of keys and indices."""
    path: list[str | int] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _COMPONENT.match(text, pos)
        if match is None:
            raise ConfigError(
                f'invalid tree path {text!r}: expected components like ["key"] or [0]'
            )
        if match.group(3) is not None:
            path.append(int(match.group(3)))
        else:
            path.append(
                json.loads(f'"{match.group(1)}"') if match.group(1) is not None else match.group(2)
            )
        pos = match.end()
    if not path:
        raise ConfigError("empty tree path")
    return path


def extract(tree: Any, path: Sequence[str | int]) -> Any:
    """The value at ``path``; :class:`ConfigError` naming the missing component."""
    current = tree
    for component in path:
        try:
            current = current[component]
        except (KeyError, IndexError, TypeError):
            raise ConfigError(f"component [{json.dumps(component)}] not found") from None
    return current


def set_value(tree: Any, path: Sequence[str | int], value: Any) -> Any:
    """``tree`` with ``value`` at ``path`` (maps and list slots created as needed)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = list(tree) if isinstance(tree, list) else []
        if head < len(items):
            items[head] = set_value(items[head], rest, value)
        else:
            items.append(set_value(None, rest, value))
        return items
    mapping = dict(tree) if isinstance(tree, dict) else {}
    mapping[head] = set_value(mapping.get(head), rest, value)
    return mapping


def unset_value(tree: Any, path: Sequence[str | int]) -> Any:
    """``tree`` without the value at ``path``; :class:`ConfigError` if it is not there."""
    head, rest = path[0], path[1:]
    try:
        if rest:
            copy = list(tree) if isinstance(tree, list) else dict(tree)
            copy[head] = unset_value(tree[head], rest)  # type: ignore[index]
            return copy
        if isinstance(tree, list) and isinstance(head, int):
            return (
                [v for i, v in enumerate(tree) if i != head] if head < len(tree) else _missing(head)
            )
        if isinstance(tree, dict) and head in tree:
            return {k: v for k, v in tree.items() if k != head}
    except (KeyError, IndexError, TypeError):
        pass
    return _missing(head)


def _missing(component: str | int) -> Any:
    raise ConfigError(f"component [{json.dumps(component)}] not found")
