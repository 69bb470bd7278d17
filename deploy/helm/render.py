"""Render the Kustos chart without helm (the subset of Go templates the chart uses).

Supported: ``{{ .Values.a.b }}``, ``{{ .Release.Name }}``,
``{{ .Release.Namespace }}``, ``{{- if .Values.x }}`` / ``{{- else }}`` /
``{{- end }}`` and ``{{- toYaml .Values.x | nindent N }}``; ``{{-`` trims the
whitespace before the tag, as in helm. Anything else is an error, so the
chart cannot silently grow beyond what this renderer (and its test) checks.

Usage: ``python deploy/helm/render.py > deploy/manifests/kustos.yaml``
(writes the CRDs first, then the templates, for release ``kustos`` in
namespace ``kustos-system``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["render_chart"]

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


def render_chart(
    *,
    release: str = "kustos",
    namespace: str = "kustos-system",
    overrides: dict[str, Any] | None = None,
) -> str:
    """The chart's CRDs and templates as one multi-document YAML string."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for dotted, value in (overrides or {}).items():
        node = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    context = {"Values": values, "Release": {"Name": release, "Namespace": namespace}}
    documents = [path.read_text().strip() for path in sorted((CHART / "crds").glob("*.yaml"))]
    for path in sorted((CHART / "templates").glob("*.yaml")):
        rendered = _render(path.read_text(), context).strip()
        if rendered:
            documents.append(f"# Source: kustos/templates/{path.name}\n{rendered}")
    return "\n---\n".join(documents) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_chart())
