"""YAML files, multi-document, edited in place so comments, order and layout survive.

Instead of loading and re-dumping the document (slow, and it reflows the
file), the store parses it with libyaml's composer (PyYAML's C parser) to
get every scalar with its exact position, walks the nodes in sops order, and
splices each value's replacement (``ENC[...]`` or the plaintext) into the
original text. Everything else — comments, key order, quoting of keys,
indentation, document markers — stays byte for byte. The ``sops`` block is
appended to (or cut from) every document, in sops's own layout (4-space
indent).

Scalars are typed with YAML 1.2 core-schema rules, as sops's yaml.v3 does
(``yes``/``on`` are strings, not booleans). Comments stay in clear text when
Kustos encrypts (sops 3 encrypts them; sops 1 did not); ``#ENC[...]`` comments
that sops 3 wrote are decrypted (their associated data is the path of the
mapping they stand in, which the decryption finds by trying each). Aliases (``*name``) are rejected: a value reachable by
two paths has no single associated data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

import yaml
from yaml._yaml import CParser
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kustos.crypto.sops import format_float, is_encrypted_value
from kustos.errors import ConfigError, DecryptionError

from ..trees import LeafDecryptor, LeafEncryptor, aad_for, path_display
from .base import Decrypted, Emitter

__all__ = ["YamlStore", "dump_block", "yaml_scalar"]

_STR: Final = "tag:yaml.org,2002:str"
_INT: Final = "tag:yaml.org,2002:int"
_FLOAT: Final = "tag:yaml.org,2002:float"
_BOOL: Final = "tag:yaml.org,2002:bool"
_NULL: Final = "tag:yaml.org,2002:null"
_PLAIN: Final = "!kustos/plain"


class _CoreResolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core schema, as yaml.v3 resolves plain scalars."""


_CoreResolver.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CoreResolver.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_CoreResolver.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
_CoreResolver.add_implicit_resolver(
    _NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


class _Loader(CParser, yaml.constructor.SafeConstructor, _CoreResolver):
    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        yaml.constructor.SafeConstructor.__init__(self)
        _CoreResolver.__init__(self)

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        # Typing of plain scalars is deferred to _scalar_value (only where a value is used):
        # calling the regex resolver for every scalar during composition is the slow part.
        if kind is ScalarNode and implicit[0]:
            return _PLAIN
        return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]


def _compose_all(text: str) -> list[Node | None]:
    loader = _Loader(text)
    docs: list[Node | None] = []
    try:
        while loader.check_node():
            docs.append(loader.get_node())
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return docs or [None]


def _resolve_plain(value: str) -> str:
    for tag, regexp in _CoreResolver.yaml_implicit_resolvers.get(value[:1], []):
        if regexp.match(value):
            return str(tag)
    return _STR


def _scalar_value(node: ScalarNode) -> Any:
    tag, value = node.tag, node.value
    if tag == _PLAIN:
        if value.startswith("ENC[AES256_GCM,"):
            return value
        tag = _resolve_plain(value)
    if tag == _BOOL:
        return value.lower() == "true"
    if tag == _INT:
        if value.startswith(("0o", "0x")):
            return int(value, 0)
        return int(value, 10)
    if tag == _FLOAT:
        lowered = value.lower()
        if lowered.endswith(".inf"):
            return float("-inf") if lowered.startswith("-") else float("inf")
        if lowered == ".nan":
            return float("nan")
        return float(value)
    if tag == _NULL:
        return None
    return value


def _to_python(node: Node) -> Any:
    if isinstance(node, MappingNode):
        return {str(_to_python(k)): _to_python(v) for k, v in node.value}
    if isinstance(node, SequenceNode):
        return [_to_python(v) for v in node.value]
    if not isinstance(node, ScalarNode):
        raise ConfigError("unexpected YAML node")
    return _scalar_value(node)


