"""Access changes on the change hub: a policy change reaches the subscribers whose token holds it, a
revocation only the subscriptions opened with a revoked token, and several prefixes share one queue."""

from __future__ import annotations

from kustos.server.events import ChangeHub


async def test_policy_changes_reach_holders_of_the_policy_only() -> None:
    hub = ChangeHub(clock=lambda: 5.0)
    holder = hub.subscribe(mount="secret/", prefix="a/", policies=frozenset({"default", "app"}))
    other = hub.subscribe(mount="secret/", prefix="a/", policies=frozenset({"default", "ops"}))
    hub.policy_changed("app")
    got = await holder.next(timeout=1)
    assert got is not None and [(c.kind, c.document()["policies"]) for c in got] == [
        ("policy", ["app"])
    ]
    assert await other.next(timeout=0.01) is None


async def test_revocation_reaches_the_revoked_tokens_streams_only() -> None:
    hub = ChangeHub()
    mine = hub.subscribe(mount="secret/", prefix="", token_hash="aa" * 32)
    theirs = hub.subscribe(mount="secret/", prefix="", token_hash="bb" * 32)
    hub.tokens_revoked(frozenset({"aa" * 32, "cc" * 32}))
    got = await mine.next(timeout=1)
    assert got is not None and [c.kind for c in got] == ["revoked"]
    assert "aa" * 32 not in str(got[0].document())  # the hash is never sent
    assert await theirs.next(timeout=0.01) is None


async def test_several_prefixes_one_queue_and_access_only_subscriptions() -> None:
    hub = ChangeHub()
    both = hub.subscribe(targets=(("secret/", "a/db"), ("kv/", "b/")), policies=frozenset({"p"}))
    access = hub.subscribe(access_only=True, policies=frozenset({"p"}))
    hub.publish("secret/", "a/db", 1, "write")
    hub.publish("kv/", "b/x", 2, "write")
    hub.publish("secret/", "c/db", 1, "write")
    got = await both.next(timeout=1)
    assert got is not None and [(c.mount, c.path) for c in got] == [
        ("secret/", "a/db"),
        ("kv/", "b/x"),
    ]
    assert await access.next(timeout=0.01) is None  # no KV changes for an access-only stream
    hub.policy_changed("p")
    assert [c.kind for c in await access.next(timeout=1) or []] == ["policy"]
    # a stream resuming after the policy change hears of it from the history
    resumed = hub.subscribe(
        mount="secret/", prefix="a/", policies=frozenset({"p"}), after=f"{hub.epoch}-2"
    )
    assert [c.kind for c in await resumed.next(timeout=1) or []] == ["policy"]
    for subscription in (both, access, resumed):
        subscription.close()
    assert hub.subscribers == 0
