"""The CLI's one atomic writer: all or nothing, and mode 0600 for anything private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kustos.cli.writing import write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_files_are_0600_even_over_a_readable_file(tmp_path: Path) -> None:
    target = tmp_path / "plain.yaml"
    target.write_text("old")
    target.chmod(0o644)
    write_atomic(target, b"password: hunter2\n", private=True)
    assert target.read_bytes() == b"password: hunter2\n"
    assert _mode(target) == 0o600
    new = tmp_path / "new.yaml"
    write_atomic(new, b"x", private=True)
    assert _mode(new) == 0o600


def test_other_files_keep_their_mode_or_follow_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "sealed.yaml"
    target.write_text("old")
    target.chmod(0o640)
    write_atomic(target, b"new", private=False)
    assert target.read_bytes() == b"new" and _mode(target) == 0o640
    old_mask = os.umask(0o027)
    try:
        fresh = tmp_path / "fresh.yaml"
        write_atomic(fresh, b"x", private=False)
    finally:
        os.umask(old_mask)
    assert _mode(fresh) == 0o640


def test_a_failed_write_leaves_the_target_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "dir-in-the-way"
    target.mkdir()
    (target / "keep").write_text("kept")
    with pytest.raises(OSError):
        write_atomic(target, b"data", private=True)  # rename over a non-empty directory fails
    assert (target / "keep").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir-in-the-way"]
