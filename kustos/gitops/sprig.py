"""The sprig functions External Secrets templates call, for :mod:`kustos.gitops.gotext`.

External Secrets adds the sprig library (and a few functions of its own) to
Go's templates. :data:`SPRIG` holds the part of sprig such templates use,
each with sprig's argument order (the piped value comes last:
``{{ .x | replace "a" "b" }}`` is ``replace "a" "b" .x``) and sprig's
results; :func:`eso_functions` adds External Secrets' ``toYaml``,
``fromYaml`` and ``filterPEM``.

Supported: strings (``trim trimAll trimPrefix trimSuffix upper lower title
untitle repeat substr nospace trunc contains hasPrefix hasSuffix quote squote
cat indent nindent replace splitList split join sortAlpha toString``),
encodings (``b64enc b64dec b32enc b32dec``), hashes (``sha1sum sha256sum
sha512sum adler32sum``), JSON (``toJson toPrettyJson toRawJson fromJson`` and
the ``must*`` forms), defaults (``default empty coalesce ternary all any
compact``), dicts (``dict get set unset hasKey keys values pick omit dig``),
lists (``list tuple first last rest initial append push prepend reverse uniq
has without concat until``), integers (``add add1 sub mul div mod max min
atoi int int64 float64``), paths (``base dir ext clean``) and ``fail``.

Not supported (a template naming one is refused when parsed): dates and
``now``, random values (``randAlphaNum``, ``uuidv4``: they would change the
Secret at every refresh), cryptography and certificates (``genCA``,
``bcrypt``, ``htpasswd``, ``encryptAES``, External Secrets' ``pkcs12*``,
``jwk*``, ``rsaDecrypt``), regular expressions (a tenant's pattern must not
be able to stall the controller with backtracking), semver, ``env``.

Differences, deliberate: ``b64dec``/``b32dec`` of invalid input is an error
(sprig returns the error text as the value); ``fail`` stops the template
without its message reaching the status (the message could hold a secret).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import posixpath
import re
import zlib
from collections.abc import Mapping
from typing import Any, Final

import yaml

from kustos.gitops.gotext import (
    MAX_OUTPUT,
    Function,
    GoTemplateError,
    format_value,
    go_bytes,
    go_quote,
    go_str,
    is_empty,
)

__all__ = ["SPRIG", "eso_functions", "go_json"]


def _want_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise GoTemplateError(f"{name}: wrong type for value; expected string")
    return value


def _want_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GoTemplateError(f"{name}: wrong type for value; expected int")
    return value


def _strval(value: Any) -> str:
    return value if isinstance(value, str) else format_value(value)


def _strslice(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [_strval(v) for v in value if v is not None]
    if value is None:
        return []
    return [_strval(value)]


def _to_int(value: Any) -> int:
    """cast.ToInt64: numbers truncate, numeric strings parse, anything else is 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip(), 0) if value.strip() else 0
        except ValueError:
            try:
                return int(float(value))
            except ValueError:
                return 0
    return 0


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return 0.0
    return 0.0


def _bounded(text: str) -> str:
    if len(text) > MAX_OUTPUT:
        raise GoTemplateError(f"result larger than {MAX_OUTPUT} bytes")
    return text


# -- strings ------------------------------------------------------------------------------


def _title(text: str) -> str:
    return re.sub(r"(?<![\w'])(\w)", lambda m: m.group(1).upper(), text)


def _untitle(text: str) -> str:
    return re.sub(r"(?<![\w'])(\w)", lambda m: m.group(1).lower(), text)


def _repeat(count: Any, text: Any) -> str:
    times = _want_int(count, "repeat")
    unit = _want_str(text, "repeat")
    if times < 0:
        raise GoTemplateError("repeat: negative count")
    if times * len(unit) > MAX_OUTPUT:
        raise GoTemplateError(f"repeat: result larger than {MAX_OUTPUT} bytes")
    return unit * times


