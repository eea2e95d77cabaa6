"""Datasets as the API serves them: upload (create or replace), read, export, delete, with
the caller's scope checked here (``editor`` to change, ``read`` to read).

An upload is parsed and checked whole (``domain.datasets``) before anything is written;
its rows go to the blob store first, then one event records the schema and names the blob,
appended at the version read (a racing upload of the same name is a conflict, not a lost
write). Deleting a dataset that a dashboard widget shows is refused, naming the widgets.
"""

from __future__ import annotations

import contextlib
import csv
import io
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from domain import datasets as agg
from domain.access import Principal, require
from domain.aggregate import decide_and_append
from domain.blobs import BlobStore
from domain.clock import Clock, now_utc
from domain.datasets import Dataset, DatasetConflict, Table
from domain.errors import NotFound
from domain.events import Event
from domain.ports import EventStore
from domain.widgets import Source, source_properties

PREFIX = "datasets"
#: Lists the dataset names (``dataset_listed``), so that they can be enumerated.
DIRECTORY_STREAM = "datasets"
VERSION_REFRESH_SECONDS = 0.5
LISTED = "dataset_listed"


def load(store: EventStore, name: str) -> Dataset:
    dataset = Dataset(name)
    dataset.apply(store.read_stream(agg.stream_of(name)))
    return dataset


