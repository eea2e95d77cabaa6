"""The one wiring point: builds a running Pulse from ``Settings``.

``bootstrap(settings)`` opens the configured backend (the only place that reads
``settings.store``), and the returned ``Pulse`` owns everything built from it: the event
store, the read models, the projection engine and its feed driver, and what must be
cached per process (it is built once per process and handed to Flask's app factory, the
CLI, the Lambda handlers and the benches).

Each backend module (``bootstrap.sqlite``, ``bootstrap.dynamodb``) exposes one factory,
``open_backend(settings)``, returning a ``Backend``: its stores, its projection handlers,
its feed driver, its tables. To add a read model, add its handler to the backends'
``handlers`` (``bootstrap.positioned`` for SQLite and memory); no driver changes.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from bootstrap.alerts import alerts_service
from bootstrap.archive import archive_enabled, archive_handler
from domain.clock import SYSTEM_CLOCK, Clock
from domain.parked import ParkedEvents
from domain.ports import EventStore, RecentEventsReader, ViewStore
from domain.replay import ReplayLedger
from domain.settings import Settings
from projections.buckets import Bucketing, Retention
from services.alerts import AlertsService
from services.dashboards import DashboardsService
from services.datasets import DatasetsService
from services.engine import ProjectionEngine, ProjectionHandler
from services.images import ImagesService
from services.metrics import MetricsService
from services.replay import ReplayService

#: ``settings.store`` → the module whose ``open_backend`` builds that backend ("memory":
#: the in-memory fake tests use, see ``domain.settings.TEST_STORES``).
BACKENDS = {"sqlite": "bootstrap.sqlite", "dynamodb": "bootstrap.dynamodb", "memory": "bootstrap.memory"}


class Worker(Protocol):
    """A feed driver running the engine (the SQLite log tail, the Streams poller)."""

    def run(self, stop: threading.Event | None = None, parent_pid: int | None = None) -> None: ...

    def catch_up(self) -> int: ...


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    retention: Retention = field(default_factory=Retention)
    batch_size: int = 5000
    #: Facts per batch while the worker is more than a batch behind (catch-up, replay);
    #: None: 4 x batch_size.
    catch_up_batch_size: int | None = None
    #: DynamoDB: bounds of clock skew and write latency for backfills (None: settings/env).
    rebuild_fence_seconds: float | None = None
    rebuild_settle_seconds: float | None = None
    #: What "now" is for time-based projections (alert evaluation); None: the Pulse's clock.
    clock: Clock | None = None
    #: Run the archive in a child process of its own where the backend can (``pulse worker``
    #: does; ``workers.lanes``), and what that child runs first (its logging).
    archive_process: bool = False
    child_setup: Callable[[], None] | None = None
    #: The archive runs in another process (``workers.lanes``): the handlers leave it out,
    #: unbuilt (it would load pyarrow, 40 MB, into a process that does not run it).
    without_archive: bool = False


class Backend(Protocol):
    """What a backend module opens from the settings."""

    name: str
    settings: Settings
    events: EventStore
    views: ViewStore
    recent: RecentEventsReader
    #: Whether `pulse serve` runs a projection worker beside the web server by default.
    worker_beside_server: bool
    #: Whether the archive can run in a process of its own (``workers.lanes``): its stores
    #: are files or services another process opens too, and its feed is the log's one order.
    archive_apart: bool

    def handlers(self, options: WorkerOptions) -> list[ProjectionHandler]:
        """Every read model of this backend, as the engine drives them."""

    def worker(self, engine: ProjectionEngine, options: WorkerOptions, clock: Clock) -> Worker:
        """The feed driver of this backend, feeding ``engine``."""

    def create_tables(self) -> list[str]:
        """Create what the backend needs, idempotently; returns what now exists."""

    def replay_ledger(self) -> ReplayLedger:
        """Where replays are requested, leased and reported (``domain.replay``)."""

    def replayable(self) -> list[str]:
        """The projections ``pulse replay`` can rebuild on this backend."""

    def replayer(self, options: WorkerOptions, clock: Clock) -> Any:
        """Runs replays (``services.replay``); ``ReplayUnsupported`` where it cannot."""

    def close(self) -> None: ...


def backend_module(settings: Settings) -> Any:
    try:
        return importlib.import_module(BACKENDS[settings.store])
    except KeyError:
        raise ValueError(f"unknown store {settings.store!r}; one of {', '.join(BACKENDS)}") from None


def create_tables(settings: Settings) -> list[str]:
    """Create the configured backend's tables (idempotent): `pulse tables create`."""
    return backend_module(settings).create_tables(settings)


def drop_tables(settings: Settings) -> None:
    """Delete every table of the configured backend, data and all."""
    backend_module(settings).drop_tables(settings)