def _substr(start: Any, end: Any, text: Any) -> str:
    raw = go_bytes(_want_str(text, "substr"))
    start, end = _want_int(start, "substr"), _want_int(end, "substr")
    if start < 0:
        start = 0
    elif end < 0 or end > len(raw):
        end = len(raw)
    if not 0 <= start <= end <= len(raw):  # where Go's s[start:end] panics
        raise GoTemplateError("substr: slice bounds out of range")
    return go_str(raw[start:end])


def _path_clean(path: str) -> str:
    """Go's ``path.Clean`` (``posixpath.normpath`` keeps a leading ``//``; Go does not)."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _path_dir(path: str) -> str:
    """Go's ``path.Dir``: everything up to the last slash, cleaned (``.`` without a slash)."""
    head, slash, _ = path.rpartition("/")
    return _path_clean(head + slash)


def _path_base(path: str) -> str:
    """Go's ``path.Base``: the last element; ``.`` for an empty path, ``/`` for only slashes."""
    if not path:
        return "."
    path = path.rstrip("/")
    return path.rpartition("/")[2] if path else "/"


def _path_ext(path: str) -> str:
    """Go's ``path.Ext``: from the last dot of the last element (``.bashrc`` included)."""
    last = path.rpartition("/")[2]
    dot = last.rfind(".")
    return last[dot:] if dot >= 0 else ""


def _slice(values: Any, *indices: Any) -> Any:
    """sprig's ``slice`` (it replaces Go's built-in): lists only; ``nil`` for an empty list."""
    if not isinstance(values, list | tuple):
        raise GoTemplateError("slice: the value should be a list (sprig's slice takes no string)")
    if not values:
        return None
    start = _to_int(indices[0]) if indices else 0
    end = _to_int(indices[1]) if len(indices) > 1 else len(values)
    if not 0 <= start <= end <= len(values):
        raise GoTemplateError("slice: slice bounds out of range")
    return list(values[start:end])


def _trunc(count: Any, text: Any) -> str:
    raw = go_bytes(_want_str(text, "trunc"))
    count = _want_int(count, "trunc")
    if count >= 0 and len(raw) > count:
        return go_str(raw[:count])
    if count < 0 and len(raw) > -count:
        return go_str(raw[len(raw) + count :])
    return go_str(raw)


def _indent(spaces: Any, text: Any) -> str:
    pad = " " * _want_int(spaces, "indent")
    return _bounded(pad + _want_str(text, "indent").replace("\n", "\n" + pad))


def _split(sep: Any, text: Any) -> dict[str, str]:
    parts = _want_str(text, "split").split(_want_str(sep, "split"))
    return {f"_{i}": part for i, part in enumerate(parts)}


def _split_list(sep: Any, text: Any) -> list[str]:
    sep, text = _want_str(sep, "splitList"), _want_str(text, "splitList")
    return list(text) if sep == "" else text.split(sep)


# -- encodings and hashes --------------------------------------------------------------------


def _b64dec(text: Any) -> str:
    try:
        return go_str(base64.b64decode(go_bytes(_want_str(text, "b64dec")), validate=True))
    except binascii.Error:
        raise GoTemplateError("b64dec: the input is not valid base64") from None


def _b32dec(text: Any) -> str:
    try:
        return go_str(base64.b32decode(go_bytes(_want_str(text, "b32dec"))))
    except binascii.Error:
        raise GoTemplateError("b32dec: the input is not valid base32") from None


def _digest(name: str) -> Function:
    def digest(text: Any) -> str:
        return hashlib.new(name, go_bytes(_want_str(text, f"{name}sum"))).hexdigest()

    return digest


# -- JSON and YAML ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return go_bytes(value).decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {_strval(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def go_json(value: Any, *, indent: int | None = None, escape_html: bool = True) -> str:
    """``encoding/json``: sorted keys, compact (or indented), ``<>&`` escaped unless asked not to."""
    text = json.dumps(
        _plain(value),
        sort_keys=True,
        ensure_ascii=False,
        indent=indent,
        separators=(",", ": ") if indent else (",", ":"),
    )
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if escape_html:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return _bounded(text)


