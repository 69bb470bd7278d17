"""CLI area ``policy``: check, format and try out policy documents offline.

``kustos policy check FILE...`` parses each document and lists its rules (exit
1 naming the file, line, path and capability on the first error);
``kustos policy fmt FILE`` prints the canonical HCL (``--write`` rewrites the
file, ``--check`` only reports); ``kustos policy eval FILE... --path P`` shows
what a token holding those policies could do on each path, using the same
:class:`kustos.policy.ACL` as the server. ``write|read|list|delete`` manage
the server's policies (``sys/policies/acl``). See docs/policies.md.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from kustos.cli.connection import (
    Connection,
    connected,
)
from kustos.cli.output import OutputFormat, OutputOption, fail, render, report
from kustos.policy import ACL, Policy, PolicyError, default_policy

__all__ = ["register"]

EXIT_BAD_INPUT: Final = 2
_COMMENT_RE: Final = re.compile(r"(^|\s)(#|//|/\*)", re.MULTILINE)

policy_app = typer.Typer(
    name="policy",
    help="Vault-compatible ACL policies: check, fmt and eval work offline (see docs/policies.md).",
    no_args_is_help=True,
)

FilesArgument = Annotated[
    list[Path],
    typer.Argument(
        exists=True, dir_okay=False, readable=True, help="Policy documents (HCL or JSON)."
    ),
]


def _load(file: Path, name: str | None = None) -> Policy:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {str(file)!r}: {exc}", code=EXIT_BAD_INPUT)
    try:
        return Policy.parse(name or file.stem, text)
    except PolicyError as exc:
        fail(f"{file}: {exc}")


def _rule_rows(policy: Policy) -> list[dict[str, Any]]:
    return [
        {
            "policy": policy.name,
            "line": rule.line,
            "path": rule.path,
            "capabilities": ", ".join(rule.capabilities),
            "allowed_parameters": {k: list(v) for k, v in rule.allowed_parameters.items()} or None,
            "denied_parameters": {k: list(v) for k, v in rule.denied_parameters.items()} or None,
            "required_parameters": list(rule.required_parameters) or None,
        }
        for rule in policy.rules
    ]


@policy_app.command("check")
def check(files: FilesArgument, output: OutputOption = OutputFormat.table) -> None:
    """Parse each policy file (named after the file) and list its rules; exit 1 on the first error."""
    rows: list[dict[str, Any]] = []
    for file in files:
        rows.extend(_rule_rows(_load(file)))
    columns = ["policy", "line", "path", "capabilities"]
    extra = ["allowed_parameters", "denied_parameters", "required_parameters"]
    columns += [c for c in extra if any(row[c] for row in rows)]
    render(rows, output, columns=columns)


@policy_app.command("fmt")
def fmt(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A policy document.")
    ],
    write: Annotated[
        bool, typer.Option("--write", "-w", help="Rewrite the file in place.")
    ] = False,
    check_only: Annotated[
        bool, typer.Option("--check", help="Exit 1 if the file is not formatted; print nothing.")
    ] = False,
    drop_comments: Annotated[
        bool,
        typer.Option(
            "--drop-comments", help="Allow --write to drop comments (fmt cannot keep them)."
        ),
    ] = False,
) -> None:
    """Print the policy as canonical HCL (two-space indent, one block per path)."""
    policy = _load(file)
    text = file.read_text(encoding="utf-8")
    formatted = policy.to_hcl()
    if check_only:
        if text != formatted:
            fail(f"{file} is not formatted; run `kustos policy fmt --write {file}`")
        return
    if write:
        if _COMMENT_RE.search(text) and not drop_comments:
            fail(
                f"{file} has comments that fmt would drop; pass --drop-comments to rewrite it anyway",
                code=EXIT_BAD_INPUT,
            )
        file.write_text(formatted, encoding="utf-8")
        return
    sys.stdout.write(formatted)


@policy_app.command("eval")
def evaluate(
    files: FilesArgument,
    path: Annotated[
        list[str], typer.Option("--path", "-p", help="A request path to evaluate (repeatable).")
    ],
    with_default: Annotated[
        bool,
        typer.Option(
            "--default/--no-default", help="Add the built-in default policy, as tokens get it."
        ),
    ] = True,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show the capabilities a token holding these policies has on each --path, and which rule decides."""
    policies = [_load(file) for file in files]
    if with_default and all(p.name != "default" for p in policies):
        policies.append(default_policy())
    try:
        acl = ACL(policies)
    except PolicyError as exc:
        fail(str(exc), code=EXIT_BAD_INPUT)
    rows: list[dict[str, Any]] = []
    for request_path in path:
        listing = request_path.endswith("/")
        rule = None if acl.is_root else acl.permissions(request_path, listing=listing)
        rows.append(
            {
                "path": request_path,
                "capabilities": ", ".join(acl.capabilities_response(request_path)),
                "rule": "root"
                if acl.is_root
                else (rule.pattern if rule else "(none: default deny)"),
                "policies": ", ".join(rule.policies) if rule else "",
            }
        )
    render(rows, output, columns=["path", "capabilities", "rule", "policies"])


@policy_app.command("write")
@connected()
def write(
    connection: Connection,
    name: Annotated[str, typer.Argument(help="Policy name.")],
    file: Annotated[str, typer.Argument(help="Policy document (HCL or JSON); '-' reads stdin.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Upload a policy to the server (checked locally first, so errors name the line)."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file!r}: {exc}", code=EXIT_BAD_INPUT)
    try:
        Policy.parse(name, text)
    except PolicyError as exc:
        fail(f"{file}: {exc}")
    with connection.client() as client:
        client.policies.create_or_update_acl_policy(name, text)
    report(f"Uploaded policy {name}", {"name": name, "written": True}, output)


@policy_app.command("read")
@connected()
def read(
    connection: Connection,
    name: Annotated[str, typer.Argument(help="Policy name.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print a policy document as stored on the server."""
    with connection.client() as client:
        text = client.policies.read_acl_policy(name)
    if output is not OutputFormat.table:
        render({"name": name, "policy": text}, output)
        return
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@policy_app.command("list")
@connected()
def list_(
    connection: Connection,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the server's policies (root and default included)."""
    with connection.client() as client:
        names = client.policies.list_acl_policies()
    render([{"name": n} for n in names], output, columns=["name"])


@policy_app.command("delete")
@connected()
def delete(
    connection: Connection,
    name: Annotated[str, typer.Argument(help="Policy name.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Delete a policy from the server (tokens holding it lose what it granted at once)."""
    with connection.client() as client:
        client.policies.delete_acl_policy(name)
    report(f"Deleted policy {name}", {"name": name, "deleted": True}, output)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(policy_app)
