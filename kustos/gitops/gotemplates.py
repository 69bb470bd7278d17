"""Vault agent (consul-template) templates, translated to the Kustos template language.

Vault's injector annotations carry Go templates such as::

    {{- with secret "secret/data/app/db" -}}
    postgres://{{ .Data.data.user }}:{{ .Data.data.password }}@db:5432/app
    {{- end }}

:func:`translate` turns one into an equivalent sandboxed Jinja2 template
(:mod:`kustos.gitops.rendering`), so a team moving from Vault keeps its
templates. :func:`is_go_template` tells the two apart (a Go action starts
with ``.``, ``$``, ``with``, ``range``, ``if``, ``else``, ``end`` or a
comment, which Jinja's ``{{ }}`` never does).

What is understood (everything else is refused with an error naming it,
never silently rendered differently):

* text, ``{{- ... -}}`` whitespace trimming, ``{{/* comments */}}``;
* ``with``, ``if``, ``else``, ``else if``, ``range`` (with ``$k, $v :=``), ``end``;
  ``with``/``range`` move the dot as Go does; ``$`` is the root;
* ``.Field.chains``, ``$var.Field``, ``$x := ...``, string (``"..."``, raw
  backquoted), number, bool and ``nil`` literals, ``(pipelines)``, ``|``;
* functions: ``secret`` (read-only: no write parameters), ``index``,
  ``toJSON``, ``toJSONPretty``, ``base64Encode``/``base64Decode``,
  ``base64URLEncode``/``base64URLDecode``, ``toUpper``, ``toLower``,
  ``trimSpace``, ``printf`` (``%s %d %v %q %%``), ``len``, ``eq``, ``ne``,
  ``lt``, ``le``, ``gt``, ``ge``, ``and``, ``or``, ``not``.

A map ranges in sorted key order and ``toJSON`` writes compact JSON with
sorted keys and ``<>&`` escaped, as Go does. A missing field is false in a
condition and an error when printed (Go would print ``<no value>`` into the
file). :data:`HELPERS` are the globals the translation calls; the caller
adds ``secret``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from kustos.errors import InvalidRequestError

__all__ = ["HELPERS", "ROOT", "is_go_template", "translate"]

ROOT: Final = "__go_root"
"""The Jinja variable Go's ``$`` (and the initial dot) stands for."""

_ACTION: Final = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_GO_HEAD: Final = re.compile(r"\s*(?:[.$]|/\*|(?:with|range|if|else|end)\b)")
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD: Final = re.compile(r"(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.")
_NUMBER: Final = re.compile(r"-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")
_VERB: Final = re.compile(r"%[sdvq%]")


def is_go_template(source: str) -> bool:
    """Whether ``source`` is a Go (Vault agent) template rather than a Jinja one."""
    return any(_GO_HEAD.match(m.group(2)) for m in _ACTION.finditer(source))


# -- lexing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # str num bool nil field var ident pipe lparen rparen declare assign comma
    text: str
    value: Any = None


