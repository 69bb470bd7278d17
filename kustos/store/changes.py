"""Change notifications from storage: what every process sharing the database committed.

Why: a server replica may cache what it read only if it learns, soon after
the commit, that another replica changed it; and a subscriber to one
replica's change stream must hear of writes made on another. A backend that
can tell (PostgreSQL through LISTEN/NOTIFY) offers :class:`ChangeWatching`;
one that cannot simply lacks ``watch_changes``, and callers then must not
cache across processes. This is an optional capability beside
:class:`~kustos.store.base.StorageBackend`, not part of it.

A subscriber receives :class:`Changes` events. ``watching=False`` means the
feed is down (notifications may be lost): forget everything cached and stop
caching until an event with ``watching=True`` arrives. ``everything=True``
means forget everything cached, and assume announcements were missed (the
feed just came back, or one commit's announcement did not fit a
notification).

Besides the keys it changed, a transaction can *announce* something to every
process (:meth:`kustos.store.base.Transaction.announce`): a small JSON
document under a topic (``"kv"`` for the KV change stream; other areas add
their own). Announcements travel with the commit, so they are delivered if
and only if the transaction commits, after its data is visible, in commit
order; ``Changes.local`` tells a process its own commits apart (it acted on
those already).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Announcement",
    "ChangeCallback",
    "ChangeWatching",
    "Changes",
    "Unsubscribe",
    "supports_change_watching",
]


@dataclass(frozen=True)
class Announcement:
    """What a committed transaction told every process: a topic and a small JSON document.

    Never a secret: notifications are readable by anyone who can LISTEN on
    the database, and are kept in no log of ours.
    """

    topic: str
    document: Mapping[str, Any]


@dataclass(frozen=True)
class Changes:
    """Keys (and key prefixes) that a committed transaction changed, or a feed state change."""

    keys: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    everything: bool = False
    """Forget every cached key (too many keys to name, or notifications may have been missed)."""
    watching: bool = True
    """``False``: the feed is down; bypass caches until an event with ``True`` arrives."""
    announcements: tuple[Announcement, ...] = ()
    """What the committed transaction announced, in the order it announced it."""
    local: bool = False
    """Committed through this very backend object (this process has acted on it already)."""

    def touches(self, key: str) -> bool:
        """Whether a cached ``key`` must be forgotten."""
        return (
            self.everything
            or not self.watching
            or key in self.keys
            or key.startswith(self.prefixes)
        )

    def matching(self, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` that must be forgotten."""
        return [key for key in keys if self.touches(key)]


ChangeCallback = Callable[[Changes], None]
Unsubscribe = Callable[[], None]


@runtime_checkable
class ChangeWatching(Protocol):
    """A backend that reports commits made by every process sharing its data."""

    async def watch_changes(self, callback: ChangeCallback) -> Unsubscribe:
        """Call ``callback`` for every committed change, from the event loop; return an unsubscribe.

        ``callback`` is first called at once with ``everything=True`` and the
        feed's current ``watching`` state. It must not raise or block.
        """
        ...


def supports_change_watching(backend: object) -> bool:
    """Whether ``backend`` offers :meth:`ChangeWatching.watch_changes`."""
    return isinstance(backend, ChangeWatching)
