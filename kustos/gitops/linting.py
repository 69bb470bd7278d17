"""Finding secrets that are about to reach Git in clear: the checks behind ``kustos lint``.

The most common leak is a Secret manifest (whose ``data`` is only base64)
or a decrypted sops file committed by mistake. :func:`lint_file` reads one
file's bytes and returns :class:`Finding` objects, each with a line, a rule
and what to do, and **never the value it found**: messages are built from
key names, kinds and object names only, and parse errors are reported by
position with quoted fragments removed, so a canary value cannot leak into
any output format. The checks:

* ``secret-in-clear`` — a ``kind: Secret`` mapping with a non-empty value
  in ``data`` or ``stringData``, anywhere in any YAML or JSON document:
  multi-document files, ``kind: List``, Helm value files that embed
  manifests (as mappings or as YAML text in a string), and Helm templates
  that are not YAML (a line scan; values that are template expressions are
  skipped);
* ``sops-not-encrypted`` — a file a ``.sops.yaml`` creation rule covers
  (the caller says so) without sops metadata: it was decrypted, or never
  encrypted;
* ``sops-value-in-clear`` — in a sops file, a value the file's own rules
  (``unencrypted_suffix``, ``encrypted_regex``, ...) say must be encrypted
  that is not ``ENC[...]``;
* ``sops-metadata`` — ``ENC[...]`` values without a ``sops`` block, or a
  block without ``mac``, ``lastmodified``, ``version`` or any key;
  ``sops-malformed`` — an ``ENC[...]`` value that is not well formed;
* ``sealed-malformed`` — a SealedSecret (``bitnami.com/v1alpha1`` or
  Kustos' native ``kustos.io/v1``) whose ``encryptedData`` is missing, not
  base64, or too short to be a ciphertext (a plaintext pasted there);
* ``unparseable`` — a YAML or JSON file that cannot be read (it cannot be
  checked, so it fails closed).

The module is pure (bytes in, findings out); the CLI (:mod:`kustos.cli.lint`)
finds the files, the ``.sops.yaml`` rules and the Git index, and prints.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Final, cast

import yaml

from kustos.crypto.sops import is_encrypted_value
from kustos.errors import ConfigError, DecryptionError
from kustos.gitops.sops.models import EncryptionRules, metadata_from_dict

__all__ = ["RULES", "Finding", "Rule", "Severity", "is_candidate", "lint_file"]


class Severity(enum.StrEnum):
    error = "error"
    warning = "warning"


@dataclass(frozen=True)
class Rule:
    """One kind of finding: an id for tools (SARIF ``ruleId``), a title, and how to fix it."""

    id: str
    title: str
    help: str


RULES: Final[dict[str, Rule]] = {
    rule.id: rule
    for rule in (
        Rule(
            "secret-in-clear",
            "Kubernetes Secret with data in clear",
            "A Secret's data is base64, not encryption. Seal it with `kustos seal -f FILE` "
            "(a SealedSecret is safe in Git) or encrypt the file with `kustos encrypt -i FILE`, "
            "then remove the plaintext from Git's history if it was ever committed, and rotate it.",
        ),
        Rule(
            "sops-not-encrypted",
            "File that .sops.yaml says must be encrypted is not",
            "A creation rule in .sops.yaml covers this file but it has no sops metadata: it was "
            "decrypted in place or never encrypted. Encrypt it with `kustos encrypt -i FILE`.",
        ),
        Rule(
            "sops-value-in-clear",
            "Value in clear in a sops file",
            "The file is sops-encrypted but this value is not, although the file's rules say it "
            "should be (it was edited in the decrypted form). Restore the file and change it with "
            "`kustos edit FILE` or `kustos set FILE`, or encrypt it again with `kustos encrypt`.",
        ),
        Rule(
            "sops-metadata",
            "sops metadata missing or incomplete",
            "Without a complete sops block (mac, lastmodified, version and at least one key) the "
            "file cannot be decrypted or its integrity checked. Encrypt it again from the "
            "plaintext with `kustos encrypt`.",
        ),
        Rule(
            "sops-malformed",
            "Malformed ENC[...] value",
            "An encrypted value must read ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]. "
            "Restore it from Git or encrypt the file again with `kustos encrypt`.",
        ),
        Rule(
            "sealed-malformed",
            "Malformed SealedSecret",
            "encryptedData must hold ciphertexts made by `kustos seal` (or kubeseal). Seal the "
            "Secret again with `kustos seal -f FILE`; never paste values into a SealedSecret.",
        ),
        Rule(
            "unparseable",
            "File cannot be parsed",
            "kustos lint cannot check a YAML or JSON file it cannot parse. Fix the syntax.",
        ),
    )
}


@dataclass(frozen=True)
class Finding:
    """One problem at one place. ``message`` never contains a value from the file."""

    rule: str
    path: str
    line: int
    column: int
    message: str
    severity: Severity = Severity.error

    @property
    def help(self) -> str:
        return RULES[self.rule].help


_YAML_SUFFIXES: Final = (".yaml", ".yml")
_ENC_FULL: Final = re.compile(
    r"ENC\[AES256_GCM,data:[A-Za-z0-9+/=]*,iv:[A-Za-z0-9+/=]+,tag:[A-Za-z0-9+/=]+,type:[a-z]+\]"
)
_SECRET_LINE: Final = re.compile(r"^\s*kind:\s*[\"']?Secret[\"']?\s*(#.*)?$", re.MULTILINE)
_TEMPLATE: Final = re.compile(r"\{\{.*\}\}|^\s*\{\{|\$\{\{", re.DOTALL)
_QUOTED: Final = re.compile(r"'[^']*'|\"[^\"]*\"")
_SEALED_APIS: Final = ("bitnami.com/v1alpha1", "kustos.io/v1")
_MIN_RSA_BYTES: Final = 128
_GCM_TAG: Final = 16
_NONCE: Final = 12
_KEY_SOURCES: Final = ("age", "pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms")
_MAX_EMBED_DEPTH: Final = 3


def is_candidate(path: str) -> bool:
    """Whether a file of this name is read at all when nothing else (a sops rule) asks for it."""
    name = PurePath(path).name.lower()
    if name in (".sops.yaml", ".pre-commit-hooks.yaml", ".pre-commit-config.yaml"):
        return False
    return name.endswith((*_YAML_SUFFIXES, ".json", ".env", ".ini")) or name == ".env"


def _kind(path: str) -> str:
    name = PurePath(path).name.lower()
    if name.endswith(_YAML_SUFFIXES):
        return "yaml"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".env") or name == ".env":
        return "dotenv"
    if name.endswith(".ini"):
        return "ini"
    return "other"


def lint_file(path: str, data: bytes, *, must_be_encrypted: bool = False) -> list[Finding]:
    """Every finding in ``data`` (the content of ``path``), in line order.

    ``must_be_encrypted``: a ``.sops.yaml`` creation rule covers the file.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if must_be_encrypted:
            return [_not_encrypted(path)]
        return []
    kind = _kind(path)
    if kind in ("yaml", "json"):
        findings = _lint_structured(path, text, must_be_encrypted=must_be_encrypted)
    elif kind == "dotenv":
        findings = _lint_flat(path, text, must_be_encrypted=must_be_encrypted, ini=False)
    elif kind == "ini":
        findings = _lint_flat(path, text, must_be_encrypted=must_be_encrypted, ini=True)
    else:
        findings = _lint_other(path, text, must_be_encrypted=must_be_encrypted)
    return sorted(findings, key=lambda f: (f.line, f.column, f.rule))


