"""Go's ``text/template``, evaluated in Python: the template language of External Secrets.

External Secrets renders ``target.template`` (and ``templateFrom``) with Go's
``text/template`` plus the sprig library (:mod:`kustos.gitops.sprig`), under
``missingkey=error``. A team moving to Kustos keeps those templates unchanged,
so this module implements the part of the language such templates use and
evaluates it directly (no translation, no ``eval``):

* text, ``{{- ... -}}`` whitespace trimming, ``{{/* comments */}}``;
* ``if`` / ``else if`` / ``else``, ``range`` (lists, maps in sorted key
  order, integers; ``$i, $e :=``; ``{{else}}``; ``break``, ``continue``),
  ``with`` / ``else with``, ``end``;
* ``.`` and ``.Field.chains`` (map keys), ``$``, ``$var.chains``,
  ``$x := ...`` and ``$x = ...`` with Go's block scoping, ``(pipelines).field``,
  ``|`` (the previous value becomes the last argument), string (``"..."``
  with Go escapes, raw backquoted), rune, number (decimal, hex, octal,
  binary, ``_`` separators, floats), ``true``/``false``/``nil`` literals;
* Go's built-in functions: ``and``, ``or`` (both short-circuit), ``not``,
  ``eq`` (several operands), ``ne``, ``lt``, ``le``, ``gt``, ``ge``, ``len``,
  ``index``, ``slice``, ``print``, ``printf``, ``println``, ``html``, ``urlquery``.

``define``, ``template`` and ``block`` are refused at parse time, as is any
function the caller did not supply, naming it. Go strings are byte strings:
values are Python ``str`` decoded with ``surrogateescape`` (so binary data
survives ``b64enc``), and ``len`` counts bytes as Go does.

**Guarantees.** A template cannot reach Python: only the functions in the
map given to :func:`parse` can be called, and field access reads map keys
only (never attributes). Work is bounded: at most :data:`MAX_STEPS` evaluation
steps and :data:`MAX_OUTPUT` bytes of output per execution, and a nesting
depth limit, so a tenant's template cannot stall the controller.
:class:`GoTemplateError` messages name the template, the line, the
construct and the field or function involved — never a value the template
was given or computed (so an error can go into a status condition).

**Limits.** Values are maps, lists, strings, numbers, booleans and nil;
there are no methods or structs. Comparing values of different kinds is an
error, as in Go. Floats print with Go's ``%v`` rules.
"""

from __future__ import annotations

import bisect
import decimal
import html as html_lib
import math
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from kustos.errors import InvalidRequestError

__all__ = [
    "MAX_OUTPUT",
    "MAX_STEPS",
    "Function",
    "GoTemplateError",
    "StringMap",
    "Template",
    "execute",
    "format_value",
    "go_bytes",
    "go_quote",
    "go_str",
    "is_empty",
    "parse",
    "truth",
]

MAX_OUTPUT: Final = 1 << 20
"""Bytes one execution may write (a Kubernetes Secret holds at most 1 MiB)."""
MAX_STEPS: Final = 200_000
"""Evaluation steps (actions, function calls, range iterations) one execution may take."""
_MAX_DEPTH: Final = 64

Function = Callable[..., Any]


class GoTemplateError(InvalidRequestError):
    """A template failed to parse or execute; the message never holds a value."""


class StringMap(dict[str, str]):
    """The data a template is executed with: Go's ``map[string]string``.

    ``index`` of a missing key gives ``""`` (the zero value of ``string``),
    where a map decoded from JSON gives ``nil``.
    """


class _BreakError(Exception):
    pass


class _ContinueError(Exception):
    pass


# -- values -------------------------------------------------------------------------------


def go_str(data: bytes) -> str:
    """Bytes as a Go string value (any byte survives the round trip through :func:`go_bytes`)."""
    return data.decode("utf-8", "surrogateescape")


def go_bytes(value: str) -> bytes:
    """A Go string value back to its bytes."""
    return value.encode("utf-8", "surrogateescape")


def _kind(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, list | tuple):
        return "slice"
    return type(value).__name__


def truth(value: Any) -> bool:
    """Go's template truth: false, 0, nil and empty strings, lists and maps are false."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | tuple | dict):
        return len(value) > 0
    return True


def is_empty(value: Any) -> bool:
    """sprig's ``empty``: the zero value of its type."""
    return not truth(value)


