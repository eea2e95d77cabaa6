"""Aggregates' folds kept per process and caught up cheaply from their streams.

Dashboards and alert rules are small aggregates read far more often than they change (a
live dashboard asks every half second), by many processes that each append to them. Each
process keeps every aggregate's fold and catches one up, at most every
``refresh_seconds``, by reading its stream past the version already folded; the names come
from a directory stream read the same way. A command of this process hands its result in
at once (``put``), so an editor sees their own edit.

A fold handed out is never changed afterwards: a catch-up applies the new events to a
copy, so a reader on another thread keeps a consistent snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

from domain.events import RecordedEvent
from domain.ports import EventStore

#: How stale another process's appends may look.
REFRESH_SECONDS = 0.5


class Fold(Protocol):
    version: int

    @property
    def exists(self) -> bool: ...

    def apply(self, events: Iterable[RecordedEvent]) -> None: ...


F = TypeVar("F", bound=Fold)

#: ``directory(store, after_version)``: the names listed after that version, and its version.
Directory = Callable[[EventStore, int], tuple[list[str], int]]


class StreamFolds(Generic[F]):
    """Every aggregate's fold of one kind (see the module docstring).

    ``new(name)``: an empty fold; ``copy(fold)``: one a catch-up may change;
    ``name_of(fold)``: its name; ``stream_of(name)``: its stream; ``directory``: the names
    that exist or existed.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        new: Callable[[str], F],
        copy: Callable[[F], F],
        name_of: Callable[[F], str],
        stream_of: Callable[[str], str],
        directory: Directory,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._new = new
        self._copy = copy
        self._name_of = name_of
        self._stream_of = stream_of
        self._directory = directory
        self._refresh = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._folds: dict[str, F] = {}
        self._checked: dict[str, float] = {}
        self._names: dict[str, None] = {}  # in listing order
        self._directory_version = 0
        self._directory_checked: float | None = None

    def _stale(self, checked: float | None, now: float) -> bool:
        return checked is None or now - checked >= self._refresh

    def get(self, name: str) -> F | None:
        """The aggregate's fold, or None if it does not exist (now)."""
        with self._lock:
            fold = self._caught_up(name, self._clock())
        return fold if fold is not None and fold.exists else None

    def _caught_up(self, name: str, now: float) -> F | None:
        """Under the lock: the fold of ``name``, read past its version if stale. One that
        never existed is not kept, so probing unknown names leaves nothing behind."""
        known = self._folds.get(name)
        if not self._stale(self._checked.get(name), now):
            return known
        events = self._store.read_stream(self._stream_of(name), after_version=known.version if known else None)
        if events:
            known = self._copy(known) if known is not None else self._new(name)
            known.apply(events)
        if known is None or (name not in self._folds and not known.exists):
            return None
        self._folds[name] = known
        self._checked[name] = now
        return known

    def put(self, fold: F) -> None:
        """A command's result: newer than anything kept, unless a catch-up got further."""
        name = self._name_of(fold)
        with self._lock:
            kept = self._folds.get(name)
            if kept is None or fold.version >= kept.version:
                self._folds[name] = fold
                self._checked[name] = self._clock()
            self._names.setdefault(name, None)

    def _listed(self, now: float) -> list[str]:
        if self._stale(self._directory_checked, now):
            names, self._directory_version = self._directory(self._store, self._directory_version)
            for name in names:
                self._names.setdefault(name, None)
            self._directory_checked = now
        return list(self._names)

    def all(self) -> list[F]:
        """The folds of the aggregates that exist, in listing order."""
        with self._lock:
            now = self._clock()
            folds = [self._caught_up(name, now) for name in self._listed(now)]
        return [fold for fold in folds if fold is not None and fold.exists]

    def version(self) -> int:
        """Grows whenever the directory or any aggregate's stream does: a live value's token."""
        with self._lock:
            now = self._clock()
            folds = [self._caught_up(name, now) for name in self._listed(now)]
            return self._directory_version + sum(fold.version for fold in folds if fold is not None)
