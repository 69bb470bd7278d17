"""Render the Kustos chart without helm (the subset of Go templates the chart uses).

Supported: ``{{ .Values.a.b }}``, ``{{ .Release.Name }}``,
``{{ .Release.Namespace }}``, ``{{- if .Values.x }}`` / ``{{- else }}`` /
``{{- end }}`` and ``{{- toYaml .Values.x | nindent N }}``; ``{{-`` trims the
whitespace before the tag, as in helm. Anything else is an error, so the
chart cannot silently grow beyond what this renderer (and its test) checks.

Usage, with helm's own flags where helm has one::

    python deploy/helm/render.py > deploy/manifests/kustos.yaml
    python deploy/helm/render.py kustos -n kustos -f my-values.yaml \
        --set server.keyProvider=shamir --set-string image.tag=0.1.0 | kubectl apply -f -
    python deploy/helm/render.py --skip-crds ...        # the templates only (as helm)
    python deploy/helm/render.py --crds-only            # the CRDs only
    python deploy/helm/render.py --crd-groups kustos.io,external-secrets.io ...

The release name (first argument, default ``kustos``) and ``-n/--namespace``
(default ``kustos-system``) fill ``.Release``; ``-f`` files are merged over
``values.yaml`` in order (maps deeply, anything else replaced), then every
``--set key.path=value`` (the value read as YAML: ``true``, ``3``, ``[a, b]``)
and ``--set-string key.path=value``. A key that ``values.yaml`` does not have
is refused (helm accepts it and ignores it, so a typo would go unnoticed).
CRDs are written first, then the templates. ``--crd-groups`` keeps the CRDs of
the named API groups only (helm can only skip all of them with
``--skip-crds``: install the groups you want from ``deploy/crds/`` then).
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["main", "render_chart", "values_of"]

CHART = Path(__file__).resolve().parent / "kustos"
_TAG = re.compile(r"(\s*)\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)


def _lookup(path: str, context: dict[str, Any]) -> Any:
    node: Any = context
    for part in path.lstrip(".").split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"template refers to missing value {path}")
        node = node[part]
    return node


def _render(text: str, context: dict[str, Any]) -> str:
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (parent active, this branch active)
    pos = 0
    for match in _TAG.finditer(text):
        leading, trim_left, expression, _ = match.groups()
        active = all(branch for _, branch in stack)
        if active:
            out.append(text[pos : match.start()] + ("" if trim_left else leading))
        pos = match.end()
        if expression.startswith("if "):
            stack.append((active, bool(_lookup(expression[3:].strip(), context))))
        elif expression == "else":
            parent, branch = stack.pop()
            stack.append((parent, not branch))
        elif expression == "end":
            stack.pop()
        elif not active:
            continue
        elif expression.startswith("toYaml "):
            value_path, _, indent = expression[7:].partition("| nindent")
            dumped = yaml.safe_dump(_lookup(value_path.strip(), context), sort_keys=False).rstrip(
                "\n"
            )
            pad = " " * int(indent)
            out.append("\n" + "\n".join(pad + line for line in dumped.splitlines()))
        elif re.fullmatch(r"\.[A-Za-z][\w.]*", expression):
            out.append(str(_lookup(expression, context)))
        else:
            raise ValueError(f"unsupported template expression: {expression!r}")
    if stack:
        raise ValueError("unbalanced if/end in template")
    out.append(text[pos:])
    return "".join(out)


def _merge(base: dict[str, Any], extra: Mapping[str, Any], *, where: str) -> None:
    """``extra`` over ``base`` in place: maps merged key by key, anything else replaced."""
    for key, value in extra.items():
        if key not in base:
            raise KeyError(f"{where}: unknown value {key!r} (see deploy/helm/kustos/values.yaml)")
        if isinstance(base[key], dict) and isinstance(value, Mapping):
            _merge(base[key], value, where=f"{where}.{key}")
        else:
            base[key] = copy.deepcopy(value)


def _set(values: dict[str, Any], dotted: str, value: Any) -> None:
    """``--set a.b.c=value``: the key path must exist in ``values.yaml``."""
    node: Any = values
    *parents, leaf = dotted.split(".")
    for depth, part in enumerate(parents):
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            known = ".".join(parents[: depth + 1])
            raise KeyError(f"--set {dotted}: {known} is not a map of values.yaml")
        node = node[part]
    if leaf not in node:
        raise KeyError(f"--set {dotted}: unknown value (see deploy/helm/kustos/values.yaml)")
    node[leaf] = value


def values_of(
    *,
    files: Sequence[Path] = (),
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``values.yaml``, then each of ``files``, then ``overrides`` (dotted keys)."""
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in files:
        extra = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(extra, dict):
            raise ValueError(f"{path}: a values file is a YAML map")
        _merge(values, extra, where=str(path))
    for dotted, value in (overrides or {}).items():
        _set(values, dotted, value)
    return values


