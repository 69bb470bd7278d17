"""``kustos lint``'s checks (kustos.gitops.linting) and its command (kustos.cli.lint).

Every test file holds the same canary value; no output, in any format or on
any error path, may contain it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kustos.cli.main import app
from kustos.gitops.linting import RULES, lint_file

CANARY = "CANARY-4bd1e0"
B64_CANARY = "Q0FOQVJZLTRiZDFlMA=="
ENC = "ENC[AES256_GCM,data:AAAA,iv:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]"
SOPS_BLOCK = f"""\
sops:
    age:
        - recipient: age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq
          enc: x
    lastmodified: "2026-01-01T00:00:00Z"
    mac: {ENC}
    unencrypted_suffix: _unencrypted
    version: 3.9.0
"""


def _rules(path: str, text: str, **kwargs: bool) -> list[tuple[str, int]]:
    findings = lint_file(path, text.encode(), **kwargs)
    for finding in findings:
        assert CANARY not in finding.message and B64_CANARY not in finding.message
    return [(f.rule, f.line) for f in findings]


def test_secret_data_and_string_data_in_clear() -> None:
    text = f"""\
apiVersion: v1
kind: Secret
metadata: {{name: db, namespace: apps}}
data:
  token: {B64_CANARY}
  empty: ""
  nothing:
stringData:
  password: {CANARY}
  templated: "{{{{ .Values.password }}}}"
---
kind: ConfigMap
data: {{password: not-a-secret}}
"""
    assert _rules("m.yaml", text) == [("secret-in-clear", 5), ("secret-in-clear", 9)]
    finding = lint_file("m.yaml", text.encode())[0]
    assert finding.message == "Secret 'apps/db': data.token is in clear (base64 is not encryption)"


def test_secrets_in_lists_json_helm_values_and_templates() -> None:
    listed = f"""\
kind: List
items:
  - kind: Secret
    metadata: {{name: a}}
    stringData: {{k: {CANARY}}}
"""
    assert _rules("list.yaml", listed) == [("secret-in-clear", 5)]
    as_json = json.dumps(
        {"kind": "Secret", "metadata": {"name": "j"}, "stringData": {"k": CANARY}}, indent=2
    )
    assert _rules("s.json", as_json) == [("secret-in-clear", 7)]
    tabs = as_json.replace("  ", "\t")
    assert _rules("tabs.json", tabs) == [("secret-in-clear", 7)]
    values = f"""\
replicas: 1
extraManifests: |
  apiVersion: v1
  kind: Secret
  metadata:
    name: embedded
  stringData:
    key: {CANARY}
nested:
  deeper:
    - kind: Secret
      data: {{a: {B64_CANARY}}}
"""
    assert _rules("values.yaml", values) == [("secret-in-clear", 8), ("secret-in-clear", 12)]
    template = f"""\
{{{{- if .Values.create }}}}
apiVersion: v1
kind: Secret
metadata:
  name: {{{{ .Release.Name }}}}