@dataclass
class Pulse:
    """A running Pulse: the backend's stores, the engine, and per-process state."""

    settings: Settings
    backend: Backend
    #: What "now" is for results that depend on it (series ranges, retention, stream tokens).
    clock: Clock
    #: Caches that live as long as this Pulse (one per process), keyed by their user.
    caches: dict[str, Any] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    #: The engines built here, closed (their handlers' threads stopped) before the stores.
    _engines: list[ProjectionEngine] = field(default_factory=list)

    @property
    def store(self) -> EventStore:
        """The event store."""
        return self.backend.events

    @property
    def views(self) -> ViewStore:
        """The counters' read models, checkpoints and change markers."""
        return self.backend.views

    @property
    def recent(self) -> RecentEventsReader:
        return self.backend.recent

    @property
    def bucketing(self) -> Bucketing:
        return self.cached("bucketing", lambda: Bucketing(self.settings.timezone))

    @property
    def metrics(self) -> MetricsService:
        """Series, breakdowns, gauges, definitions and projection status, scope-checked."""
        return self.cached(
            "metrics",
            lambda: MetricsService(
                self.store, self.views, self.bucketing, self.clock, replays=self.backend.replay_ledger()
            ),
        )

    @property
    def replays(self) -> ReplayService:
        """Replay requests and status, scope-checked (``services.replay``)."""
        return self.cached(
            "replays", lambda: ReplayService(self.backend.replay_ledger(), self.backend.replayable(), self.clock)
        )

    def replayer(self, options: WorkerOptions | None = None) -> Any:
        """What runs a replay in this process (`pulse replay`, the worker's request watcher)."""
        return self.backend.replayer(options or WorkerOptions(), self.clock)

    @property
    def parked(self) -> ParkedEvents:
        """Events the projections parked (``domain.parked``), beside their checkpoints."""
        from bootstrap.parked import open_parked

        return self.cached("parked", lambda: open_parked(self.backend))

    @property
    def dashboards(self) -> DashboardsService:
        """Dashboards: listed, resolved with their widgets' data, edited; rights checked."""
        return self.cached(
            "dashboards",
            lambda: DashboardsService(
                self.store, self.metrics, self.recent, self.clock, self.datasets, lambda: self.alerts
            ),
        )

    @property
    def datasets(self) -> DatasetsService:
        """Uploaded tables: rows in a blob store, schema in the event store; rights checked."""

        def build() -> DatasetsService:
            from bootstrap.datasets import dataset_blobs

            # Lazily: the dashboards name the widgets that use a dataset, and show datasets.
            return DatasetsService(self.store, dataset_blobs(self.settings), self.clock, self._dataset_users)

        return self.cached("datasets", build)

    @property
    def images(self) -> ImagesService:
        """Images for IMAGE widgets, beside the datasets' blobs."""
        return self.cached("images", lambda: ImagesService(self.datasets.blobs))

    def _dataset_users(self, name: str) -> list[str]:
        return self.dashboards.dataset_users(name)

    @property
    def alerts(self) -> AlertsService:
        """Alert rules, their history and deliveries, test sends and backtests, scope-checked."""
        return self.cached("alerts", lambda: alerts_service(self.store, self.views, self.settings, self.clock))

    def cached(self, name: str, build: Callable[[], Any]) -> Any:
        """The per-process object ``name``, built once by ``build``."""
        found = self.caches.get(name)
        if found is None:
            with self._lock:
                found = self.caches.get(name)
                if found is None:
                    found = self.caches[name] = build()
        return found

    def with_settings(self, settings: Settings, clock: Clock | None = None) -> Pulse:
        """This Pulse's backend under other settings (auth, limits) or clock, with its own caches.
        The engines it builds are this Pulse's to close: they live as long as the backend."""
        return Pulse(settings=settings, backend=self.backend, clock=clock or self.clock, _engines=self._engines)

    def engine(
        self, options: WorkerOptions | None = None, handlers: list[ProjectionHandler] | None = None
    ) -> ProjectionEngine:
        """Every read model of the backend, or ``handlers``, on one engine."""
        options = options or WorkerOptions()
        if options.clock is None:
            options = replace(options, clock=self.clock)
        if handlers is None:
            handlers = self.backend.handlers(options)
        engine = ProjectionEngine(
            handlers,
            retry_seconds=self.settings.projection_retry_seconds,
            parked=self.parked,
            retries=self.settings.projection_retries,
        )
        self._engines.append(engine)
        return engine

    def worker(self, options: WorkerOptions | None = None) -> Worker:
        """The backend's feed driver running every read model; with ``archive_process``,
        the archive's in a child process beside it where the backend allows."""
        options = options or WorkerOptions()
        if not (options.archive_process and self.backend.archive_apart and archive_enabled(self.settings)):
            return self.backend.worker(self.engine(options), options, self.clock)
        from workers.lanes import ArchiveLane, LanedWorker

        main = self.engine(replace(options, without_archive=True))
        return LanedWorker(self.backend.worker(main, options, self.clock), ArchiveLane(self.settings, options))

    def archive_worker(self, options: WorkerOptions | None = None) -> Worker:
        """The backend's feed driver running the archive alone (``workers.lanes``' child)."""
        options = options or WorkerOptions()
        archive = archive_handler(self.settings, definitions=self.store)
        if archive is None:
            raise ValueError("the archive is off (PULSE_ARCHIVE)")
        return self.backend.worker(self.engine(options, [archive]), options, self.clock)

    def close(self) -> None:
        for engine in self._engines:
            engine.close()
        for value in self.caches.values():
            stop = getattr(value, "stop", None)
            if callable(stop):
                stop()
        self.backend.close()


def bootstrap(
    settings: Settings,
    clock: Clock | None = None,
    create: bool = False,
) -> Pulse:
    """Open the backend ``settings`` name and return the running Pulse built on it.

    ``create``: create the backend's tables first (idempotent); the embedded store always
    creates its files.
    """
    module = backend_module(settings)
    if create:
        module.create_tables(settings)
    backend = module.open_backend(settings)
    return Pulse(settings=settings, backend=backend, clock=clock or SYSTEM_CLOCK)


__all__ = ["BACKENDS", "Backend", "Pulse", "WorkerOptions", "bootstrap", "create_tables", "drop_tables"]