def _crd_group(text: str) -> str:
    doc = yaml.safe_load(text)
    return str(doc["spec"]["group"])


def render_chart(
    *,
    release: str = "kustos",
    namespace: str = "kustos-system",
    overrides: dict[str, Any] | None = None,
    files: Sequence[Path] = (),
    crds: bool = True,
    templates: bool = True,
    crd_groups: Sequence[str] | None = None,
) -> str:
    """The chart's CRDs and templates as one multi-document YAML string.

    ``crds=False`` is helm's ``--skip-crds``; ``templates=False`` renders the
    CRDs only; ``crd_groups`` keeps the CRDs of those API groups only.
    """
    values = values_of(files=files, overrides=overrides)
    context = {"Values": values, "Release": {"Name": release, "Namespace": namespace}}
    documents: list[str] = []
    if crds:
        for path in sorted((CHART / "crds").glob("*.yaml")):
            text = path.read_text().strip()
            if crd_groups is None or _crd_group(text) in crd_groups:
                documents.append(text)
    if templates:
        for path in sorted((CHART / "templates").glob("*.yaml")):
            rendered = _render(path.read_text(), context).strip()
            if rendered:
                documents.append(f"# Source: kustos/templates/{path.name}\n{rendered}")
    return "\n---\n".join(documents) + "\n"


def _assignment(text: str, *, string: bool) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key.path=value, got {text!r}")
    return key, value if string else yaml.safe_load(value) if value else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="render.py", description="Render the Kustos chart (helm template's flags)."
    )
    parser.add_argument("release", nargs="?", default="kustos", help="release name (kustos)")
    parser.add_argument("-n", "--namespace", default="kustos-system", help="release namespace")
    parser.add_argument(
        "-f", "--values", action="append", default=[], type=Path, help="values file (repeatable)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=lambda s: _assignment(s, string=False),
        help="key.path=value, the value read as YAML (repeatable)",
    )
    parser.add_argument(
        "--set-string",
        action="append",
        default=[],
        type=lambda s: _assignment(s, string=True),
        help="key.path=value, the value kept as a string (repeatable)",
    )
    crds = parser.add_mutually_exclusive_group()
    crds.add_argument("--skip-crds", action="store_true", help="no CRDs (as helm)")
    crds.add_argument("--crds-only", action="store_true", help="the CRDs only")
    parser.add_argument(
        "--crd-groups", help="comma-separated API groups whose CRDs to keep (default: all)"
    )
    args = parser.parse_args(argv)
    overrides = dict([*args.set, *args.set_string])
    groups = (
        [g.strip() for g in args.crd_groups.split(",") if g.strip()] if args.crd_groups else None
    )
    try:
        text = render_chart(
            release=args.release,
            namespace=args.namespace,
            overrides=overrides,
            files=args.values,
            crds=not args.skip_crds,
            templates=not args.crds_only,
            crd_groups=groups,
        )
    except (KeyError, ValueError, OSError, yaml.YAMLError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        sys.stderr.write(f"render.py: {message}\n")
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
