"""Rendering: tab-separated tables when stdout is not a terminal; `report` for write commands."""

from __future__ import annotations

import json

import pytest

from kustos.cli.output import OutputFormat, render, report


def test_piped_tables_are_tab_separated_with_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    render(
        [{"key": "a", "value": "x\ty"}, {"key": "b", "value": "line1\nline2"}], OutputFormat.table
    )
    assert capsys.readouterr().out == "key\tvalue\na\tx\\ty\nb\tline1\\nline2\n"
    render({"k": {"nested": 1}, "n": None}, OutputFormat.table)
    assert capsys.readouterr().out == 'Key\tValue\nk\t{"nested": 1}\nn\t\n'
    render(["one", "two"], OutputFormat.table, columns=["Keys"])
    assert capsys.readouterr().out == "Keys\none\ntwo\n"


def test_report_is_a_line_for_people_or_data_for_scripts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report(
        "Deleted version 3 of secret/app",
        {"path": "secret/app", "deleted": [3]},
        OutputFormat.table,
    )
    captured = capsys.readouterr()
    assert captured.out == "" and "Deleted version 3 of secret/app" in captured.err
    report(
        "Deleted version 3 of secret/app", {"path": "secret/app", "deleted": [3]}, OutputFormat.json
    )
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"path": "secret/app", "deleted": [3]} and captured.err == ""