stringData:
  fromValues: {{{{ .Values.password | quote }}}}
  literal: {CANARY}
{{{{- end }}}}
"""
    assert _rules("templates/secret.yaml", template) == [("secret-in-clear", 8)]


def test_sops_files() -> None:
    good = f"db:\n    password: {ENC}\n    user_unencrypted: app\n{SOPS_BLOCK}"
    assert _rules("s.yaml", good, must_be_encrypted=True) == []
    clear = f"db:\n    password: {CANARY}\n    user_unencrypted: app\n{SOPS_BLOCK}"
    assert _rules("s.yaml", clear) == [("sops-value-in-clear", 2)]
    no_mac = good.replace(f"    mac: {ENC}\n", "")
    assert _rules("s.yaml", no_mac) == [("sops-metadata", 4)]
    no_block = f"db:\n    password: {ENC}\n"
    assert _rules("s.yaml", no_block) == [("sops-metadata", 2)]
    broken = good.replace(ENC, "ENC[AES256_GCM,data:AAAA]", 1)
    assert ("sops-malformed", 2) in _rules("s.yaml", broken)
    decrypted = f"db:\n    password: {CANARY}\n"
    assert _rules("s.yaml", decrypted, must_be_encrypted=True) == [("sops-not-encrypted", 1)]
    assert _rules("s.yaml", decrypted) == []
    regex = good.replace("unencrypted_suffix: _unencrypted", "encrypted_regex: ^password$")
    assert _rules("s.yaml", regex.replace("user_unencrypted: app", f"user: {CANARY}")) == []


def test_sops_dotenv_ini_and_binary() -> None:
    meta = "sops_age__list_0__map_recipient=age1q\nsops_lastmodified=2026\nsops_mac=X\nsops_version=3.9.0\n"
    assert _rules("a.env", f"A={ENC}\n{meta}") == []
    assert _rules("a.env", f"A={CANARY}\n{meta}") == [("sops-value-in-clear", 1)]
    assert _rules("a.env", f"A={CANARY}\n", must_be_encrypted=True) == [("sops-not-encrypted", 1)]
    ini = f"[db]\npassword = {CANARY}\n[sops]\nage__list_0__map_recipient = a\nlastmodified = x\nmac = y\nversion = 3\n"
    assert _rules("a.ini", ini) == [("sops-value-in-clear", 2)]
    binary = json.dumps(
        {
            "data": ENC,
            "sops": {"mac": ENC, "lastmodified": "x", "version": "3", "age": [{"recipient": "a"}]},
        }
    )
    assert _rules("blob.bin", binary, must_be_encrypted=True) == []
    assert _rules("blob.bin", CANARY, must_be_encrypted=True) == [("sops-not-encrypted", 1)]
    assert lint_file("blob.bin", b"\xff\xfe" + CANARY.encode(), must_be_encrypted=True)[0].rule == (
        "sops-not-encrypted"
    )
    assert _rules("notes.txt", CANARY) == []


def test_sealed_secrets() -> None:
    real = "AQ" + "A" * 702
    good = f"""\
apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata: {{name: db}}
spec:
  encryptedData:
    password: {real}
"""
    assert _rules("s.yaml", good) == []
    pasted = good.replace(real, B64_CANARY)
    assert _rules("s.yaml", pasted) == [("sealed-malformed", 6)]
    assert _rules("s.yaml", good.replace(real, CANARY)) == [("sealed-malformed", 6)]
    empty = good.replace(f"  encryptedData:\n    password: {real}\n", "  template: {}\n")
    assert _rules("s.yaml", empty) == [("sealed-malformed", 5)]
    native = f"""\
apiVersion: kustos.io/v1
kind: SealedSecret
metadata: {{name: db}}
spec:
  dataKeys:
    d1:
      - keyId: 0123456789abcdef
        wrappedKey: {"A" * 344}
  encryptedData:
    password: "d1:{"A" * 40}"
    other: "d2:{"A" * 40}"
    short: "d1:AAAA"
