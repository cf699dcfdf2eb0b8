"""What a fan-out reads and whom it hands items to: the shapes both modes share.

A `Stream` names a topic and how its records decode; a `Subscriber` (one
websocket connection) applies its own filter in `offer`, which must not block;
a `Fanout` is what a websocket handler subscribes to, whichever mode runs
(`shared.fanout.modes`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


@dataclass(frozen=True, slots=True)
class Stream(Generic[T]):
    """What a fan-out reads: a topic, how its records decode, and where to start."""

    topic: str
    decode: Callable[[bytes], T]
    # Start at the last record of each partition instead of the end.
    replay_last: bool = False
    # Told of every item decoded, in both modes, before it is delivered (state the
    # whole app keeps, such as worker_server's current job); must not block.
    observe: Callable[[T], None] | None = None


class Subscriber(Protocol[T_contra]):
    def offer(self, item: T_contra) -> None: ...

    def failed(self, error: Exception) -> None:
        """Nothing more comes: `offer` raised, or the subscriber's own consumer died.

        The subscriber must end itself (a websocket connection closes 1011).
        """


def offered(subscriber: Subscriber[T], item: T) -> bool:
    """Offer `item`; False, and the subscriber told, when its `offer` raised.

    A bug in one subscriber must cost that subscriber, never the fan-out
    every other connection of the process depends on.
    """
    try:
        subscriber.offer(item)
    except Exception as error:
        subscriber.failed(error)
        return False
    return True


class Fanout(Protocol[T]):
    """What a websocket handler needs, whichever mode runs."""

    async def subscribe(self, subscriber: Subscriber[T]) -> None: ...

    async def unsubscribe(self, subscriber: Subscriber[T]) -> None: ...

    @property
    def ready(self) -> bool: ...