def _lex(body: str, *, where: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch.isspace():
            i += 1
        elif ch == '"':
            j = i + 1
            while j < n and body[j] != '"':
                j += 2 if body[j] == "\\" else 1
            if j >= n:
                raise _error(where, "unterminated string")
            raw = body[i : j + 1]
            try:
                value = json.loads(raw)
            except ValueError:
                raise _error(where, f"unsupported escape in string {raw[:40]}") from None
            tokens.append(_Token("str", raw, value))
            i = j + 1
        elif ch == "`":
            j = body.find("`", i + 1)
            if j < 0:
                raise _error(where, "unterminated raw string")
            tokens.append(_Token("str", body[i : j + 1], body[i + 1 : j]))
            i = j + 1
        elif ch == "|":
            tokens.append(_Token("pipe", ch))
            i += 1
        elif ch == "(":
            tokens.append(_Token("lparen", ch))
            i += 1
        elif ch == ")":
            match = _FIELD.match(body, i + 1) if body.startswith(".", i + 1) else None
            tokens.append(_Token("rparen", ch, match.group(0) if match else ""))
            i = match.end() if match else i + 1
        elif ch == ",":
            tokens.append(_Token("comma", ch))
            i += 1
        elif body.startswith(":=", i):
            tokens.append(_Token("declare", ":="))
            i += 2
        elif ch == "=":
            tokens.append(_Token("assign", "="))
            i += 1
        elif ch == ".":
            field_match = _FIELD.match(body, i)
            if field_match is None:  # pragma: no cover - "." alone always matches
                raise _error(where, "unexpected '.'")
            tokens.append(_Token("field", field_match.group(0)))
            i = field_match.end()
        elif ch == "$":
            name = _IDENT.match(body, i + 1)
            j = name.end() if name else i + 1
            chain = _FIELD.match(body, j) if body.startswith(".", j) else None
            tokens.append(
                _Token("var", name.group(0) if name else "", chain.group(0) if chain else "")
            )
            i = chain.end() if chain else j
        elif (number := _NUMBER.match(body, i)) is not None and (ch.isdigit() or ch == "-"):
            tokens.append(_Token("num", number.group(0), _number(number.group(0))))
            i = number.end()
        elif (ident := _IDENT.match(body, i)) is not None:
            word = ident.group(0)
            if word in ("true", "false"):
                tokens.append(_Token("bool", word, word == "true"))
            elif word == "nil":
                tokens.append(_Token("nil", word))
            else:
                tokens.append(_Token("ident", word))
            i = ident.end()
        else:
            raise _error(where, f"unexpected character {ch!r}")
    return tokens


def _number(text: str) -> int | float:
    if text.lower().lstrip("-").startswith("0x"):
        return int(text, 16)
    return float(text) if any(c in text for c in ".eE") else int(text)


# -- translating -----------------------------------------------------------------------------

_FUNCTIONS: Final = {
    "index": "__go_index",
    "toJSON": "__go_tojson",
    "toJSONPretty": "__go_tojson_pretty",
    "base64Encode": "__go_b64enc",
    "base64Decode": "__go_b64dec",
    "base64URLEncode": "__go_b64urlenc",
    "base64URLDecode": "__go_b64urldec",
    "toUpper": "__go_upper",
    "toLower": "__go_lower",
    "trimSpace": "__go_trim",
    "printf": "__go_printf",
    "len": "__go_len",
    "eq": "__go_eq",
    "ne": "__go_ne",
    "lt": "__go_lt",
    "le": "__go_le",
    "gt": "__go_gt",
    "ge": "__go_ge",
    "and": "__go_and",
    "or": "__go_or",
    "not": "__go_not",
}


@dataclass
class _Frame:
    kind: str  # with if range
    outer_dot: str
    dot: str


@dataclass
class _Translator:
    where: str
    out: list[str] = field(default_factory=list)
    stack: list[_Frame] = field(default_factory=list)
    dot: str = ROOT
    counter: int = 0

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"__go_{stem}{self.counter}"

    # expressions

    def chain(self, base: str, fields: str) -> str:
        if fields in ("", "."):
            return base
        parts = fields.strip(".").split(".")
        return base + "".join(f"[{json.dumps(p)}]" for p in parts)

    def operand(self, tokens: list[_Token], pos: int) -> tuple[str, int]:
        token = tokens[pos]
        if token.kind in ("str", "num", "bool"):
            return json.dumps(token.value), pos + 1
        if token.kind == "nil":
            return "none", pos + 1
        if token.kind == "field":
            return self.chain(self.dot, token.text), pos + 1
        if token.kind == "var":
            base = ROOT if not token.text else f"__go_var_{token.text}"
            return self.chain(base, token.value), pos + 1
        if token.kind == "lparen":
            inner, end = self.pipeline(tokens, pos + 1, stop="rparen")
            if end >= len(tokens) or tokens[end].kind != "rparen":
                raise _error(self.where, "unbalanced parentheses")
            return self.chain(f"({inner})", tokens[end].value), end + 1
        raise _error(self.where, f"unexpected {token.text!r}")

    def command(
        self, tokens: list[_Token], pos: int, stop: str | None, piped: str | None
    ) -> tuple[str, int]:
        head = tokens[pos]
        args: list[str] = []
        if head.kind == "ident":
            pos += 1
            while pos < len(tokens) and tokens[pos].kind not in ("pipe", stop or "", "rparen"):
                arg, pos = self.operand(tokens, pos)
                args.append(arg)
            if piped is not None:
                args.append(piped)
            return self.call(head.text, args), pos
        expr, pos = self.operand(tokens, pos)
        if piped is not None:
            raise _error(self.where, f"cannot pipe a value into {head.text!r}")
        if pos < len(tokens) and tokens[pos].kind not in ("pipe", stop or "", "rparen"):
            raise _error(self.where, f"unexpected {tokens[pos].text!r} after {head.text!r}")
        return expr, pos

    def call(self, name: str, args: list[str]) -> str:
        if name == "secret":
            if len(args) != 1:
                raise _error(
                    self.where,
                    "secret takes one path here (write parameters, for dynamic secrets, are not supported)",
                )
            return f"secret({args[0]})"
        helper = _FUNCTIONS.get(name)
        if helper is None:
            raise _error(self.where, f"function {name!r} is not supported")
        return f"{helper}({', '.join(args)})"

    def pipeline(
        self, tokens: list[_Token], pos: int, *, stop: str | None = None
    ) -> tuple[str, int]:
        if pos >= len(tokens):
            raise _error(self.where, "missing value")
        expr, pos = self.command(tokens, pos, stop, None)
        while pos < len(tokens) and tokens[pos].kind == "pipe":
            if pos + 1 >= len(tokens):
                raise _error(self.where, "nothing after '|'")
            expr, pos = self.command(tokens, pos + 1, stop, expr)
        return expr, pos

    def whole(self, tokens: list[_Token]) -> str:
        expr, pos = self.pipeline(tokens, 0)
        if pos != len(tokens):
            raise _error(self.where, f"unexpected {tokens[pos].text!r}")
        return expr

    # actions

    def action(self, body: str, left: bool, right: bool) -> None:
        l_trim, r_trim = ("-" if left else ""), ("-" if right else "")
        text = body.strip()
        if text.startswith("/*"):
            if not text.endswith("*/"):
                raise _error(self.where, "unterminated comment")
            if left or right:
                self.out.append(f"{{%{l_trim} if false {r_trim}%}}{{% endif %}}")
            return
        tokens = _lex(text, where=self.where)
        if not tokens:
            raise _error(self.where, "empty action {{ }}")
        head = tokens[0]
        word = head.text if head.kind == "ident" else ""
        if word == "end":
            if len(tokens) != 1:
                raise _error(self.where, "'end' takes nothing")
            if not self.stack:
                raise _error(self.where, "'end' without an open block")
            frame = self.stack.pop()
            self.dot = frame.outer_dot
            closing = {"with": "endif %}{% endwith", "if": "endif", "range": "endfor"}[frame.kind]
            self.out.append(f"{{%{l_trim} {closing} {r_trim}%}}")
        elif word == "else":
            if not self.stack:
                raise _error(self.where, "'else' without an open block")
            frame = self.stack[-1]
            self.dot = frame.outer_dot
            if len(tokens) == 1:
                self.out.append(f"{{%{l_trim} else {r_trim}%}}")
            elif tokens[1].kind == "ident" and tokens[1].text == "if" and frame.kind == "if":
                self.out.append(f"{{%{l_trim} elif {self.whole(tokens[2:])} {r_trim}%}}")
            else:
                raise _error(self.where, "only 'else' and 'else if' (inside 'if') are supported")
        elif word == "if":
            self.stack.append(_Frame("if", self.dot, self.dot))
            self.out.append(f"{{%{l_trim} if {self.whole(tokens[1:])} {r_trim}%}}")
        elif word == "with":
            name = self.fresh("dot")
            expr = self.whole(tokens[1:])
            self.stack.append(_Frame("with", self.dot, name))
            self.out.append(f"{{%{l_trim} with {name} = {expr} %}}{{% if {name} {r_trim}%}}")
            self.dot = name
        elif word == "range":
            self.range(tokens[1:], l_trim, r_trim)
        elif head.kind == "var" and len(tokens) > 1 and tokens[1].kind in ("declare", "assign"):
            if not head.text or head.value:
                raise _error(self.where, "only $name := value assigns a variable")
            expr = self.whole(tokens[2:])
            self.out.append(f"{{%{l_trim} set __go_var_{head.text} = {expr} {r_trim}%}}")
        elif word in ("define", "template", "block", "break", "continue"):
            raise _error(self.where, f"'{word}' is not supported")
        else:
            self.out.append(f"{{{{{l_trim} {self.whole(tokens)} {r_trim}}}}}")

    def range(self, tokens: list[_Token], l_trim: str, r_trim: str) -> None:
        names: list[str] = []
        if any(t.kind == "declare" for t in tokens):
            cut = next(i for i, t in enumerate(tokens) if t.kind == "declare")
            head = [t for t in tokens[:cut] if t.kind != "comma"]
            if not 1 <= len(head) <= 2 or any(t.kind != "var" or not t.text for t in head):
                raise _error(self.where, "range takes $value := or $key, $value :=")
            names = [f"__go_var_{t.text}" for t in head]
            tokens = tokens[cut + 1 :]
        expr = self.whole(tokens)
        element = self.fresh("dot")
        if len(names) == 2:
            loop = f"{names[0]}, {element} in __go_range_items({expr})"
            alias = f"{{% set {names[1]} = {element} %}}"
        else:
            loop = f"{element} in __go_range_values({expr})"
            alias = f"{{% set {names[0]} = {element} %}}" if names else ""
        self.stack.append(_Frame("range", self.dot, element))
        self.out.append(f"{{%{l_trim} for {loop} {r_trim}%}}{alias}")
        self.dot = element


def translate(source: str, *, where: str = "template") -> str:
    """The Jinja2 form of a Go (Vault agent) template; ``InvalidRequestError`` naming what is unsupported."""
    translator = _Translator(where=where)
    pos = 0
    for match in _ACTION.finditer(source):
        _text(translator.out, source[pos : match.start()])
        translator.action(match.group(2), bool(match.group(1)), bool(match.group(3)))
        pos = match.end()
    _text(translator.out, source[pos:])
    if translator.stack:
        raise _error(where, f"'{translator.stack[-1].kind}' is never closed with 'end'")
    return "".join(translator.out)


def _text(out: list[str], text: str) -> None:
    if not text:
        return
    if "{%" in text or "{#" in text or "{{" in text:
        out.append("{% raw %}" + text + "{% endraw %}")
    else:
        out.append(text)


def _error(where: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{where}: {message}")


# -- the helpers the translation calls -------------------------------------------------------


def _go_json(value: Any, *, indent: int | None = None) -> str:
    text = json.dumps(
        value,
        sort_keys=True,
        ensure_ascii=False,
        indent=indent,
        separators=(",", ":") if indent is None else (",", ": "),
        default=str,
    )
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        value = value[key]
    return value


def _text_of(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _printf(fmt: str, *args: Any) -> str:
    values = iter(args)

    def verb(match: re.Match[str]) -> str:
        kind = match.group(0)
        if kind == "%%":
            return "%"
        value = next(values, None)
        if kind == "%d":
            return str(int(value)) if value is not None else "%!d(MISSING)"
        if kind == "%q":
            return json.dumps(_text_of(value), ensure_ascii=False)
        return _text_of(value)

    return _VERB.sub(verb, str(fmt))


def _range_items(value: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(value, dict):
        return iter(sorted(value.items()))
    if isinstance(value, list | tuple):
        return iter(enumerate(value))
    return iter(())


def _range_values(value: Any) -> list[Any]:
    return [v for _, v in _range_items(value)]


def _b64(encoder: Callable[[bytes], bytes]) -> Callable[[Any], str]:
    return lambda value: encoder(_text_of(value).encode()).decode()


HELPERS: Final[dict[str, Any]] = {
    ROOT: {},
    "__go_index": _index,
    "__go_tojson": _go_json,
    "__go_tojson_pretty": lambda value: _go_json(value, indent=2),
    "__go_b64enc": _b64(base64.b64encode),
    "__go_b64dec": lambda value: base64.b64decode(_text_of(value)).decode("utf-8", "replace"),
    "__go_b64urlenc": _b64(base64.urlsafe_b64encode),
    "__go_b64urldec": lambda value: base64.urlsafe_b64decode(_text_of(value)).decode(
        "utf-8", "replace"
    ),
    "__go_upper": lambda value: _text_of(value).upper(),
    "__go_lower": lambda value: _text_of(value).lower(),
    "__go_trim": lambda value: _text_of(value).strip(),
    "__go_printf": _printf,
    "__go_len": lambda value: len(value) if value else 0,
    "__go_eq": lambda a, *others: any(a == b for b in others),
    "__go_ne": lambda a, b: a != b,
    "__go_lt": lambda a, b: a < b,
    "__go_le": lambda a, b: a <= b,
    "__go_gt": lambda a, b: a > b,
    "__go_ge": lambda a, b: a >= b,
    "__go_and": lambda *values: next((v for v in values if not v), values[-1]),
    "__go_or": lambda *values: next((v for v in values if v), values[-1]),
    "__go_not": lambda value: not value,
    "__go_range_items": _range_items,
    "__go_range_values": _range_values,
}
"""Globals the translated templates call (add them to the environment with ``secret``)."""
