"""Commands on an aggregate stream with optimistic concurrency, retried on a race."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from domain.errors import ConcurrencyError
from domain.events import Event
from domain.ports import EventStore

#: Races lost in a row before a command gives up with ``ConcurrencyError``.
APPEND_ATTEMPTS = 5

R = TypeVar("R")


class Folded(Protocol):
    """An aggregate's state folded from its stream: the version it reflects."""

    version: int


S = TypeVar("S", bound=Folded)


def decide_and_append(
    store: EventStore,
    stream_id: str,
    load: Callable[[EventStore], S],
    decide: Callable[[S], tuple[Sequence[Event], Callable[[int], R]]],
) -> R:
    """Load the state, let ``decide`` check the command against it and return the events
    and how to build the result from the stream's new version, append at the version
    read; on a concurrent write, load and decide again. ``decide`` raises to refuse."""
    state: S | None = None
    for _ in range(APPEND_ATTEMPTS):
        state = load(store)
        events, result = decide(state)
        try:
            version = store.append(stream_id, events, expected_version=state.version)
        except ConcurrencyError:
            continue
        return result(version)
    raise ConcurrencyError(stream_id, state.version if state is not None else 0, None)
