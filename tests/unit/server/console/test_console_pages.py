"""Pure pieces of the console's pages: paging, what capabilities allow, which actions a version offers."""

from __future__ import annotations

import pytest

from kustos.server.console.browsing import Capabilities, _offered, page_of

NAMES = [f"s{i:05d}" for i in range(10_000)]


def test_paging_clamps_and_counts() -> None:
    rows, page, pages = page_of(NAMES, page=1, size=100)
    assert rows == NAMES[:100] and page == 1 and pages == 100
    assert page_of(NAMES, page=100, size=100)[0] == NAMES[-100:]
    assert page_of(NAMES, page=101, size=100)[1] == 100
    assert page_of(NAMES, page=0, size=100)[1] == 1
    assert page_of([], page=3, size=100) == ([], 1, 1)


def capabilities(**paths: list[str]) -> Capabilities:
    answer = {f"secret/{operation}/app": caps for operation, caps in paths.items()}
    return Capabilities(answer, mount="secret/", path="app")


def test_what_capabilities_allow() -> None:
    root = capabilities(data=["root"], metadata=["root"], delete=["root"], destroy=["root"])
    assert root.read and root.write and root.rollback and root.delete and root.destroy
    reader = capabilities(data=["read"], metadata=["read", "list"], subkeys=["read"])
    assert reader.read and reader.metadata and not reader.any_write and not reader.rollback
    writer = capabilities(data=["create", "update"])
    assert writer.write and not writer.read and not writer.rollback and not writer.metadata
    assert not capabilities(data=["deny"]).any_write
    assert Capabilities.paths("secret/", "app")[0] == "secret/data/app"


@pytest.mark.parametrize(
    ("action", "row", "offered"),
    [
        ("rollback", {"destroyed": False, "current": True, "deleted": ""}, False),
        ("rollback", {"destroyed": False, "current": False, "deleted": ""}, True),
        ("rollback", {"destroyed": False, "current": False, "deleted": "2026-01-01"}, False),
        ("undelete", {"destroyed": False, "current": False, "deleted": ""}, False),
        ("undelete", {"destroyed": False, "current": False, "deleted": "2026-01-01"}, True),
        ("delete", {"destroyed": False, "current": True, "deleted": ""}, True),
        ("destroy", {"destroyed": True, "current": False, "deleted": ""}, False),
        ("destroy", {"destroyed": False, "current": True, "deleted": "x"}, True),
    ],
)
def test_actions_offered_per_version(action: str, row: dict[str, object], offered: bool) -> None:
    assert _offered(action, row) is offered
