"""The server's change hub (feeds ``sys/events/subscribe`` and so the operator's push)."""

from __future__ import annotations

from kustos.server.events import ChangeHub


async def test_changes_reach_matching_subscribers_only() -> None:
    hub = ChangeHub(clock=lambda: 100.0)
    team = hub.subscribe(mount="secret/", prefix="team/")
    other_mount = hub.subscribe(mount="kv/", prefix="")
    hub.publish("secret/", "team/db", 3, "write")
    hub.publish("secret/", "ops/db", 1, "write")
    got = await team.next(timeout=1)
    assert got is not None and [(c.path, c.version, c.kind, c.time) for c in got] == [
        ("team/db", 3, "write", 100.0)
    ]
    assert await other_mount.next(timeout=0.01) is None  # nothing, a timeout
    team.close()
    other_mount.close()
    assert hub.subscribers == 0


async def test_a_slow_subscriber_gets_one_resync_instead_of_a_growing_queue() -> None:
    hub = ChangeHub(queue_limit=10)
    slow = hub.subscribe(mount="secret/", prefix="")
    for index in range(1000):
        hub.publish("secret/", f"k{index}", 1, "write")
    assert slow.overflowed
    assert await slow.next(timeout=1) == []
    slow.overflowed = False
    hub.publish("secret/", "after", 1, "write")
    got = await slow.next(timeout=1)
    assert got is not None and [c.path for c in got] == ["after"]


async def test_the_accept_filter_hides_changes_the_token_may_not_see() -> None:
    hub = ChangeHub()
    sub = hub.subscribe(
        mount="secret/", prefix="", accept=lambda change: change.path.startswith("mine/")
    )
    hub.publish("secret/", "theirs/x", 1, "write")
    hub.publish("secret/", "mine/x", 1, "write")
    got = await sub.next(timeout=1)
    assert got is not None and [c.path for c in got] == ["mine/x"]


async def test_resume_replays_missed_changes_or_asks_for_a_resync() -> None:
    hub = ChangeHub(history=5)
    hub.publish("secret/", "a", 1, "write")
    seen = hub.last_event_id()
    hub.publish("secret/", "b", 1, "write")
    hub.publish("secret/", "c", 1, "write")
    resumed = hub.subscribe(mount="secret/", prefix="", after=seen)
    got = await resumed.next(timeout=1)
    assert got is not None and [c.path for c in got] == ["b", "c"]
    assert not resumed.overflowed
    for index in range(10):  # the resume point falls out of the history
        hub.publish("secret/", f"n{index}", 1, "write")
    assert hub.subscribe(mount="secret/", prefix="", after=seen).overflowed
    assert hub.subscribe(mount="secret/", prefix="", after="otherprocess-3").overflowed
