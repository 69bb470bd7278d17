"""Rendering ``spec.template.data`` of a SealedSecret with the unsealed values.

Sealed Secrets renders each template entry with Go's ``text/template`` (plus
sprig functions), the decrypted values as the data (``{{ .password }}``).
Kustos does not embed a Go template engine; it renders the subset that
SealedSecret templates use in practice, and refuses anything else with an
error naming the object and key (never a silent wrong value):

* text outside ``{{ }}`` is copied; ``{{-`` / ``-}}`` trim whitespace;
* ``{{ .key }}`` and ``{{ index . "key" }}`` insert a decrypted value;
  a key that was not sealed is an error (Go would print an empty string);
* ``{{ "literal" }}`` inserts a string literal;
* pipelines ``{{ .key | fn | fn }}`` with the sprig functions ``b64enc``,
  ``b64dec``, ``upper``, ``lower``, ``trim``, ``quote``, ``squote``,
  ``toJson``.

Rendered results are returned wrapped in :class:`~kustos.sensitive.Sensitive`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Final

from kustos.errors import InvalidRequestError
from kustos.sensitive import Sensitive

__all__ = ["FUNCTIONS", "render_template"]


def _b64dec(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("b64dec: value is not base64 text") from None


FUNCTIONS: Final[Mapping[str, Callable[[str], str]]] = {
    "b64enc": lambda v: base64.b64encode(v.encode()).decode(),
    "b64dec": _b64dec,
    "upper": str.upper,
    "lower": str.lower,
    "trim": str.strip,
    "quote": lambda v: json.dumps(v),
    "squote": lambda v: "'" + v + "'",
    "toJson": lambda v: json.dumps(v),
}
"""The pipeline functions the renderer knows (a subset of sprig)."""

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)


def _command(tokens: list[str], values: Mapping[str, str], *, quoted: bool) -> str:
    if quoted and len(tokens) == 1:
        return tokens[0]
    if len(tokens) == 1 and tokens[0].startswith(".") and len(tokens[0]) > 1:
        key = tokens[0][1:]
    elif len(tokens) == 3 and tokens[0] == "index" and tokens[1] == ".":
        key = tokens[2]
    else:
        raise ValueError(f"unsupported template action {' '.join(tokens)!r}")
    if key not in values:
        raise ValueError(f"template refers to {key!r}, which is not in encryptedData")
    return values[key]


def _evaluate(expression: str, values: Mapping[str, str]) -> str:
    stages = [s.strip() for s in expression.split("|")]
    if not stages or not stages[0]:
        raise ValueError("empty template action")
    try:
        first = shlex.split(stages[0])
    except ValueError:
        raise ValueError(f"unbalanced quotes in template action {expression.strip()!r}") from None
    result = _command(first, values, quoted=stages[0].startswith('"'))
    for stage in stages[1:]:
        fn = FUNCTIONS.get(stage)
        if fn is None:
            raise ValueError(
                f"unsupported template function {stage!r} (supported: {', '.join(sorted(FUNCTIONS))})"
            )
        result = fn(result)
    return result


def render_template(
    template: str, values: Mapping[str, Sensitive[bytes]], *, where: str
) -> Sensitive[bytes]:
    """Render one template entry; ``where`` (object and key) prefixes every error."""
    text_values = {k: v.reveal().decode("utf-8", errors="replace") for k, v in values.items()}
    out: list[str] = []
    pos = 0
    try:
        for match in _ACTION.finditer(template):
            literal = template[pos : match.start()]
            if match.group(1):
                literal = literal.rstrip()
            if out and out[-1] == "\x00trim":
                out.pop()
                literal = literal.lstrip()
            out.append(literal)
            out.append(_evaluate(match.group(2), text_values))
            if match.group(3):
                out.append("\x00trim")
            pos = match.end()
        tail = template[pos:]
        if out and out[-1] == "\x00trim":
            out.pop()
            tail = tail.lstrip()
        if "{{" in tail or "}}" in tail:
            raise ValueError("unbalanced '{{' / '}}' in template")
        out.append(tail)
    except ValueError as exc:
        raise InvalidRequestError(f"{where}: {exc}") from None
    return Sensitive("".join(out).encode())