def _from_json(text: Any) -> Any:
    try:
        return json.loads(_want_str(text, "fromJson"), parse_int=float)
    except ValueError:
        return None


def _must_from_json(text: Any) -> Any:
    try:
        return json.loads(_want_str(text, "mustFromJson"), parse_int=float)
    except ValueError:
        raise GoTemplateError("mustFromJson: the input is not valid JSON") from None


def _to_yaml(value: Any) -> str:
    text = yaml.safe_dump(
        _plain(value), sort_keys=True, default_flow_style=False, allow_unicode=True
    )
    return _bounded(text.removesuffix("\n").removesuffix("\n...").removesuffix("\n"))


def _from_yaml(text: Any) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(_want_str(text, "fromYaml"))
    except yaml.YAMLError:
        return {"Error": "fromYaml: the input is not valid YAML"}
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        return {"Error": "fromYaml: the input is not a YAML mapping"}
    return {_strval(k): v for k, v in loaded.items()}


_PEM_BLOCK: Final = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n((?:[A-Za-z0-9+/=\s]|[\w-]+:[^\n]*\n)*?)-----END \1-----"
)


def _filter_pem(pem_type: Any, text: Any) -> str:
    wanted = _want_str(pem_type, "filterPEM").lower()
    blocks = []
    found_any = False
    for match in _PEM_BLOCK.finditer(_want_str(text, "filterPEM")):
        found_any = True
        if match.group(1).lower() != wanted:
            continue
        body = "".join(line for line in match.group(2).splitlines() if ":" not in line)
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except binascii.Error:
            continue
        encoded = base64.b64encode(der).decode()
        lines = "\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64))
        blocks.append(
            f"-----BEGIN {match.group(1)}-----\n{lines}\n-----END {match.group(1)}-----\n"
        )
    if not blocks and not found_any and text.strip():
        raise GoTemplateError("filterPEM: the input holds no PEM block")
    return "".join(blocks)


# -- defaults ------------------------------------------------------------------------------------


def _default(fallback: Any, *given: Any) -> Any:
    if not given or is_empty(given[0]):
        return fallback
    return given[0]


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if not is_empty(v)), None)


def _ternary(if_true: Any, if_false: Any, condition: Any) -> Any:
    if not isinstance(condition, bool):
        raise GoTemplateError("ternary: wrong type for value; expected bool")
    return if_true if condition else if_false


# -- dicts and lists ------------------------------------------------------------------------------