_PLAIN_SAFE: Final = re.compile(r"^[A-Za-z0-9_/$][-A-Za-z0-9_./@$+ =:]*$")
_YAML11_WORDS: Final = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def _plain_ok(text: str) -> bool:
    return (
        bool(_PLAIN_SAFE.match(text))
        and not text.endswith((" ", ":"))
        and ": " not in text
        and text.lower() not in _YAML11_WORDS
        and _resolves_to_str(text)
    )


def _resolves_to_str(text: str) -> bool:
    for _tag, regexp in _CoreResolver.yaml_implicit_resolvers.get(text[:1], []):
        if regexp.match(text):
            return False
    return True


def yaml_scalar(value: Any, *, flow: bool, indent: int) -> str:
    """One value as YAML scalar text; multi-line strings as literal blocks outside flow context."""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = format_float(value)
        if text in ("+Inf", "-Inf", "NaN"):
            return {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}[text]
        return text  # as sops (Go) prints it: 2.0 becomes 2
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    text = str(value)
    if not flow and "\n" in text and _literal_ok(text):
        body = text[:-1] if text.endswith("\n") else text
        chomp = (
            ""
            if text.endswith("\n") and not text.endswith("\n\n")
            else ("-" if not text.endswith("\n") else "+")
        )
        if chomp == "+":
            body = text.rstrip("\n")
            lines = body.split("\n") + [""] * (len(text) - len(body) - 1)
        else:
            lines = body.split("\n")
        pad = " " * indent
        return "|" + chomp + "\n" + "\n".join(pad + line if line else "" for line in lines) + "\n"
    if _plain_ok(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _literal_ok(text: str) -> bool:
    if "\r" in text or text.startswith((" ", "\t", "\n")):
        return False
    return all(c == "\n" or c == "\t" or c.isprintable() for c in text)


def dump_block(data: Mapping[str, Any], *, indent: int = 0, literal_offset: int = 4) -> str:
    """A small emitter for the ``sops`` block in sops's layout (4 spaces, ``- `` lists, ``|-`` blocks)."""
    lines: list[str] = []
    pad = " " * indent
    for key, value in data.items():
        if isinstance(value, Mapping):
            lines.append(f"{pad}{key}:")
            lines.append(dump_block(value, indent=indent + 4).rstrip("\n"))
        elif isinstance(value, list):
            lines.append(f"{pad}{key}:")
            for item in value:
                if isinstance(item, Mapping):
                    inner = dump_block(item, indent=indent + 6, literal_offset=2).rstrip("\n")
                    first = inner[indent + 6 :]
                    lines.append(f"{pad}    - {first}")
                else:
                    lines.append(f"{pad}    - {yaml_scalar(item, flow=False, indent=indent + 8)}")
        elif isinstance(value, str) and ("\n" in value or re.match(r"^\d{4}-\d\d-\d\d", value)):
            if "\n" in value:
                literal = yaml_scalar(value, flow=False, indent=indent + literal_offset)
                lines.append(f"{pad}{key}: " + literal.rstrip("\n"))
            else:
                lines.append(f'{pad}{key}: "{value}"')
        elif is_encrypted_value(value):
            lines.append(f"{pad}{key}: {value}")
        else:
            lines.append(f"{pad}{key}: {yaml_scalar(value, flow=False, indent=indent + 4)}")
    return "\n".join(lines) + "\n"


class _Splicer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.edits: list[tuple[int, int, str]] = []

    def replace(self, node: Node, replacement: str) -> None:
        start, end = node.start_mark.index, node.end_mark.index
        span = self.text[start:end]
        stripped = span.rstrip(" \t\n")
        tail = span[len(stripped) :] if "\n" in span[len(stripped) :] else ""
        if replacement.endswith("\n"):
            if tail:
                tail = tail[tail.index("\n") + 1 :]
            else:
                replacement = replacement[:-1]
        self.edits.append((start, end, replacement + tail))

    def apply(self) -> str:
        out: list[str] = []
        pos = 0
        for start, end, replacement in sorted(self.edits, key=lambda e: e[0]):
            out.append(self.text[pos:start])
            out.append(replacement)
            pos = end
        out.append(self.text[pos:])
        return "".join(out)


def _walk(
    node: Node,
    path: tuple[str, ...],
    handler: LeafEncryptor | LeafDecryptor,
    splicer: _Splicer,
    seen: set[int],
    *,
    flow: bool,
    indent: int,
    top: bool = False,
) -> Any:
    if id(node) in seen:
        raise ConfigError(f"YAML aliases are not supported (at {path_display(path)})")
    seen.add(id(node))
    if isinstance(node, MappingNode):
        inner_flow = flow or bool(node.flow_style)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise ConfigError(f"only string keys are supported (at {path_display(path)})")
            key = key_node.value
            if top and key == "sops":
                continue
            out[key] = _walk(
                value_node,
                (*path, key),
                handler,
                splicer,
                seen,
                flow=inner_flow,
                indent=key_node.start_mark.column + 2,
            )
        return out
    if isinstance(node, SequenceNode):
        inner_flow = flow or bool(node.flow_style)
        return [
            _walk(
                item, path, handler, splicer, seen, flow=inner_flow, indent=item.start_mark.column
            )
            for item in node.value
        ]
    if not isinstance(node, ScalarNode):
        raise ConfigError(f"unexpected YAML node at {path_display(path)}")
    value = _scalar_value(node)
    result = handler.leaf(value, path)
    if isinstance(handler, LeafEncryptor):
        if isinstance(result, str) and result is not value and is_encrypted_value(result):
            splicer.replace(node, json.dumps(result) if flow else result)
    elif is_encrypted_value(value):
        splicer.replace(node, yaml_scalar(result, flow=flow, indent=indent))
    return result


def _top_mapping(doc: Node | None, index: int) -> MappingNode | None:
    if doc is None:
        return None
    if not isinstance(doc, MappingNode):
        raise ConfigError(f"YAML document {index + 1} is not a mapping at the top level")
    return doc


_ENC_COMMENT: Final = re.compile(r"(?m)^([ \t]*)#(ENC\[AES256_GCM,[^\]\n]*,type:comment\])[ \t]*$")


def _mapping_paths(value: Any, path: tuple[str, ...], out: dict[tuple[str, ...], None]) -> None:
    if isinstance(value, dict):
        out[path] = None
        for key, item in value.items():
            _mapping_paths(item, (*path, str(key)), out)
    elif isinstance(value, list):
        out[path] = None
        for item in value:
            _mapping_paths(item, path, out)


def _open_comments(text: str, splicer: _Splicer, handler: LeafDecryptor, trees: list[Any]) -> None:
    """Decrypt the ``#ENC[...]`` comments sops 3 wrote, in place (outside the cut ``sops`` blocks)."""
    cut = [(start, end) for start, end, replacement in splicer.edits if replacement == ""]
    candidates: dict[tuple[str, ...], None] = {(): None}
    for tree in trees:
        _mapping_paths(tree, (), candidates)
    for match in _ENC_COMMENT.finditer(text):
        if any(start <= match.start() < end for start, end in cut):
            continue
        for path in candidates:
            try:
                data, value_type = handler.cipher.decrypt(match.group(2), aad=aad_for(path))
            except DecryptionError:
                continue
            if value_type == "comment":
                splicer.edits.append((match.start(2) - 1, match.end(2), "#" + data.decode()))
                break
        else:
            raise DecryptionError(
                f"could not decrypt the comment on line {text.count(chr(10), 0, match.start()) + 1}"
            )


class _EncryptedYaml:
    def __init__(self, text: str, docs: list[Node | None], metadata: Mapping[str, Any]) -> None:
        self._text = text
        self._docs = docs
        self.metadata = metadata

    def decrypt(self, handler: LeafDecryptor) -> Decrypted:
        splicer = _Splicer(self._text)
        trees: list[Any] = []
        seen: set[int] = set()
        for index, doc in enumerate(self._docs):
            top = _top_mapping(doc, index)
            if top is None:
                trees.append(None)
                continue
            trees.append(_walk(top, (), handler, splicer, seen, flow=False, indent=0, top=True))
            for key_node, value_node in top.value:
                if isinstance(key_node, ScalarNode) and key_node.value == "sops":
                    start = self._text.rfind("\n", 0, key_node.start_mark.index) + 1
                    end = value_node.end_mark.index
                    if end < len(self._text) and self._text[end - 1 : end] != "\n":
                        newline = self._text.find("\n", end)
                        end = len(self._text) if newline < 0 else newline + 1
                    splicer.edits.append((start, end, ""))
        _open_comments(self._text, splicer, handler, trees)
        tree = trees[0] if len(trees) == 1 else trees
        return Decrypted(plaintext=splicer.apply().encode(), tree=tree)


class YamlStore:
    """The YAML format (``.yaml``/``.yml``), multi-document."""

    name = "yaml"

    def looks_encrypted(self, data: bytes) -> bool:
        return re.search(rb"(?m)^sops:\s*$", data) is not None and b"mac:" in data

    def load_encrypted(self, data: bytes) -> _EncryptedYaml:
        text = _decode(data)
        docs = _compose_all(text)
        first = _top_mapping(docs[0], 0)
        sops_node = None
        if first is not None:
            for key_node, value_node in first.value:
                if isinstance(key_node, ScalarNode) and key_node.value == "sops":
                    sops_node = value_node
        if sops_node is None:
            raise DecryptionError("sops metadata not found: the file is not sops-encrypted")
        metadata = _to_python(sops_node)
        if not isinstance(metadata, dict):
            raise DecryptionError("sops metadata is not a mapping")
        return _EncryptedYaml(text, docs, metadata)

    def encrypt(self, plaintext: bytes, handler: LeafEncryptor) -> Emitter:
        text = _decode(plaintext)
        docs = _compose_all(text)
        splicer = _Splicer(text)
        seen: set[int] = set()
        anchors: list[int] = []
        for index, doc in enumerate(docs):
            top = _top_mapping(doc, index)
            if top is None:
                if len(docs) > 1 or text.strip():
                    raise ConfigError(f"YAML document {index + 1} is empty: nothing to encrypt")
                anchors.append(len(text))
                continue
            if top.flow_style:
                raise ConfigError(
                    "a flow-style top-level mapping ({...}) is not supported; use block style"
                )
            for key_node, _ in top.value:
                if isinstance(key_node, ScalarNode) and key_node.value == "sops":
                    raise ConfigError(
                        "the file already has a top-level 'sops' key: is it already encrypted?"
                    )
            _walk(top, (), handler, splicer, seen, flow=False, indent=0)
            anchors.append(top.end_mark.index)

        def emit(block: Mapping[str, Any]) -> bytes:
            sops_text = "sops:\n" + dump_block(block, indent=4)
            for anchor in anchors:
                prefix = splicer.text[:anchor]
                line_start = prefix.rfind("\n") + 1
                if prefix[line_start:].strip():
                    splicer.edits.append((anchor, anchor, "\n" + sops_text))
                else:
                    splicer.edits.append((anchor, anchor, sops_text))
            return splicer.apply().encode()

        return emit

    def load_plain(self, plaintext: bytes) -> Any:
        docs = _compose_all(_decode(plaintext))
        trees = [None if d is None else _to_python(d) for d in docs]
        return trees[0] if len(trees) == 1 else trees

    def emit_plain(self, tree: Any) -> bytes:
        return _dump_plain(tree, indent=0).encode()


def _dump_plain(value: Any, *, indent: int) -> str:
    if isinstance(value, Mapping):
        if not value:
            return "{}\n"
        return dump_block({str(k): v for k, v in value.items()}, indent=indent)
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False, default=str) + "\n"
    return yaml_scalar(value, flow=False, indent=indent) + "\n"


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("YAML file is not valid UTF-8") from None