"""
    assert _rules("n.yaml", native) == [("sealed-malformed", 11), ("sealed-malformed", 12)]


def test_unparseable_files_fail_without_echoing_content() -> None:
    findings = lint_file("bad.yaml", f"a: *{CANARY}\nb: [{CANARY}\n".encode())
    assert [f.rule for f in findings] == ["unparseable"]
    assert CANARY not in findings[0].message
    broken_json = lint_file("bad.json", f'{{"password": "{CANARY}'.encode())
    assert broken_json[0].rule == "unparseable" and CANARY not in broken_json[0].message


# -- the command ------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "secret.yaml").write_text(
        f"kind: Secret\nmetadata: {{name: db}}\nstringData: {{password: {CANARY}}}\n"
    )
    (tmp_path / "deploy" / "ok.yaml").write_text("kind: ConfigMap\ndata: {a: b}\n")
    (tmp_path / "bad.yaml").write_text(f"x: *{CANARY}\n")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db.yaml").write_text(f"password: {CANARY}\n")
    (tmp_path / ".sops.yaml").write_text(
        "creation_rules:\n  - path_regex: secrets/.*\n    age: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n"
    )
    (tmp_path / "deploy" / "sealed.yaml").write_text(
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: db}\n"
        f"spec:\n  encryptedData:\n    password: {B64_CANARY}\n"
    )
    (tmp_path / "edited.yaml").write_text(f"password: {CANARY}\n{SOPS_BLOCK}")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "s.yaml").write_text(
        f"kind: Secret\nstringData: {{p: {CANARY}}}\n"
    )
    return tmp_path


def _run(runner: CliRunner, cwd: Path, *args: str) -> tuple[int, str]:
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        result = runner.invoke(app, ["lint", *args])
    finally:
        os.chdir(previous)
    output = result.stdout + result.stderr
    assert CANARY not in output and B64_CANARY not in output
    return result.exit_code, result.stdout


def test_text_output(cli_runner: CliRunner, tree: Path) -> None:
    code, out = _run(cli_runner, tree)
    assert code == 1
    lines = out.splitlines()
    # libyaml names no alias; PyYAML's own parser quotes it and the quote is removed (…)
    assert any(
        line.startswith("bad.yaml:1:4: unparseable: not valid YAML: found undefined alias")
        for line in lines
    )
    assert (
        "deploy/secret.yaml:3:14: secret-in-clear: Secret 'db': stringData.password is in clear (base64 is not encryption)"
        in lines
    )
    assert any(line.startswith("secrets/db.yaml:1:1: sops-not-encrypted") for line in lines)
    assert "node_modules" not in out
    assert "kustos seal -f FILE" in out and "kustos encrypt -i FILE" in out
    clean, _ = _run(cli_runner, tree, "deploy/ok.yaml")
    assert clean == 0


def test_json_and_sarif_output(cli_runner: CliRunner, tree: Path) -> None:
    code, out = _run(cli_runner, tree, "-format=json")
    assert code == 1
    document = json.loads(out)
    assert document["files_checked"] == 6
    assert {(f["path"], f["rule"]) for f in document["findings"]} == {
        ("bad.yaml", "unparseable"),
        ("deploy/sealed.yaml", "sealed-malformed"),
        ("edited.yaml", "sops-value-in-clear"),
        ("deploy/secret.yaml", "secret-in-clear"),
        ("secrets/db.yaml", "sops-not-encrypted"),
    }
    code, out = _run(cli_runner, tree, "--format", "sarif", ".")
    assert code == 1
    sarif = json.loads(out)
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    run = sarif["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == list(RULES)
    result = next(r for r in run["results"] if r["ruleId"] == "secret-in-clear")
    assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == "secret-in-clear"
    location = result["locations"][0]["physicalLocation"]
    assert location == {
        "artifactLocation": {"uri": "deploy/secret.yaml"},
        "region": {"startLine": 3, "startColumn": 14},
    }
    assert result["level"] == "error" and "kustos seal" in result["message"]["text"]


def test_errors(cli_runner: CliRunner, tree: Path) -> None:
    code, _ = _run(cli_runner, tree, "missing.yaml")
    assert code == 2
    (tree / ".sops.yaml").write_text(f"creation_rules: [{{path_regex: '(', age: {CANARY}}}]\n")
    code, _ = _run(cli_runner, tree, "secrets/db.yaml")
    assert code == 2
    code, _ = _run(cli_runner, tree, "--staged")
    assert code == 2  # not a Git repository


def test_staged_reads_the_index_not_the_working_tree(cli_runner: CliRunner, tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    secret = tmp_path / "s.yaml"
    secret.write_text(f"kind: Secret\nstringData: {{p: {CANARY}}}\n")
    git("add", "s.yaml")
    secret.write_text("kind: ConfigMap\n")  # the working tree is clean, the index is not
    (tmp_path / "unstaged.yaml").write_text(f"kind: Secret\nstringData: {{p: {CANARY}}}\n")
    code, out = _run(cli_runner, tmp_path, "--staged", "-o", "json")
    assert code == 1
    assert [f["path"] for f in json.loads(out)["findings"]] == ["s.yaml"]
    code, _ = _run(cli_runner, tmp_path, "s.yaml")
    assert code == 0