def _dict(*pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    items = list(pairs)
    if len(items) % 2:
        items.append("")
    for key, value in zip(items[::2], items[1::2], strict=True):
        out[_strval(key)] = value
    return out


def _want_dict(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GoTemplateError(f"{name}: wrong type for value; expected map")
    return value


def _want_list(value: Any, name: str) -> list[Any]:
    if isinstance(value, tuple):
        return list(value)
    if not isinstance(value, list):
        raise GoTemplateError(f"{name}: wrong type for value; expected list")
    return value


def _get(mapping: Any, key: Any) -> Any:
    return _want_dict(mapping, "get").get(_want_str(key, "get"), "")


def _set(mapping: Any, key: Any, value: Any) -> dict[str, Any]:
    target = _want_dict(mapping, "set")
    target[_want_str(key, "set")] = value
    return target


def _unset(mapping: Any, key: Any) -> dict[str, Any]:
    target = _want_dict(mapping, "unset")
    target.pop(_want_str(key, "unset"), None)
    return target


def _keys(*mappings: Any) -> list[str]:
    out: list[str] = []
    for mapping in mappings:
        out.extend(_want_dict(mapping, "keys"))
    return sorted(out)


def _values(mapping: Any) -> list[Any]:
    return [v for _, v in sorted(_want_dict(mapping, "values").items())]


def _pick(mapping: Any, *keys: Any) -> dict[str, Any]:
    source = _want_dict(mapping, "pick")
    return {k: source[k] for k in keys if isinstance(k, str) and k in source}


def _omit(mapping: Any, *keys: Any) -> dict[str, Any]:
    return {k: v for k, v in _want_dict(mapping, "omit").items() if k not in keys}


def _dig(*args: Any) -> Any:
    if len(args) < 3:
        raise GoTemplateError("dig: needs keys, a default and a map")
    *keys, fallback, mapping = args
    node: Any = _want_dict(mapping, "dig")
    for key in keys:
        if isinstance(node, dict) and _want_str(key, "dig") in node:
            node = node[key]
        else:
            return fallback
    return node


def _first(values: Any) -> Any:
    items = _want_list(values, "first")
    return items[0] if items else None


def _last(values: Any) -> Any:
    items = _want_list(values, "last")
    return items[-1] if items else None


def _uniq(values: Any) -> list[Any]:
    out: list[Any] = []
    for item in _want_list(values, "uniq"):
        if item not in out:
            out.append(item)
    return out


def _until(count: Any) -> list[int]:
    count = _want_int(count, "until")
    if abs(count) > 100_000:
        raise GoTemplateError("until: count too large")
    return list(range(count)) if count >= 0 else list(range(0, count, -1))


def _int_op(name: str) -> Function:
    def operate(a: Any, b: Any) -> int:
        x, y = _to_int(a), _to_int(b)
        if name == "sub":
            return x - y
        if y == 0:
            raise GoTemplateError(f"{name}: integer divide by zero")
        if name == "div":
            return int(x / y)  # Go truncates toward zero
        return x - y * int(x / y)  # mod: the sign of the dividend, as in Go

    return operate


def _mul(first: Any, *rest: Any) -> int:
    value = _to_int(first)
    for item in rest:
        value *= _to_int(item)
    return value


def _atoi(text: Any) -> int:
    text = _want_str(text, "atoi")
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else 0


def _fail(_message: Any = "") -> str:
    raise GoTemplateError("the template called fail")


def _all(*values: Any) -> bool:
    return all(not is_empty(v) for v in values)


def _any(*values: Any) -> bool:
    return any(not is_empty(v) for v in values)


SPRIG: Final[Mapping[str, Function]] = {
    # strings
    "trim": lambda s: _want_str(s, "trim").strip(" \t\n\r\v\f\u0085\u00a0"),
    "trimAll": lambda cut, s: _want_str(s, "trimAll").strip(_want_str(cut, "trimAll")),
    "trimall": lambda cut, s: _want_str(s, "trimall").strip(_want_str(cut, "trimall")),
    "trimPrefix": lambda p, s: _want_str(s, "trimPrefix").removeprefix(_want_str(p, "trimPrefix")),
    "trimSuffix": lambda p, s: _want_str(s, "trimSuffix").removesuffix(_want_str(p, "trimSuffix")),
    "upper": lambda s: _want_str(s, "upper").upper(),
    "lower": lambda s: _want_str(s, "lower").lower(),
    "title": lambda s: _title(_want_str(s, "title")),
    "untitle": lambda s: _untitle(_want_str(s, "untitle")),
    "repeat": _repeat,
    "substr": _substr,
    "nospace": lambda s: "".join(_want_str(s, "nospace").split()),
    "trunc": _trunc,
    "contains": lambda sub, s: _want_str(sub, "contains") in _want_str(s, "contains"),
    "hasPrefix": lambda p, s: _want_str(s, "hasPrefix").startswith(_want_str(p, "hasPrefix")),
    "hasSuffix": lambda p, s: _want_str(s, "hasSuffix").endswith(_want_str(p, "hasSuffix")),
    "quote": lambda *a: " ".join(go_quote(_strval(v)) for v in a if v is not None),
    "squote": lambda *a: " ".join(f"'{_strval(v)}'" for v in a if v is not None),
    "cat": lambda *a: " ".join(_strval(v) for v in a if v is not None),
    "indent": _indent,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "replace": lambda old, new, s: _bounded(
        _want_str(s, "replace").replace(_want_str(old, "replace"), _want_str(new, "replace"))
    ),
    "splitList": _split_list,
    "split": _split,
    "join": lambda sep, v: _bounded(_want_str(sep, "join").join(_strslice(v))),
    "sortAlpha": lambda v: sorted(_strslice(v)),
    "toString": _strval,
    # encodings and hashes
    "b64enc": lambda s: base64.b64encode(go_bytes(_want_str(s, "b64enc"))).decode(),
    "b64dec": _b64dec,
    "b32enc": lambda s: base64.b32encode(go_bytes(_want_str(s, "b32enc"))).decode(),
    "b32dec": _b32dec,
    "sha1sum": _digest("sha1"),
    "sha256sum": _digest("sha256"),
    "sha512sum": _digest("sha512"),
    "adler32sum": lambda s: str(zlib.adler32(go_bytes(_want_str(s, "adler32sum")))),
    # JSON
    "toJson": lambda v: go_json(v),
    "mustToJson": lambda v: go_json(v),
    "toPrettyJson": lambda v: go_json(v, indent=2),
    "mustToPrettyJson": lambda v: go_json(v, indent=2),
    "toRawJson": lambda v: go_json(v, escape_html=False),
    "mustToRawJson": lambda v: go_json(v, escape_html=False),
    "fromJson": _from_json,
    "mustFromJson": _must_from_json,
    # defaults and flow
    "default": _default,
    "empty": is_empty,
    "coalesce": _coalesce,
    "ternary": _ternary,
    "all": _all,
    "any": _any,
    "compact": lambda v: [x for x in _want_list(v, "compact") if not is_empty(x)],
    "fail": _fail,
    # dicts
    "dict": _dict,
    "get": _get,
    "set": _set,
    "unset": _unset,
    "hasKey": lambda m, k: _want_str(k, "hasKey") in _want_dict(m, "hasKey"),
    "keys": _keys,
    "values": _values,
    "pick": _pick,
    "omit": _omit,
    "dig": _dig,
    # lists
    "list": lambda *v: list(v),
    "tuple": lambda *v: list(v),
    "first": _first,
    "last": _last,
    "rest": lambda v: _want_list(v, "rest")[1:],
    "initial": lambda v: _want_list(v, "initial")[:-1],
    "append": lambda v, x: [*_want_list(v, "append"), x],
    "push": lambda v, x: [*_want_list(v, "push"), x],
    "prepend": lambda v, x: [x, *_want_list(v, "prepend")],
    "reverse": lambda v: _want_list(v, "reverse")[::-1],
    "uniq": _uniq,
    "has": lambda needle, v: needle in _want_list(v, "has"),
    "without": lambda v, *drop: [x for x in _want_list(v, "without") if x not in drop],
    "concat": lambda *lists: [x for v in lists for x in _want_list(v, "concat")],
    "until": _until,
    # integers
    "add": lambda *v: sum(_to_int(x) for x in v),
    "add1": lambda v: _to_int(v) + 1,
    "sub": _int_op("sub"),
    "div": _int_op("div"),
    "mod": _int_op("mod"),
    "mul": _mul,
    "max": lambda first, *rest: max(_to_int(x) for x in (first, *rest)),
    "biggest": lambda first, *rest: max(_to_int(x) for x in (first, *rest)),
    "min": lambda first, *rest: min(_to_int(x) for x in (first, *rest)),
    "atoi": _atoi,
    "int": _to_int,
    "int64": _to_int,
    "float64": _to_float,
    # paths
    "base": lambda p: _path_base(_want_str(p, "base")),
    "dir": lambda p: _path_dir(_want_str(p, "dir")),
    "ext": lambda p: _path_ext(_want_str(p, "ext")),
    "clean": lambda p: _path_clean(_want_str(p, "clean")),
    "slice": _slice,
}


def eso_functions() -> dict[str, Function]:
    """Every function an External Secrets ``engineVersion: v2`` template may call here."""
    return {
        **SPRIG,
        "toYaml": _to_yaml,
        "fromYaml": _from_yaml,
        "filterPEM": _filter_pem,
    }