def _not_encrypted(path: str) -> Finding:
    return Finding(
        "sops-not-encrypted",
        path,
        1,
        1,
        "a creation rule in .sops.yaml covers this file, but it has no sops metadata: "
        "it is not encrypted",
    )


# -- YAML and JSON ----------------------------------------------------------------------------


def _safe_problem(exc: yaml.MarkedYAMLError | json.JSONDecodeError) -> str:
    """A parse error's description with every quoted fragment (which may be file content) removed."""
    if isinstance(exc, json.JSONDecodeError):
        return _QUOTED.sub("…", exc.msg)
    parts = [p for p in (exc.context, exc.problem) if p]
    return _QUOTED.sub("…", "; ".join(parts)) or "syntax error"


def _compose(text: str) -> list[yaml.Node]:
    """The documents' node trees, through libyaml when PyYAML was built with it (~10x faster)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [node for node in yaml.compose_all(text, Loader=loader) if node is not None]


def _lint_structured(
    path: str, text: str, *, must_be_encrypted: bool, json_text: bool = False
) -> list[Finding]:
    try:
        documents = _compose(text)
    except yaml.MarkedYAMLError as exc:
        return _unparseable_yaml(
            path, text, exc, must_be_encrypted=must_be_encrypted, json_text=json_text
        )
    except yaml.YAMLError:
        return [Finding("unparseable", path, 1, 1, "not valid YAML or JSON")]
    return _lint_documents(path, documents, must_be_encrypted=must_be_encrypted, offset=0)


def _unparseable_yaml(
    path: str, text: str, exc: yaml.MarkedYAMLError, *, must_be_encrypted: bool, json_text: bool
) -> list[Finding]:
    if json_text or _kind(path) == "json":
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as json_exc:
            return [
                Finding(
                    "unparseable",
                    path,
                    json_exc.lineno,
                    json_exc.colno,
                    f"not valid JSON: {_safe_problem(json_exc)}",
                )
            ]
        return _lint_plain_json(path, text, loaded, must_be_encrypted=must_be_encrypted)
    if "{{" in text and not must_be_encrypted:
        return _scan_template(path, text, offset=0)
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return [Finding("unparseable", path, line, column, f"not valid YAML: {_safe_problem(exc)}")]


def _lint_documents(
    path: str, documents: Sequence[yaml.Node], *, must_be_encrypted: bool, offset: int
) -> list[Finding]:
    findings: list[Finding] = []
    sops_node = next((s for d in documents if (s := _sops_block(d)) is not None), None)
    if sops_node is not None:
        findings += _check_sops(path, documents, sops_node, offset=offset)
        return findings
    if must_be_encrypted:
        findings.append(_not_encrypted(path))
    first_enc = next(
        (n for d in documents for n in _scalars(d) if n.value.startswith("ENC[")), None
    )
    if first_enc is not None:
        findings.append(
            Finding(
                "sops-metadata",
                path,
                first_enc.start_mark.line + 1 + offset,
                first_enc.start_mark.column + 1,
                "ENC[...] values but no sops metadata: the file cannot be decrypted",
            )
        )
    for document in documents:
        findings += _check_manifests(path, document, offset=offset, depth=0)
    return findings


def _scalars(node: yaml.Node) -> Iterator[yaml.ScalarNode]:
    stack = [node]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.ScalarNode):
            yield current
        elif isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack += [value, key]
        elif isinstance(current, yaml.SequenceNode):
            stack += reversed(current.value)


def _get(node: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return cast(yaml.Node, value_node)
    return None


def _text_of(node: yaml.Node | None) -> str:
    return node.value if isinstance(node, yaml.ScalarNode) else ""


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and (
        node.tag == "tag:yaml.org,2002:null" or (node.value == "" and not node.style)
    )


def _describe(node: yaml.Node) -> str:
    meta = _get(node, "metadata")
    name = _text_of(_get(meta, "name")) if meta is not None else ""
    namespace = _text_of(_get(meta, "namespace")) if meta is not None else ""
    kind = _text_of(_get(node, "kind"))
    where = f"{namespace}/{name}" if namespace else name
    return f"{kind} {where!r}" if where else kind


def _check_manifests(path: str, node: yaml.Node, *, offset: int, depth: int) -> list[Finding]:
    """Secrets in clear and malformed SealedSecrets anywhere under ``node`` (and in embedded YAML)."""
    findings: list[Finding] = []
    stack = [node]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            kind = _text_of(_get(current, "kind"))
            if kind == "Secret":
                findings += _check_secret(path, current, offset=offset)
            elif kind == "SealedSecret":
                findings += _check_sealed(path, current, offset=offset)
            for key, value in current.value:
                stack += [value, key]
        elif isinstance(current, yaml.SequenceNode):
            stack += current.value
        elif (
            isinstance(current, yaml.ScalarNode)
            and depth < _MAX_EMBED_DEPTH
            and "\n" in current.value
            and _SECRET_LINE.search(current.value)
        ):
            findings += _check_embedded(path, current, offset=offset, depth=depth)
    return findings


def _check_secret(path: str, node: yaml.MappingNode, *, offset: int) -> list[Finding]:
    findings: list[Finding] = []
    what = _describe(node)
    for field in ("data", "stringData"):
        values = _get(node, field)
        if not isinstance(values, yaml.MappingNode):
            continue
        for key_node, value_node in values.value:
            if not isinstance(value_node, yaml.ScalarNode) or _is_null(value_node):
                continue
            value = value_node.value
            if value == "" or is_encrypted_value(value) or _TEMPLATE.search(value):
                continue
            findings.append(
                Finding(
                    "secret-in-clear",
                    path,
                    key_node.start_mark.line + 1 + offset,
                    key_node.start_mark.column + 1,
                    f"{what}: {field}.{_text_of(key_node)} is in clear (base64 is not encryption)",
                )
            )
    return findings


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _check_sealed(path: str, node: yaml.MappingNode, *, offset: int) -> list[Finding]:
    api = _text_of(_get(node, "apiVersion"))
    if api not in _SEALED_APIS:
        return []
    what = _describe(node)
    spec = _get(node, "spec")
    encrypted = _get(spec, "encryptedData") if spec is not None else None

    def at(place: yaml.Node, message: str) -> Finding:
        return Finding(
            "sealed-malformed",
            path,
            place.start_mark.line + 1 + offset,
            place.start_mark.column + 1,
            f"{what}: {message}",
        )

    if not isinstance(encrypted, yaml.MappingNode) or not encrypted.value:
        return [at(spec or node, "spec.encryptedData is missing or empty")]
    findings: list[Finding] = []
    data_keys = _get(spec, "dataKeys") if spec is not None else None
    if api == "kustos.io/v1":
        findings += _check_data_keys(data_keys, at)
    known_ids = (
        {_text_of(k) for k, _ in data_keys.value}
        if isinstance(data_keys, yaml.MappingNode)
        else set()
    )
    for key_node, value_node in encrypted.value:
        name = _text_of(key_node)
        value = _text_of(value_node)
        if api == "bitnami.com/v1alpha1":
            problem = _bitnami_problem(value)
        else:
            problem = _native_problem(value, known_ids)
        if problem:
            findings.append(at(key_node, f"encryptedData.{name} {problem}"))
    return findings


def _bitnami_problem(value: str) -> str:
    blob = _b64(value)
    if blob is None:
        return "is not base64"
    if len(blob) < 2:
        return "is too short to be a sealed value"
    rsa_length = int.from_bytes(blob[:2], "big")
    if rsa_length < _MIN_RSA_BYTES or len(blob) < 2 + rsa_length + _GCM_TAG:
        return "is not a sealed value (too short for an RSA-wrapped key and AES-GCM data)"
    return ""


def _native_problem(value: str, known_ids: set[str]) -> str:
    data_key_id, sep, encoded = value.partition(":")
    if not sep or not data_key_id:
        return "is not a native sealed value (<data key id>:<base64>)"
    if data_key_id not in known_ids:
        return f"names data key {data_key_id[:16]!r}, which spec.dataKeys does not have"
    blob = _b64(encoded)
    if blob is None:
        return "is not base64 after its data key id"
    if len(blob) < _NONCE + _GCM_TAG:
        return "is too short to be an AES-GCM ciphertext"
    return ""


def _check_data_keys(data_keys: yaml.Node | None, at: Any) -> list[Finding]:
    if not isinstance(data_keys, yaml.MappingNode) or not data_keys.value:
        return [at(data_keys or yaml.ScalarNode("", ""), "spec.dataKeys is missing or empty")]
    findings: list[Finding] = []
    for id_node, recipients in data_keys.value:
        if not isinstance(recipients, yaml.SequenceNode) or not recipients.value:
            findings.append(at(id_node, f"spec.dataKeys.{_text_of(id_node)} lists no recipient"))
            continue
        for recipient in recipients.value:
            wrapped = _b64(_text_of(_get(recipient, "wrappedKey")))
            if not _text_of(_get(recipient, "keyId")) or not wrapped:
                findings.append(
                    at(
                        recipient,
                        f"spec.dataKeys.{_text_of(id_node)}: a recipient lacks keyId or a base64 wrappedKey",
                    )
                )
    return findings


def _check_embedded(path: str, node: yaml.ScalarNode, *, offset: int, depth: int) -> list[Finding]:
    """A manifest embedded as YAML text in a string (Helm values' ``extraManifests: |``)."""
    start = node.start_mark.line + offset + (1 if node.style in ("|", ">") else 0)
    try:
        documents = _compose(node.value)
    except yaml.YAMLError:
        return _scan_template(path, node.value, offset=start) if "{{" in node.value else []
    findings: list[Finding] = []
    for document in documents:
        findings += _check_manifests(path, document, offset=start, depth=depth + 1)
    return findings


def _scan_template(path: str, text: str, *, offset: int) -> list[Finding]:
    """Secrets in clear in YAML that does not parse (a Helm template): a line scan per document."""
    findings: list[Finding] = []
    lines = text.split("\n")
    in_secret = False
    section = ""
    section_indent = -1
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("---"):
            in_secret, section = False, ""
            continue
        if not stripped or stripped.startswith("#") or stripped.startswith("{{"):
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            section = ""
            if _SECRET_LINE.match(line):
                in_secret = True
            match = re.match(r"(data|stringData):\s*(#.*)?$", line)
            if match:
                section, section_indent = match.group(1), 0
            continue
        if not in_secret or not section or indent <= section_indent:
            continue
        entry = re.match(r"\s+([A-Za-z0-9_.-]+):\s*(.*)$", line)
        if entry is None:
            continue
        value = entry.group(2).strip()
        if not value or value in ("|", ">", "|-", ">-", '""', "''") or "{{" in value:
            continue
        findings.append(
            Finding(
                "secret-in-clear",
                path,
                number + offset,
                indent + 1,
                f"Secret (template): {section}.{entry.group(1)} is in clear "
                "(base64 is not encryption)",
            )
        )
    return findings


def _lint_plain_json(
    path: str, text: str, loaded: Any, *, must_be_encrypted: bool
) -> list[Finding]:
    """JSON that YAML cannot read (tabs, say): the same checks, lines found by key search."""
    try:
        documents = _compose(json.dumps(loaded, indent=1))
    except yaml.YAMLError:
        return [Finding("unparseable", path, 1, 1, "not valid JSON")]
    findings = _lint_documents(path, documents, must_be_encrypted=must_be_encrypted, offset=0)
    lines = text.split("\n")
    placed: list[Finding] = []
    for finding in findings:
        key = finding.message.split(" is ", 1)[0].rsplit(".", 1)[-1].split(" ")[-1]
        number = next(
            (i for i, line in enumerate(lines, start=1) if f'"{key}"' in line), finding.line
        )
        placed.append(Finding(finding.rule, path, number, 1, finding.message, finding.severity))
    return placed


# -- sops ----------------------------------------------------------------------------------------


def _sops_block(document: yaml.Node) -> yaml.MappingNode | None:
    block = _get(document, "sops")
    return block if isinstance(block, yaml.MappingNode) else None


def _check_sops(
    path: str, documents: Sequence[yaml.Node], block: yaml.MappingNode, *, offset: int
) -> list[Finding]:
    findings: list[Finding] = []
    line = block.start_mark.line + offset  # the "sops:" key is on the line before its mapping
    loaded = yaml.safe_load(yaml.serialize(block)) if block.value else {}
    missing = [k for k in ("mac", "lastmodified", "version") if not loaded.get(k)]
    if not any(loaded.get(k) for k in (*_KEY_SOURCES, "key_groups")):
        missing.append("a key (age, pgp, kms, ...)")
    if loaded.get("mac") and not _ENC_FULL.fullmatch(str(loaded["mac"])):
        missing.append("a well-formed mac")
    if missing:
        findings.append(
            Finding(
                "sops-metadata",
                path,
                max(line, 1),
                1,
                f"the sops metadata is incomplete: no {', '.join(missing)}",
            )
        )
    try:
        rules = _rules(loaded)
        if not missing:
            metadata_from_dict(loaded)
    except (DecryptionError, ConfigError) as exc:
        rules = EncryptionRules().normalized()
        findings.append(
            Finding("sops-metadata", path, max(line, 1), 1, f"the sops metadata is invalid: {exc}")
        )
    if rules is not None:
        for document in documents:
            findings += _check_sops_values(path, document, rules, offset=offset)
    return findings


def _rules(meta: dict[str, Any]) -> EncryptionRules | None:
    """The encrypt/unencrypt selectors a sops block records (default: ``_unencrypted`` suffix);
    ``None`` when they depend on comments (``*_comment_regex``), which this check does not read."""
    if meta.get("encrypted_comment_regex") or meta.get("unencrypted_comment_regex"):
        return None
    return EncryptionRules(
        unencrypted_suffix=str(meta.get("unencrypted_suffix") or ""),
        encrypted_suffix=str(meta.get("encrypted_suffix") or ""),
        unencrypted_regex=str(meta.get("unencrypted_regex") or ""),
        encrypted_regex=str(meta.get("encrypted_regex") or ""),
        mac_only_encrypted=str(meta.get("mac_only_encrypted")).lower() == "true",
    ).normalized()


def _check_sops_values(
    path: str, document: yaml.Node, rules: EncryptionRules, *, offset: int
) -> list[Finding]:
    findings: list[Finding] = []

    def visit(node: yaml.Node, keys: tuple[str, ...], display: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                name = _text_of(key_node)
                if not keys and name == "sops":
                    continue
                visit(value_node, (*keys, name), (*display, f"[{name!r}]"))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                visit(item, keys, (*display, f"[{index}]"))
        elif isinstance(node, yaml.ScalarNode):
            where = "".join(display) or "the document"
            line = node.start_mark.line + 1 + offset
            column = node.start_mark.column + 1
            if node.value.startswith("ENC["):
                if not _ENC_FULL.fullmatch(node.value):
                    findings.append(
                        Finding(
                            "sops-malformed",
                            path,
                            line,
                            column,
                            f"{where} is not a well-formed ENC[...] value",
                        )
                    )
                return
            if _is_null(node) or (node.value == "" and node.tag.endswith(":str")):
                return
            if rules.should_encrypt(keys):
                findings.append(
                    Finding(
                        "sops-value-in-clear",
                        path,
                        line,
                        column,
                        f"{where} is not encrypted, but the file's sops rules say it must be",
                    )
                )

    visit(document, (), ())
    return findings


# -- dotenv, INI and other files -----------------------------------------------------------------


def _lint_flat(path: str, text: str, *, must_be_encrypted: bool, ini: bool) -> list[Finding]:
    """dotenv (``KEY=value``, metadata in ``sops_*`` keys) and INI (``[sops]`` section)."""
    entries: list[tuple[int, str, str, str]] = []  # line, section, key, value
    section = ""
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if ini and line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if sep:
            entries.append((number, section, key.strip(), value.strip()))
    if ini:
        meta = {k: v for _, s, k, v in entries if s == "sops"}
        data = [(n, k, v) for n, s, k, v in entries if s != "sops"]
    else:
        meta = {k[len("sops_") :]: v for _, _, k, v in entries if k.startswith("sops_")}
        data = [(n, k, v) for n, _, k, v in entries if not k.startswith("sops_")]
    if "mac" not in meta:
        findings = [_not_encrypted(path)] if must_be_encrypted else []
        first = next((n for n, _, v in data if v.startswith("ENC[")), None)
        if first is not None:
            findings.append(
                Finding(
                    "sops-metadata",
                    path,
                    first,
                    1,
                    "ENC[...] values but no sops metadata: the file cannot be decrypted",
                )
            )
        return findings
    findings = []
    missing = [k for k in ("lastmodified", "version") if not meta.get(k)]
    if not any(k.startswith((*_KEY_SOURCES, "key_groups")) for k in meta):
        missing.append("a key (age, pgp, kms, ...)")
    if missing:
        findings.append(
            Finding(
                "sops-metadata",
                path,
                1,
                1,
                f"the sops metadata is incomplete: no {', '.join(missing)}",
            )
        )
    try:
        rules = _rules(meta)
    except ConfigError as exc:
        rules = EncryptionRules().normalized()
        findings.append(
            Finding("sops-metadata", path, 1, 1, f"the sops metadata is invalid: {exc}")
        )
    if rules is None:
        return findings
    for number, key, value in data:
        if not value or is_encrypted_value(value):
            continue
        if rules.should_encrypt((key,)):
            findings.append(
                Finding(
                    "sops-value-in-clear",
                    path,
                    number,
                    1,
                    f"{key} is not encrypted, but the file's sops rules say it must be",
                )
            )
    return findings


def _lint_other(path: str, text: str, *, must_be_encrypted: bool) -> list[Finding]:
    """Any other file a creation rule covers must be sops' binary form: ``{"data": ENC, "sops"}``."""
    if not must_be_encrypted:
        return []
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError:
        return [_not_encrypted(path)]
    if not isinstance(loaded, dict) or not isinstance(loaded.get("sops"), dict):
        return [_not_encrypted(path)]
    return _lint_structured(path, text, must_be_encrypted=True, json_text=True)
