"""Generations of the recent-events feed on DynamoDB: which one serves, and the one a
replay builds (``workers.dynamodb_recent_replay``).

One state item (pk ``STATE``, sk ``recent-events``) holds the serving generation ``gen``
(0, the first, until a replay switches), the next generation number, and the build in
progress: its generation, owner, lease (epoch µs) and how far its scan of the event store
got (the scan's cursor and the facts read), so a killed replay's successor resumes it.
Live batches write every generation the item names (the serving one and the build), so a
build misses nothing that arrives while it scans. The switch is one conditional write
(``SET gen REMOVE build``, only if the build is still this owner's).
"""

from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from domain.micros import now_micros
from domain.ports import CheckpointConflict
from storage.dynamodb_base import ConditionFailed, Table

STATE_KEY = {"pk": {"S": "STATE"}, "sk": {"S": "recent-events"}}
#: How long a process may answer from the state it read last (live batches and reads).
STATE_CACHE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class RecentBuild:
    gen: int
    owner: str
    lease: int  # epoch µs
    #: The event store scan's cursor after the last page written (None: from the start).
    cursor: str | None = None
    done: int = 0


@dataclass(frozen=True, slots=True)
class RecentState:
    gen: int = 0
    next_gen: int = 1
    build: RecentBuild | None = None

    @property
    def written(self) -> tuple[int, ...]:
        """The generations a live batch writes."""
        return (self.gen,) if self.build is None else (self.gen, self.build.gen)


def _number(item: dict[str, Any], name: str, default: int) -> int:
    found = item.get(name)
    return default if found is None else int(found["N"])


def _state_of(item: dict[str, Any] | None) -> RecentState:
    if item is None:
        return RecentState()
    build = None
    if "build" in item:
        raw = item["build"]["M"]
        cursor = raw.get("cursor")
        build = RecentBuild(
            gen=int(raw["gen"]["N"]),
            owner=raw["owner"]["S"],
            lease=int(raw["lease"]["N"]),
            cursor=None if cursor is None else cursor["S"],
            done=_number(raw, "done", 0),
        )
    return RecentState(gen=_number(item, "gen", 0), next_gen=_number(item, "next", 1), build=build)


def _build_value(build: RecentBuild) -> dict[str, Any]:
    value: dict[str, Any] = {
        "gen": {"N": str(build.gen)},
        "owner": {"S": build.owner},
        "lease": {"N": str(build.lease)},
        "done": {"N": str(build.done)},
    }
    if build.cursor is not None:
        value["cursor"] = {"S": build.cursor}
    return {"M": value}


class RecentGenerations:
    """The feed's state item: read (briefly cached for live batches and reads), a build
    begun or resumed, its progress recorded, and the switch."""

    def __init__(self, table: Table, cache_seconds: float = STATE_CACHE_SECONDS) -> None:
        self._table = table
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, RecentState] | None = None

    def state(self, consistent: bool = True) -> RecentState:
        now = time.monotonic()
        if not consistent and self._cached is not None and now - self._cached[0] < self.cache_seconds:
            return self._cached[1]
        state = _state_of(self._table.get(STATE_KEY, "reading the recent events' state", consistent=True))
        self._cached = (now, state)
        return state

    def begin(self, owner: str, lease_seconds: float, fresh: bool = False) -> tuple[RecentBuild, bool]:
        """The build ``owner`` runs now, and whether it resumes one a dead owner left (its
        lease ran out; unless ``fresh``, which starts a new generation instead);
        ``CheckpointConflict`` while another owner's lease runs."""
        with suppress(ConditionFailed):
            self._table.put(
                "creating the recent events' state",
                Item={**STATE_KEY, "gen": {"N": "0"}, "next": {"N": "1"}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        state = self.state()
        now = now_micros()
        lease = now + int(lease_seconds * 1e6)
        left = state.build
        if left is not None and left.owner != owner and left.lease > now:
            raise CheckpointConflict("recent-events", "", f"a replay by {left.owner} is building generation {left.gen}")
        if left is not None and not fresh:
            taken = RecentBuild(left.gen, owner, lease, left.cursor, left.done)
            self._update(left, taken, "taking over a replay of recent events")
            return taken, True
        build = RecentBuild(state.next_gen, owner, lease)
        condition = "#next = :next AND " + (
            "attribute_not_exists(#build)" if left is None else "#build.#gen = :old AND #build.#owner = :was"
        )
        values: dict[str, Any] = {
            ":build": _build_value(build),
            ":after": {"N": str(build.gen + 1)},
            ":next": {"N": str(state.next_gen)},
        }
        names = {"#build": "build", "#next": "next"}
        if left is not None:
            values |= {":old": {"N": str(left.gen)}, ":was": {"S": left.owner}}
            names |= {"#gen": "gen", "#owner": "owner"}
        try:
            self._table.update(
                "registering a replay of recent events",
                Key=STATE_KEY,
                UpdateExpression="SET #build = :build, #next = :after",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ConditionFailed as failed:
            raise CheckpointConflict("recent-events", "", "the state changed while registering a replay") from failed
        finally:
            self._cached = None
        return build, False

    def _update(self, build: RecentBuild, new: RecentBuild, action: str) -> None:
        """Replace ``build`` by ``new`` unless another owner took it over."""
        try:
            self._table.update(
                action,
                Key=STATE_KEY,
                UpdateExpression="SET #build = :new",
                ConditionExpression="#build.#gen = :gen AND #build.#owner = :owner",
                ExpressionAttributeNames={"#build": "build", "#gen": "gen", "#owner": "owner"},
                ExpressionAttributeValues={
                    ":new": _build_value(new),
                    ":gen": {"N": str(build.gen)},
                    ":owner": {"S": build.owner},
                },
            )
        except ConditionFailed as failed:
            raise CheckpointConflict(
                "recent-events", "", f"the replay into generation {build.gen} was taken over"
            ) from failed
        finally:
            self._cached = None

    def progress(self, build: RecentBuild, cursor: str | None, done: int, lease_seconds: float) -> RecentBuild:
        """Record a page written (so a successor resumes after it) and extend the lease."""
        moved = RecentBuild(build.gen, build.owner, now_micros() + int(lease_seconds * 1e6), cursor, done)
        self._update(build, moved, "recording a replay's progress")
        return moved

    def switch(self, build: RecentBuild) -> None:
        """Make the build's generation serve, in one conditional write."""
        try:
            self._table.update(
                "switching recent events to a new generation",
                Key=STATE_KEY,
                UpdateExpression="SET #gen = :gen REMOVE #build",
                ConditionExpression="#build.#gen = :gen AND #build.#owner = :owner",
                ExpressionAttributeNames={"#build": "build", "#gen": "gen", "#owner": "owner"},
                ExpressionAttributeValues={":gen": {"N": str(build.gen)}, ":owner": {"S": build.owner}},
            )
        except ConditionFailed as failed:
            raise CheckpointConflict(
                "recent-events", "", f"the replay into generation {build.gen} was taken over"
            ) from failed
        finally:
            self._cached = None