def _go_float(value: float) -> str:
    """``fmt``'s ``%v`` for a float64 (``%g``, shortest): exponent form below 1e-4 and from 1e6."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exp = decimal.Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    exponent = len(digit_tuple) + int(exp) - 1
    prefix = "-" if sign else ""
    if -4 <= exponent < 6:
        if exponent >= 0:
            whole = digits[: exponent + 1].ljust(exponent + 1, "0")
            rest = digits[exponent + 1 :]
            return prefix + whole + ("." + rest if rest else "")
        return prefix + "0." + "0" * (-exponent - 1) + digits
    rest = digits[1:]
    mark = "-" if exponent < 0 else "+"
    return f"{prefix}{digits[0]}{'.' + rest if rest else ''}e{mark}{abs(exponent):02d}"


def format_value(value: Any) -> str:
    """Go's ``%v`` (what ``{{ value }}`` prints)."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        items = " ".join(f"{format_value(k)}:{_nested(v)}" for k, v in _sorted_items(value))
        return f"map[{items}]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_nested(v) for v in value) + "]"
    return str(value)


def _nested(value: Any) -> str:
    return "<nil>" if value is None else format_value(value)


def _sorted_items(value: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    try:
        return sorted(value.items(), key=lambda item: item[0])
    except TypeError:
        return list(value.items())


_QUOTE_ESCAPES: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(text: str) -> str:
    """``strconv.Quote``: a double-quoted Go string literal (printable Unicode kept as is)."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[char])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char.isprintable() or char == " ":
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


# -- lexing -------------------------------------------------------------------------------

_SPACE: Final = " \t\r\n"
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELDS: Final = re.compile(r"(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_NUMBER: Final = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+"
    r"|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?)"
)
_KEYWORDS: Final = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
)
_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


@dataclass(frozen=True)
class _Token:
    kind: str
    """ident, keyword, field, dot, var, string, number, bool, nil, lparen, rparen,
    pipe, declare, assign, comma."""
    text: str
    value: Any = None
    line: int = 1


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _ActionSource:
    tokens: tuple[_Token, ...]
    line: int


class _Lexer:
    """Splits a template into text and the token lists of its actions."""

    def __init__(self, source: str, name: str) -> None:
        self.source = source
        self.name = name
        self.newlines = [i for i, char in enumerate(source) if char == "\n"]

    def line(self, pos: int) -> int:
        return bisect.bisect_right(self.newlines, pos - 1) + 1

    def error(self, line: int, message: str) -> GoTemplateError:
        return GoTemplateError(f"template {self.name}:{line}: {message}")

    def items(self) -> list[_Text | _ActionSource]:
        src = self.source
        items: list[_Text | _ActionSource] = []
        pos = 0
        trim_next = False
        while True:
            start = src.find("{{", pos)
            text = src[pos:] if start < 0 else src[pos:start]
            if trim_next:
                text = text.lstrip(_SPACE)
            if start < 0:
                if text:
                    items.append(_Text(text))
                return items
            line = self.line(start)
            inner = start + 2
            if src.startswith("-", inner) and src[inner + 1 : inner + 2] in tuple(_SPACE):
                text = text.rstrip(_SPACE)
                inner += 2
            if text:
                items.append(_Text(text))
            body_start = inner
            while body_start < len(src) and src[body_start] in _SPACE:
                body_start += 1
            if src.startswith("/*", body_start):
                close = src.find("*/", body_start + 2)
                if close < 0:
                    raise self.error(line, "unclosed comment")
                after = close + 2
                trim_next = False
                rest = src[after:]
                stripped = rest.lstrip(_SPACE)
                if stripped.startswith("-}}") and len(rest) != len(stripped):
                    trim_next = True
                    pos = after + (len(rest) - len(stripped)) + 3
                elif rest.startswith("}}"):
                    pos = after + 2
                else:
                    raise self.error(line, "comment ends before closing delimiter")
                continue
            tokens, pos, trim_next = self._action(inner, line)
            items.append(_ActionSource(tuple(tokens), line))

    def _action(self, pos: int, line: int) -> tuple[list[_Token], int, bool]:
        src = self.source
        tokens: list[_Token] = []
        n = len(src)
        while True:
            if pos >= n:
                raise self.error(line, "unclosed action")
            char = src[pos]
            if char in _SPACE:
                end = pos
                while end < n and src[end] in _SPACE:
                    end += 1
                if src.startswith("-}}", end):
                    return tokens, end + 3, True
                pos = end
                continue
            if src.startswith("}}", pos):
                return tokens, pos + 2, False
            here = self.line(pos)
            if char == "(":
                tokens.append(_Token("lparen", "(", line=here))
                pos += 1
            elif char == ")":
                tokens.append(_Token("rparen", ")", line=here))
                pos += 1
                fields = _FIELDS.match(src, pos)
                if fields:  # "(pipeline).field": the chain belongs to the parenthesis
                    tokens.append(_Token("chain", fields.group(), _names(fields.group()), here))
                    pos = fields.end()
            elif char == "|":
                tokens.append(_Token("pipe", "|", line=here))
                pos += 1
            elif char == ",":
                tokens.append(_Token("comma", ",", line=here))
                pos += 1
            elif src.startswith(":=", pos):
                tokens.append(_Token("declare", ":=", line=here))
                pos += 2
            elif char == "=":
                tokens.append(_Token("assign", "=", line=here))
                pos += 1
            elif char == '"':
                value, pos = self._quoted(pos, here)
                tokens.append(_Token("string", "string", value, here))
            elif char == "`":
                close = src.find("`", pos + 1)
                if close < 0:
                    raise self.error(here, "unterminated raw string")
                tokens.append(_Token("string", "string", src[pos + 1 : close], here))
                pos = close + 1
            elif char == "'":
                rune, pos = self._rune(pos, here)
                tokens.append(_Token("number", "rune", rune, here))
            elif char == "$":
                ident = _IDENT.match(src, pos + 1)
                name = "$" + (ident.group() if ident else "")
                pos = ident.end() if ident else pos + 1
                fields = _FIELDS.match(src, pos)
                chain: tuple[str, ...] = ()
                if fields:
                    chain = _names(fields.group())
                    pos = fields.end()
                tokens.append(_Token("var", name, chain, here))
            elif char == "." and not src[pos + 1 : pos + 2].isdigit():
                fields = _FIELDS.match(src, pos)
                if fields:
                    tokens.append(_Token("field", fields.group(), _names(fields.group()), here))
                    pos = fields.end()
                else:
                    tokens.append(_Token("dot", ".", line=here))
                    pos += 1
            elif char.isdigit() or (char in "+-." and src[pos + 1 : pos + 2].isdigit()):
                number = _NUMBER.match(src, pos)
                if number is None:
                    raise self.error(here, "bad number syntax")
                tokens.append(_Token("number", number.group(), _number(number.group()), here))
                pos = number.end()
                if pos < n and (src[pos].isalnum() or src[pos] == "_"):
                    raise self.error(here, "bad number syntax")
            else:
                ident = _IDENT.match(src, pos)
                if ident is None:
                    raise self.error(here, f"unexpected {char!r} in action")
                word = ident.group()
                pos = ident.end()
                if word in ("true", "false"):
                    tokens.append(_Token("bool", word, word == "true", here))
                elif word == "nil":
                    tokens.append(_Token("nil", word, None, here))
                elif word in _KEYWORDS:
                    tokens.append(_Token("keyword", word, line=here))
                else:
                    tokens.append(_Token("ident", word, line=here))

    def _quoted(self, pos: int, line: int) -> tuple[str, int]:
        src = self.source
        out: list[str] = []
        i = pos + 1
        while True:
            if i >= len(src) or src[i] == "\n":
                raise self.error(line, "unterminated quoted string")
            char = src[i]
            if char == '"':
                return "".join(out), i + 1
            if char != "\\":
                out.append(char)
                i += 1
                continue
            value, i = self._escape(i, line)
            out.append(value)

    def _escape(self, i: int, line: int) -> tuple[str, int]:
        src = self.source
        code = src[i + 1 : i + 2]
        if code in _ESCAPES:
            return _ESCAPES[code], i + 2
        width = {"x": 2, "u": 4, "U": 8}.get(code)
        if width:
            digits = src[i + 2 : i + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise self.error(line, "invalid escape in string")
            number = int(digits, 16)
            if code == "x":
                return go_str(bytes([number])), i + 2 + width
            return chr(number), i + 2 + width
        if code and code in "01234567":
            digits = src[i + 1 : i + 4]
            if len(digits) != 3 or not all(c in "01234567" for c in digits):
                raise self.error(line, "invalid escape in string")
            return go_str(bytes([int(digits, 8) & 0xFF])), i + 4
        raise self.error(line, "invalid escape in string")

    def _rune(self, pos: int, line: int) -> tuple[int, int]:
        src = self.source
        if src[pos + 1 : pos + 2] == "\\":
            value, end = self._escape(pos + 1, line)
        else:
            value, end = src[pos + 1 : pos + 2], pos + 2
        if len(value) != 1 or src[end : end + 1] != "'":
            raise self.error(line, "malformed character constant")
        return ord(value), end + 1


def _names(chain: str) -> tuple[str, ...]:
    return tuple(chain.lstrip(".").split("."))


def _number(text: str) -> int | float:
    clean = text.replace("_", "")
    sign = -1 if clean.startswith("-") else 1
    body = clean.lstrip("+-")
    lower = body.lower()
    try:
        if lower.startswith("0x"):
            return sign * int(body[2:], 16)
        if lower.startswith("0o"):
            return sign * int(body[2:], 8)
        if lower.startswith("0b"):
            return sign * int(body[2:], 2)
        if re.fullmatch(r"0[0-7]+", body):
            return sign * int(body, 8)
        if re.fullmatch(r"\d+", body):
            return sign * int(body)
        return sign * float(body)
    except ValueError:
        raise GoTemplateError(f"bad number syntax: {text!r}") from None


# -- the tree -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Operand:
    kind: str
    """field (from dot), dot, var, func, literal, pipe (parenthesised)."""
    value: Any = None
    chain: tuple[str, ...] = ()
    line: int = 1


@dataclass(frozen=True)
class _Command:
    operands: tuple[_Operand, ...]
    line: int


@dataclass(frozen=True)
class _Pipeline:
    commands: tuple[_Command, ...]
    declare: tuple[str, ...] = ()
    assign: bool = False
    line: int = 1


@dataclass(frozen=True)
class _Print:
    pipeline: _Pipeline


@dataclass(frozen=True)
class _If:
    branches: tuple[tuple[_Pipeline, tuple[Any, ...]], ...]
    otherwise: tuple[Any, ...]


@dataclass(frozen=True)
class _With:
    branches: tuple[tuple[_Pipeline, tuple[Any, ...]], ...]
    otherwise: tuple[Any, ...]


@dataclass(frozen=True)
class _Range:
    pipeline: _Pipeline
    body: tuple[Any, ...]
    otherwise: tuple[Any, ...]
    line: int


@dataclass(frozen=True)
class _Jump:
    kind: str  # break | continue
    line: int


@dataclass(frozen=True)
class Template:
    """A parsed template: execute it with :func:`execute`."""

    name: str
    nodes: tuple[Any, ...]
    functions: Mapping[str, Function] = field(repr=False)


class _Parser:
    def __init__(self, lexer: _Lexer, functions: Mapping[str, Function]) -> None:
        self.lexer = lexer
        self.items = lexer.items()
        self.pos = 0
        self.functions = functions
        self.loops = 0

    def error(self, line: int, message: str) -> GoTemplateError:
        return self.lexer.error(line, message)

    def nodes(self, stop: frozenset[str], depth: int) -> tuple[list[Any], _ActionSource | None]:
        """Parse until an action whose first word is in ``stop``; return it unconsumed."""
        if depth > _MAX_DEPTH:
            raise self.error(1, "template nested too deeply")
        out: list[Any] = []
        while self.pos < len(self.items):
            item = self.items[self.pos]
            if isinstance(item, _Text):
                out.append(item)
                self.pos += 1
                continue
            tokens = item.tokens
            if not tokens:
                raise self.error(item.line, "missing value for command")
            head = tokens[0]
            if head.kind == "keyword" and head.text in stop:
                return out, item
            self.pos += 1
            if head.kind != "keyword":
                out.append(_Print(self.pipeline(list(tokens), item.line, depth)))
                continue
            word = head.text
            if word == "if":
                out.append(self.conditional(_If, list(tokens[1:]), item.line, depth))
            elif word == "with":
                out.append(self.conditional(_With, list(tokens[1:]), item.line, depth))
            elif word == "range":
                out.append(self.range(list(tokens[1:]), item.line, depth))
            elif word in ("break", "continue"):
                if len(tokens) != 1:
                    raise self.error(item.line, f"unexpected token after {word}")
                if not self.loops:
                    raise self.error(item.line, f"{{{{{word}}}}} outside {{{{range}}}}")
                out.append(_Jump(word, item.line))
            elif word in ("define", "template", "block"):
                raise self.error(item.line, f"{{{{{word}}}}} is not supported")
            else:
                raise self.error(item.line, f"unexpected {{{{{word}}}}}")
        return out, None

    def conditional(
        self, kind: type[_If | _With], tokens: list[_Token], line: int, depth: int
    ) -> Any:
        word = "if" if kind is _If else "with"
        branches: list[tuple[_Pipeline, tuple[Any, ...]]] = []
        pipeline = self.pipeline(tokens, line, depth, allow_declare=True)
        while True:
            body, closer = self.nodes(frozenset({"else", "end"}), depth + 1)
            branches.append((pipeline, tuple(body)))
            if closer is None:
                raise self.error(line, f"unexpected EOF: {{{{{word}}}}} has no {{{{end}}}}")
            self.pos += 1
            rest = list(closer.tokens[1:])
            if closer.tokens[0].text == "end":
                if rest:
                    raise self.error(closer.line, "unexpected token after end")
                return kind(tuple(branches), ())
            if rest and rest[0].kind == "keyword" and rest[0].text == word:
                pipeline = self.pipeline(rest[1:], closer.line, depth, allow_declare=True)
                continue
            if rest:
                raise self.error(closer.line, "unexpected token after else")
            otherwise, end = self.nodes(frozenset({"else", "end"}), depth + 1)
            if end is None or end.tokens[0].text != "end" or len(end.tokens) != 1:
                raise self.error(
                    line, f"expected {{{{end}}}} after the {{{{else}}}} of {{{{{word}}}}}"
                )
            self.pos += 1
            return kind(tuple(branches), tuple(otherwise))

    def range(self, tokens: list[_Token], line: int, depth: int) -> _Range:
        pipeline = self.pipeline(tokens, line, depth, allow_declare=True, range_vars=True)
        self.loops += 1
        try:
            body, closer = self.nodes(frozenset({"else", "end"}), depth + 1)
            if closer is None:
                raise self.error(line, "unexpected EOF: {{range}} has no {{end}}")
            self.pos += 1
            otherwise: list[Any] = []
        finally:
            self.loops -= 1
        if closer.tokens[0].text == "else":
            if len(closer.tokens) != 1:
                raise self.error(closer.line, "unexpected token after else")
            otherwise, end = self.nodes(frozenset({"else", "end"}), depth + 1)
            if end is None or end.tokens[0].text != "end" or len(end.tokens) != 1:
                raise self.error(line, "expected {{end}} after the {{else}} of {{range}}")
            self.pos += 1
        elif len(closer.tokens) != 1:
            raise self.error(closer.line, "unexpected token after end")
        return _Range(pipeline, tuple(body), tuple(otherwise), line)

    def pipeline(
        self,
        tokens: list[_Token],
        line: int,
        depth: int,
        *,
        allow_declare: bool = True,
        range_vars: bool = False,
    ) -> _Pipeline:
        declare: tuple[str, ...] = ()
        assign = False
        for i, token in enumerate(tokens):
            if token.kind in ("declare", "assign"):
                names = tokens[:i]
                wanted = [t for t in names if t.kind != "comma"]
                if (
                    not allow_declare
                    or not wanted
                    or any(t.kind != "var" or t.value for t in wanted)
                    or len(wanted) > (2 if range_vars else 1)
                    or len(names) != 2 * len(wanted) - 1
                ):
                    raise self.error(line, "bad variable declaration")
                declare = tuple(t.text for t in wanted)
                assign = token.kind == "assign"
                tokens = tokens[i + 1 :]
                break
            if token.kind not in ("var", "comma"):
                break
        commands, rest = self.commands(tokens, line, depth)
        if rest:
            raise self.error(line, f"unexpected {rest[0].text!r} in operand")
        if not commands:
            raise self.error(line, "missing value for command")
        return _Pipeline(tuple(commands), declare, assign, line)

    def commands(
        self, tokens: list[_Token], line: int, depth: int
    ) -> tuple[list[_Command], list[_Token]]:
        """Commands separated by ``|`` until a ``)`` (returned in the rest) or the end."""
        if depth > _MAX_DEPTH:
            raise self.error(line, "template nested too deeply")
        commands: list[_Command] = []
        operands: list[_Operand] = []
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token.kind == "rparen":
                break
            if token.kind == "pipe":
                if not operands:
                    raise self.error(token.line, "missing command before |")
                commands.append(_Command(tuple(operands), token.line))
                operands = []
                i += 1
                continue
            if token.kind == "lparen":
                inner, rest = self.commands(tokens[i + 1 :], token.line, depth + 1)
                if not rest or rest[0].kind != "rparen":
                    raise self.error(token.line, "unclosed left paren")
                if not inner:
                    raise self.error(token.line, "missing value in parentheses")
                consumed = len(tokens) - (i + 1) - len(rest)
                i += consumed + 2
                chain: tuple[str, ...] = ()
                if i < len(tokens) and tokens[i].kind == "chain":
                    chain = tokens[i].value
                    i += 1
                operands.append(
                    _Operand("pipe", _Pipeline(tuple(inner), line=token.line), chain, token.line)
                )
                continue
            operands.append(self.operand(token))
            i += 1
        if operands:  # a trailing "|" with nothing after it is accepted, as Go's parser does
            commands.append(_Command(tuple(operands), line))
        return commands, tokens[i:]

    def operand(self, token: _Token) -> _Operand:
        if token.kind == "field":
            return _Operand("field", chain=token.value, line=token.line)
        if token.kind == "dot":
            return _Operand("dot", line=token.line)
        if token.kind == "var":
            return _Operand("var", token.text, token.value, token.line)
        if token.kind in ("string", "number", "bool", "nil"):
            return _Operand("literal", token.value, line=token.line)
        if token.kind == "ident":
            if token.text not in self.functions and token.text not in _BUILTINS:
                raise self.error(token.line, f'function "{token.text}" not defined')
            return _Operand("func", token.text, line=token.line)
        raise self.error(token.line, f"unexpected {token.text!r} in command")


def parse(source: str, *, name: str, functions: Mapping[str, Function]) -> Template:
    """Parse ``source``; unknown functions, ``define``/``template`` and syntax errors raise now."""
    parser = _Parser(_Lexer(source, name), functions)
    nodes, stray = parser.nodes(frozenset({"else", "end"}), 0)
    if stray is not None:
        raise parser.error(stray.line, f"unexpected {{{{{stray.tokens[0].text}}}}}")
    return Template(name=name, nodes=tuple(nodes), functions=functions)


# -- execution ------------------------------------------------------------------------------


class _State:
    def __init__(self, template: Template, root: Any, max_output: int, max_steps: int) -> None:
        self.template = template
        self.root = root
        self.scopes: list[dict[str, Any]] = [{"$": root}]
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.max_output = max_output
        self.max_steps = max_steps

    def error(self, line: int, message: str) -> GoTemplateError:
        return GoTemplateError(f"template {self.template.name}:{line}: {message}")

    def step(self, line: int) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise self.error(line, f"too much work (more than {self.max_steps} steps)")

    def write(self, text: str, line: int) -> None:
        self.size += len(text)
        if self.size > self.max_output:
            raise self.error(line, f"output larger than {self.max_output} bytes")
        self.out.append(text)

    def lookup(self, name: str, line: int) -> Any:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        raise self.error(line, f"undefined variable {name}")

    def set(self, name: str, value: Any, line: int) -> None:
        for scope in reversed(self.scopes):
            if name in scope:
                scope[name] = value
                return
        raise self.error(line, f"undefined variable {name}")


def execute(
    template: Template,
    data: Any,
    *,
    max_output: int = MAX_OUTPUT,
    max_steps: int = MAX_STEPS,
) -> str:
    """Run ``template`` with ``data`` as the dot (and ``$``); missing map keys are errors."""
    state = _State(template, data, max_output, max_steps)
    try:
        _walk(state, template.nodes, data)
    except RecursionError:
        raise GoTemplateError(f"template {template.name}: nested too deeply") from None
    return "".join(state.out)


def _walk(state: _State, nodes: Sequence[Any], dot: Any) -> None:
    for node in nodes:
        if isinstance(node, _Text):
            state.write(node.text, 0)
        elif isinstance(node, _Print):
            value = _pipeline(state, node.pipeline, dot)
            if not node.pipeline.declare:
                state.write(format_value(value), node.pipeline.line)
        elif isinstance(node, _If | _With):
            _conditional(state, node, dot)
        elif isinstance(node, _Range):
            _range(state, node, dot)
        elif isinstance(node, _Jump):
            raise _BreakError() if node.kind == "break" else _ContinueError()


def _conditional(state: _State, node: _If | _With, dot: Any) -> None:
    state.scopes.append({})
    try:
        for pipeline, body in node.branches:
            value = _pipeline(state, pipeline, dot)
            if truth(value):
                state.scopes.append({})
                try:
                    _walk(state, body, value if isinstance(node, _With) else dot)
                finally:
                    state.scopes.pop()
                return
        state.scopes.append({})
        try:
            _walk(state, node.otherwise, dot)
        finally:
            state.scopes.pop()
    finally:
        state.scopes.pop()


def _range_items(state: _State, value: Any, line: int) -> Iterator[tuple[Any, Any]]:
    if value is None:
        return
    if isinstance(value, Mapping):
        yield from _sorted_items(value)
    elif isinstance(value, list | tuple):
        yield from enumerate(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise state.error(line, "range over a negative integer")
        for number in range(value):
            yield number, number
    else:
        raise state.error(line, f"range can't iterate over a {_kind(value)}")


def _range(state: _State, node: _Range, dot: Any) -> None:
    pipeline = node.pipeline
    state.scopes.append({})
    try:
        value = _pipeline(state, _Pipeline(pipeline.commands, line=pipeline.line), dot)
        ran = False
        for key, element in _range_items(state, value, node.line):
            ran = True
            state.step(node.line)
            scope: dict[str, Any] = {}
            if len(pipeline.declare) == 1:
                if isinstance(value, int) and not isinstance(value, bool):
                    scope[pipeline.declare[0]] = key
                else:
                    scope[pipeline.declare[0]] = element
            elif len(pipeline.declare) == 2:
                scope[pipeline.declare[0]] = key
                scope[pipeline.declare[1]] = element
            state.scopes.append(scope)
            try:
                _walk(state, node.body, element)
            except _ContinueError:
                continue
            except _BreakError:
                break
            finally:
                state.scopes.pop()
        if not ran:
            _walk(state, node.otherwise, dot)
    finally:
        state.scopes.pop()


def _pipeline(state: _State, pipeline: _Pipeline, dot: Any) -> Any:
    value: Any = None
    first = True
    for command in pipeline.commands:
        value = _command(state, command, dot, None if first else (value,))
        first = False
    if pipeline.declare:
        if pipeline.assign:
            state.set(pipeline.declare[0], value, pipeline.line)
        else:
            state.scopes[-1][pipeline.declare[0]] = value
    return value


def _command(state: _State, command: _Command, dot: Any, final: tuple[Any] | None) -> Any:
    state.step(command.line)
    head, *args = command.operands
    if head.kind == "func":
        return _call(state, head.value, args, dot, final, command.line)
    if args or final is not None:
        raise state.error(command.line, "can't give argument to non-function")
    if head.kind == "literal" and head.value is None:
        raise state.error(command.line, "nil is not a command")
    return _operand(state, head, dot)


def _operand(state: _State, operand: _Operand, dot: Any) -> Any:
    if operand.kind == "literal":
        return operand.value
    if operand.kind == "dot":
        return dot
    if operand.kind == "field":
        return _fields(state, dot, operand.chain, operand.line)
    if operand.kind == "var":
        return _fields(
            state, state.lookup(operand.value, operand.line), operand.chain, operand.line
        )
    if operand.kind == "pipe":
        return _fields(state, _pipeline(state, operand.value, dot), operand.chain, operand.line)
    if operand.kind == "func":
        return _call(state, operand.value, [], dot, None, operand.line)
    raise state.error(operand.line, "unexpected operand")


def _fields(state: _State, value: Any, chain: Sequence[str], line: int) -> Any:
    for name in chain:
        if isinstance(value, Mapping):
            if name not in value:
                raise state.error(line, f'map has no entry for key "{name}"')
            value = value[name]
        elif value is None:
            raise state.error(line, f"nil pointer evaluating .{name}")
        else:
            raise state.error(line, f"can't evaluate field {name} in type {_kind(value)}")
    return value


def _call(
    state: _State,
    name: str,
    operands: Sequence[_Operand],
    dot: Any,
    final: tuple[Any] | None,
    line: int,
) -> Any:
    if name in ("and", "or"):
        if not operands and final is None:
            raise state.error(line, f"wrong number of args for {name}: want at least 1 got 0")
        value: Any = None
        for op in operands:  # short-circuit: later operands are not evaluated
            value = _operand(state, op, dot)
            if truth(value) != (name == "and"):
                return value
        if final is not None:
            value = final[0]
        return value
    args = [_operand(state, op, dot) for op in operands]
    if final is not None:
        args.append(final[0])
    function = state.template.functions.get(name) or _BUILTINS.get(name)
    if function is None:
        raise state.error(line, f'function "{name}" not defined')
    try:
        return function(*args)
    except GoTemplateError as exc:
        raise state.error(line, f"error calling {name}: {_reason(exc)}") from None
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, OverflowError):
        raise state.error(line, f"error calling {name}: invalid arguments") from None


def _reason(exc: GoTemplateError) -> str:
    return str(exc).removeprefix("template ").split(": ", 1)[-1] if str(exc) else "failed"


# -- Go's built-in functions ------------------------------------------------------------------


def _number_kind(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _comparable(a: Any, b: Any, name: str) -> None:
    if _number_kind(a) and _number_kind(b):
        return
    if _kind(a) != _kind(b) or _kind(a) in ("map", "slice"):
        raise GoTemplateError(f"{name}: incompatible types for comparison")


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise GoTemplateError("eq: missing arguments for comparison")
    for other in others:
        if first is None or other is None:
            if first is other:
                return True
            continue
        _comparable(first, other, "eq")
        if first == other:
            return True
    return False


def _ne(a: Any, b: Any) -> bool:
    return not _eq(a, b)


def _ordered(name: str, compare: Callable[[Any, Any], bool]) -> Function:
    def check(a: Any, b: Any) -> bool:
        _comparable(a, b, name)
        if _kind(a) not in ("int", "float64", "string") and not (_number_kind(a)):
            raise GoTemplateError(f"{name}: invalid type for comparison")
        return compare(a, b)

    return check


def _len(value: Any) -> int:
    if isinstance(value, str):
        return len(go_bytes(value))
    if isinstance(value, list | tuple | Mapping):
        return len(value)
    raise GoTemplateError(f"len of type {_kind(value)}")


def _int_index(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GoTemplateError("cannot index slice/array with a non-integer")
    return value


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, Mapping):
            if key in value:
                value = value[key]
            else:
                value = "" if isinstance(value, StringMap) else None
        elif isinstance(value, list | tuple):
            position = _int_index(key)
            if not 0 <= position < len(value):
                raise GoTemplateError("index out of range")
            value = value[position]
        elif isinstance(value, str):
            position = _int_index(key)
            raw = go_bytes(value)
            if not 0 <= position < len(raw):
                raise GoTemplateError("index out of range")
            value = raw[position]
        elif value is None:
            raise GoTemplateError("index of untyped nil")
        else:
            raise GoTemplateError(f"can't index item of type {_kind(value)}")
    return value


def _slice(value: Any, *bounds: Any) -> Any:
    if len(bounds) > 2:
        raise GoTemplateError("too many slice indexes")
    if isinstance(value, str):
        raw = go_bytes(value)
        start, end = _bounds(bounds, len(raw))
        return go_str(raw[start:end])
    if isinstance(value, list | tuple):
        start, end = _bounds(bounds, len(value))
        return list(value[start:end])
    raise GoTemplateError(f"can't slice item of type {_kind(value)}")


def _bounds(bounds: Sequence[Any], size: int) -> tuple[int, int]:
    start = _int_index(bounds[0]) if bounds else 0
    end = _int_index(bounds[1]) if len(bounds) > 1 else size
    if not 0 <= start <= end <= size:
        raise GoTemplateError("slice index out of range")
    return start, end


def _sprint(*args: Any) -> str:
    out: list[str] = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(format_value(arg) if arg is not None else "<nil>")
    return "".join(out)


def _sprintln(*args: Any) -> str:
    return " ".join(format_value(a) if a is not None else "<nil>" for a in args) + "\n"


_VERB: Final = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*))?([a-zA-Z%])")


def sprintf(fmt: str, *args: Any) -> str:
    """Go's ``fmt.Sprintf`` for the verbs templates use: ``%s %v %d %q %x %X %o %b %c %f %e %g %t %%``.

    A verb that does not fit its operand is an error (Go writes ``%!d(string=...)``
    into the output instead).
    """
    if not isinstance(fmt, str):
        raise GoTemplateError("printf: the format must be a string")
    queue = list(args)

    def verb(match: re.Match[str]) -> str:
        flags, width, precision, letter = match.groups()
        if letter == "%":
            return "%"
        if not queue:
            return f"%!{letter}(MISSING)"
        value = queue.pop(0)
        text = _format_verb(letter, value, precision)
        if width and width != "*":
            size = int(width)
            if "-" in flags:
                text = text.ljust(size)
            elif "0" in flags and letter in "dfxX" and _number_kind(value):
                sign = "-" if text.startswith("-") else ""
                text = sign + text.lstrip("-").rjust(size - len(sign), "0")
            else:
                text = text.rjust(size)
        return text

    result = _VERB.sub(verb, fmt)
    if queue:
        result += "%!(EXTRA)"
    return result


def _format_verb(letter: str, value: Any, precision: str | None) -> str:
    if letter in ("v", "s"):
        if letter == "s" and not isinstance(value, str) and _number_kind(value):
            raise GoTemplateError("printf: %s needs a string")
        text = format_value(value) if value is not None else "<nil>"
        return text[: int(precision)] if letter == "s" and precision else text
    if letter == "d":
        if not isinstance(value, int) or isinstance(value, bool):
            raise GoTemplateError("printf: %d needs an integer")
        return str(value)
    if letter == "q":
        if isinstance(value, str):
            return go_quote(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return "'" + go_quote(chr(value))[1:-1].replace("'", "\\'") + "'"
        raise GoTemplateError("printf: %q needs a string")
    if letter in ("x", "X"):
        if isinstance(value, str):
            text = go_bytes(value).hex()
        elif isinstance(value, int) and not isinstance(value, bool):
            text = format(value, "x")
        else:
            raise GoTemplateError(f"printf: %{letter} needs a string or an integer")
        return text.upper() if letter == "X" else text
    if letter in ("f", "F", "e", "g"):
        if not _number_kind(value):
            raise GoTemplateError(f"printf: %{letter} needs a number")
        digits = int(precision) if precision else 6
        if letter == "g" and not precision:
            return _go_float(float(value))
        return format(float(value), f".{digits}{letter.lower()}")
    if letter in ("o", "b", "c"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise GoTemplateError(f"printf: %{letter} needs an integer")
        if letter == "c":
            if not 0 <= value <= 0x10FFFF:
                return "\ufffd"
            return chr(value)
        return format(value, letter)
    if letter == "t":
        if not isinstance(value, bool):
            raise GoTemplateError("printf: %t needs a bool")
        return "true" if value else "false"
    raise GoTemplateError(f"printf: verb %{letter} is not supported")


def _html(*args: Any) -> str:
    return (
        html_lib.escape(_sprint(*args), quote=True)
        .replace("&#x27;", "&#39;")
        .replace("\0", "\ufffd")
    )


def _urlquery(*args: Any) -> str:
    return urllib.parse.quote_plus(go_bytes(_sprint(*args)), safe="")


def _not(value: Any) -> bool:
    return not truth(value)


_BUILTINS: Final[Mapping[str, Function]] = {
    "not": _not,
    "eq": _eq,
    "ne": _ne,
    "lt": _ordered("lt", lambda a, b: a < b),
    "le": _ordered("le", lambda a, b: a <= b),
    "gt": _ordered("gt", lambda a, b: a > b),
    "ge": _ordered("ge", lambda a, b: a >= b),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": _sprint,
    "printf": sprintf,
    "println": _sprintln,
    "html": _html,
    "urlquery": _urlquery,
    # and/or are evaluated lazily by _call; listed so parse() knows them
    "and": _not,
    "or": _not,
}