def table_csv(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows as CSV text with a header line; empty cells for nulls, booleans as true/false."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else str(v).lower() if isinstance(v, bool) else _number(v) for v in row])
    return out.getvalue()


@dataclass
class _Directory:
    names: set[str]
    version: int


class _Listed(Exception):
    """The name is in the directory already: nothing to append."""


def _number(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


class DatasetsService:
    def __init__(
        self, events: EventStore, blobs: BlobStore, clock: Clock, users: Callable[[str], list[str]] = lambda _: []
    ) -> None:
        self.events = events
        self.blobs = blobs
        self.clock = clock
        self.users = users
        #: Per dataset name, its latest blob's key and rows (a replaced dataset has a new blob).
        self._tables: dict[str, tuple[str, Table]] = {}
        self._versions: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def upload(self, principal: Principal, name: str, table: Table, replace: bool) -> Dataset:
        """Create (``replace`` False: refused when it exists) or replace (404 when it does not)."""
        require(principal, "editor")
        agg.check_name(name)
        data = table.as_json()
        key = f"{PREFIX}/{name}/{uuid.uuid4().hex}.json"
        self.blobs.put(key, data)  # before the event that names it
        now = now_utc(self.clock)

        def decide(dataset: Dataset):
            self._check_existence(name, dataset, replace)
            event = Event(
                type=agg.UPLOADED,
                occurred_at=now,
                properties={
                    "name": name,
                    "columns": [{"name": c.name, "type": c.type} for c in table.columns],
                    "rows": len(table.rows),
                    "bytes": len(data),
                    "blob": key,
                    "by": {"keyId": principal.key_id, "name": principal.name},
                },
            )
            return [event], lambda _version: None

        try:
            decide_and_append(self.events, agg.stream_of(name), lambda s: load(s, name), decide)
        except Exception:
            self.blobs.delete(key)  # named by no event
            raise
        with self._lock:
            self._tables[name] = (key, table)
        if not replace:
            self._list(name, now)
        return load(self.events, name)

    def define(self, principal: Principal, name: str, query: Source, replace: bool) -> Dataset:
        """A dynamic dataset: a saved query (create, or ``replace`` what is there)."""
        require(principal, "editor")
        agg.check_name(name)
        now = now_utc(self.clock)

        def decide(dataset: Dataset):
            self._check_existence(name, dataset, replace)
            by = {"keyId": principal.key_id, "name": principal.name}
            props = {"name": name, "query": source_properties(query), "by": by}
            return [Event(type=agg.DEFINED, occurred_at=now, properties=props)], lambda _v: None

        previous = load(self.events, name)
        decide_and_append(self.events, agg.stream_of(name), lambda s: load(s, name), decide)
        if previous.exists and previous.blob:
            self.blobs.delete(previous.blob)
        if not replace:
            self._list(name, now)
        return load(self.events, name)

    @staticmethod
    def _check_existence(name: str, dataset: Dataset, replace: bool) -> None:
        if dataset.exists and not replace:
            raise DatasetConflict(f"dataset {name!r} exists already; PUT /v1/datasets/{name} replaces it")
        if not dataset.exists and replace:
            raise NotFound(f"no dataset {name!r}; POST /v1/datasets creates it")

    def _list(self, name: str, now: datetime) -> None:
        """Record the name in the directory stream (once; a re-created dataset is listed already)."""

        def names(store: EventStore) -> _Directory:
            events = store.read_stream(DIRECTORY_STREAM)
            return _Directory({e.properties["name"] for e in events}, (events[-1].version or 0) if events else 0)

        def decide(directory: _Directory):
            if name in directory.names:
                raise _Listed
            return [Event(type=LISTED, occurred_at=now, properties={"name": name})], lambda _v: None

        with contextlib.suppress(_Listed):
            decide_and_append(self.events, DIRECTORY_STREAM, names, decide)

    def listed(self, principal: Principal) -> list[Dataset]:
        """Every dataset that exists, by name. Needs ``read``."""
        require(principal, "read")
        names = {e.properties["name"] for e in self.events.read_stream(DIRECTORY_STREAM) if e.type == LISTED}
        return [d for d in (load(self.events, n) for n in sorted(names)) if d.exists]

    def get(self, principal: Principal, name: str) -> Dataset:
        require(principal, "read")
        return self.found(name)

    def found(self, name: str) -> Dataset:
        dataset = load(self.events, name) if agg.NAME.fullmatch(name) else Dataset(name)
        if not dataset.exists:
            raise NotFound(f"no dataset {name[:80]!r}")
        return dataset

    def table(self, name: str) -> Table:
        """A static dataset's rows (cached per blob: a replaced dataset has a new blob);
        ``NotFound`` for a dynamic one (``DashboardsService.dataset_table`` answers its query)."""
        dataset = self.found(name)
        if dataset.blob is None:
            raise NotFound(f"dataset {name!r} is a saved query, not rows")
        key = dataset.blob
        with self._lock:
            cached = self._tables.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        table = Table.from_json(self.blobs.get(key))
        with self._lock:
            self._tables[name] = (key, table)
        return table

    def version(self, name: str) -> int:
        """The dataset stream's version, read at most every ``VERSION_REFRESH_SECONDS`` (live
        dashboards poll it to notice a replaced dataset)."""
        now = time.monotonic()
        with self._lock:
            cached = self._versions.get(name)
        if cached is not None and now - cached[0] < VERSION_REFRESH_SECONDS:
            return cached[1]
        found = load(self.events, name).version if agg.NAME.fullmatch(name) else 0
        with self._lock:
            if len(self._versions) > 10_000:
                self._versions.clear()  # names come from dashboard definitions: bounded in practice
            self._versions[name] = (now, found)
        return found

    def delete(self, principal: Principal, name: str) -> Dataset:
        """Delete, unless a dashboard widget shows it (``DatasetConflict`` naming them)."""
        require(principal, "editor")
        dataset = self.found(name)
        users = self.users(name)
        if users:
            raise DatasetConflict(f"dataset {name!r} is used by {', '.join(users)}; change those widgets first", users)
        now = now_utc(self.clock)

        def decide(current: Dataset):
            if not current.exists:
                raise NotFound(f"no dataset {name!r}")
            by = {"keyId": principal.key_id, "name": principal.name}
            return [Event(type=agg.DELETED, occurred_at=now, properties={"name": name, "by": by})], lambda _v: None

        decide_and_append(self.events, agg.stream_of(name), lambda s: load(s, name), decide)
        if dataset.blob:
            self.blobs.delete(dataset.blob)
        return load(self.events, name)
