"""The `pulse` command. Every subcommand takes the same store options; PULSE_* variables
give the same settings and the options override them."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import click

from domain.settings import STORES, Settings


def store_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Adds --store/--db/--dynamodb-endpoint/--region/--table-prefix and passes `settings`."""

    @click.option("--store", type=click.Choice(STORES), help="Event store backend [PULSE_STORE].")
    @click.option("--db", help="SQLite file for the embedded store [PULSE_DB].")
    @click.option("--dynamodb-endpoint", help="DynamoDB endpoint, e.g. DynamoDB Local [PULSE_DYNAMODB_ENDPOINT].")
    @click.option("--region", help="AWS region [PULSE_REGION].")
    @click.option("--table-prefix", help="Prefix of the DynamoDB table names [PULSE_TABLE_PREFIX].")
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        store: str | None,
        db: str | None,
        dynamodb_endpoint: str | None,
        region: str | None,
        table_prefix: str | None,
        **kwargs: Any,
    ) -> Any:
        try:
            settings = Settings.from_env(
                os.environ,
                store=store,
                db=db,
                dynamodb_endpoint=dynamodb_endpoint,
                region=region,
                table_prefix=table_prefix,
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        return command(*args, settings=settings, **kwargs)

    return wrapper


#: Threads per worker that subscription streams never take: queries and ingest keep them.
QUERY_THREADS = 4


def size_threads(threads: int | None, max_streams: int | None, default_streams: int) -> tuple[int, int]:
    """``(threads, max streams)`` per worker such that streams always leave
    ``QUERY_THREADS`` threads free; raises ``click.UsageError`` for a combination that would not."""
    if threads is None:
        streams = default_streams if max_streams is None else max_streams
        return streams + QUERY_THREADS, streams
    if max_streams is None:
        return threads, max(threads - QUERY_THREADS, 0)
    if threads < max_streams + QUERY_THREADS:
        raise click.UsageError(
            f"--max-streams {max_streams} needs --threads {max_streams + QUERY_THREADS} or more: each open"
            f" subscription stream holds a thread and {QUERY_THREADS} stay free for queries and ingest"
        )
    return threads, max_streams


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Pulse: event-sourced real-time analytics."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn worker processes.")
@click.option(
    "--threads",
    type=click.IntRange(1),
    help=f"Threads per worker (gthread). [default: max streams + {QUERY_THREADS}]",
)
@click.option(
    "--max-streams",
    type=click.IntRange(0),
    help=f"Open subscription streams per worker, each holding a thread [PULSE_MAX_STREAMS;"
    f" default: threads - {QUERY_THREADS}, or {Settings().max_streams} without --threads].",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve without API keys: every caller is admin. Only on a trusted machine [PULSE_AUTH=off].",
)
@click.option(
    "--no-worker",
    is_flag=True,
    help="Start no projection worker beside the server: a Lambda reads the DynamoDB stream, or you run"
    " `pulse worker` yourself.",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Also stream the demo coffee business into this server (`pulse demo --duration 0`) once it is up:"
    " the quick start's live dashboard. Not for a store holding your own data.",
)
@store_options
def serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    threads: int | None,
    max_streams: int | None,
    no_auth: bool,
    no_worker: bool = False,
    demo: bool = False,
) -> None:
    """Serve /graphql and the REST API with gunicorn (gthread workers)."""
    if no_auth:
        settings = dataclasses.replace(settings, auth=False)
    if max_streams is None and os.environ.get("PULSE_MAX_STREAMS"):
        max_streams = settings.max_streams
    threads, max_streams = size_threads(threads, max_streams, settings.max_streams)
    settings = dataclasses.replace(settings, max_streams=max_streams)
    if not settings.auth:
        click.secho(
            "WARNING: auth is OFF: anyone who can reach this server can ingest, read and administer"
            " Pulse without an API key.",
            fg="red",
            bold=True,
            err=True,
        )
    # GET /metrics sums every gunicorn worker's counters from files in a fresh directory;
    # it must be set before any worker imports prometheus_client.
    metrics_dir = _fresh_metrics_dir()
    from gunicorn.app.base import BaseApplication

    from api.app import create_app
    from api.keepalive import cap_requests_per_connection
    from api.logs import configure_logging
    from api.worker_memory import post_worker_init
    from bootstrap import bootstrap

    # Opening the backend once here creates the embedded store's files before the workers fork.
    opened = bootstrap(settings)
    worker_beside = opened.backend.worker_beside_server and not no_worker
    opened.close()
    demo_process: list[Any] = []

    def when_ready(server: Any) -> None:
        if demo:  # once gunicorn listens, so the demo's first request finds the server
            demo_process.append(_start_demo(settings, host, port))

    class PulseServer(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", "-")
            # The request id (X-Request-Id, generated when not sent) on each access line too.
            self.cfg.set("access_log_format", self.cfg.access_log_format + " rid=%({x-request-id}o)s")
            self.cfg.set("child_exit", _mark_worker_dead)
            self.cfg.set("when_ready", when_ready)
            # Connection: close after PULSE_KEEPALIVE_REQUESTS requests, so connections respread
            # over the workers (api/keepalive.py).
            self.cfg.set("pre_request", cap_requests_per_connection(settings.keepalive_requests))
            # Every request thread started at boot, freed memory given back: a worker's
            # memory steps up at start and then stays flat (api/worker_memory.py).
            self.cfg.set("post_worker_init", post_worker_init)
            if "control_socket" in self.cfg.settings:  # gunicorn 24+: one per server, not one per host
                self.cfg.set("control_socket", control_socket_path(host, port))

        def load(self):
            configure_logging(settings.log_format, "pulse-web")
            return create_app(settings)

    click.echo(f"Pulse on http://{host}:{port}/  (GraphQL: /graphql; store: {settings.store})")
    click.echo(
        f"gthread: {workers} worker(s) x {threads} threads; up to {max_streams} subscription streams per worker"
        f" ({workers * max_streams} in all), {threads - max_streams} threads each kept for queries and ingest"
    )
    # One projection worker process beside the server, so numbers are live with one command.
    projection_worker = _start_projection_worker(settings) if worker_beside else None
    if projection_worker is None:
        why = "--no-worker" if no_worker else f"the {settings.store} store"
        click.echo(f"no projection worker started ({why}): run `pulse worker`, or numbers stay at zero", err=True)
    try:
        PulseServer().run()
    finally:
        for process in demo_process:
            _stop_projection_worker(process)
        _stop_projection_worker(projection_worker)
        import shutil

        shutil.rmtree(metrics_dir, ignore_errors=True)


def _fresh_metrics_dir() -> str:
    import tempfile

    path = tempfile.mkdtemp(prefix="pulse-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def _mark_worker_dead(server: Any, worker: Any) -> None:
    """gunicorn's child_exit hook: a dead worker's live gauges (open streams) stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def control_socket_path(host: str, port: int) -> str:
    """gunicorn's control socket (``gunicornc``) for the server bound to ``host:port``:
    gunicorn's directory ($XDG_RUNTIME_DIR, else ~/.gunicorn), a name per address, so
    two ``pulse serve`` on one host never take each other's."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    directory = runtime if runtime and os.path.isdir(runtime) else os.path.join(os.path.expanduser("~"), ".gunicorn")
    safe_host = "".join(c if c.isalnum() or c in ".-" else "_" for c in host)
    return os.path.join(directory, f"pulse-{safe_host}-{port}.ctl")


def _start_projection_worker(settings: Settings):
    """`pulse worker` as a child process that exits when this process does (even on kill -9)."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "cli", "worker", *_store_args(settings), "--parent-pid", str(os.getpid())]
    return subprocess.Popen(command)


def _store_args(settings: Settings) -> list[str]:
    """The store options this server was given (not only the environment's), for a child."""
    args = ["--store", settings.store, "--db", settings.db]
    if settings.store == "dynamodb":
        args += ["--region", settings.region, "--table-prefix", settings.table_prefix]
        if settings.dynamodb_endpoint:
            args += ["--dynamodb-endpoint", settings.dynamodb_endpoint]
    return args


def _start_demo(settings: Settings, host: str, port: int):
    """`pulse demo --duration 0` against this server, as a child process; its progress line
    stays out of the server's log, its errors do not."""
    import subprocess
    import sys

    local = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    url = f"http://{local}:{port}"
    command = [sys.executable, "-m", "cli", "demo", "--duration", "0", "--url", url, *_store_args(settings)]
    click.echo(f"demo: streaming a coffee business into {url}; open {url}/d/coffee-shops-live")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def _stop_projection_worker(process) -> None:
    from workers.processes import stop

    if process is not None:
        stop(process)


@main.command()
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--minute-retention-days", default=7, show_default=True, type=click.IntRange(0), help="0 keeps minutes forever."
)
@click.option("--hour-retention-days", default=400, show_default=True, type=click.IntRange(0), help="0: forever.")
@click.option("--day-retention-days", default=0, show_default=True, type=click.IntRange(0), help="0: forever.")
@click.option("--parent-pid", type=int, hidden=True, help="Exit when this process is gone (used by serve).")
@click.option(
    "--rebuild-fence-seconds",
    type=click.FloatRange(0),
    help="DynamoDB: bound on clock skew for backfills [PULSE_REBUILD_FENCE_SECONDS, 30].",
)
@click.option(
    "--rebuild-settle-seconds",
    type=click.FloatRange(0),
    help="DynamoDB: bound on ingest write latency for backfills [PULSE_REBUILD_SETTLE_SECONDS, 120].",
)
@click.option(
    "--one-process",
    is_flag=True,
    help="Run the archive on the same engine as the other read models, not in a process of its own.",
)
@store_options
def worker(
    settings: Settings,
    batch_size: int,
    minute_retention_days: int,
    hour_retention_days: int,
    day_retention_days: int,
    parent_pid: int | None,
    rebuild_fence_seconds: float | None = None,
    rebuild_settle_seconds: float | None = None,
    one_process: bool = False,
) -> None:
    """Run one projection worker: every read model (counters, gauges, recent events), live.
    On SQLite the archive runs in a second process beside it (workers/lanes.py)."""
    import signal
    import threading

    from api.logs import configure_logging
    from bootstrap import WorkerOptions, bootstrap
    from projections.buckets import Retention

    configure_logging(settings.log_format, "pulse-worker")
    options = WorkerOptions(
        retention=Retention(
            minute_days=minute_retention_days or None,
            hour_days=hour_retention_days or None,
            day_days=day_retention_days or None,
        ),
        batch_size=batch_size,
        rebuild_fence_seconds=rebuild_fence_seconds,
        rebuild_settle_seconds=rebuild_settle_seconds,
        archive_process=not one_process,
        child_setup=functools.partial(configure_logging, settings.log_format, "pulse-archive"),
    )
    try:
        pulse = bootstrap(settings)
        projection_worker = pulse.worker(options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    from workers.replays import ReplayRequestWatcher

    ReplayRequestWatcher(pulse, options).start(stop)  # runs the replays `replayProjection` asks for
    try:
        projection_worker.run(stop, parent_pid=parent_pid)
    finally:
        pulse.close()


@main.command()
@click.argument("projection", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every replayable read model, one after the other.")
@click.option("--fresh", is_flag=True, help="Start from the first event instead of resuming a killed replay.")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 100_000))
@store_options
def replay(settings: Settings, projection: str | None, replay_all: bool, fresh: bool, batch_size: int) -> None:
    """Rebuild a read model from the event store into a new generation while the current one
    keeps serving, then switch to it (PROJECTION as `projections` names it, e.g. metrics)."""
    import sys

    from bootstrap import WorkerOptions, bootstrap
    from workers.replays import replay_in_terminal

    pulse = bootstrap(settings)
    try:
        names = pulse.backend.replayable() if replay_all else [projection] if projection else []
        if not names or (replay_all and projection):
            raise click.UsageError(f"give one PROJECTION or --all; replayable: {', '.join(pulse.backend.replayable())}")
        if projection and projection not in pulse.backend.replayable():
            raise click.UsageError(
                f"cannot replay {projection!r}; replayable: {', '.join(pulse.backend.replayable()) or 'none'}"
            )
        code, message = replay_in_terminal(pulse, names, WorkerOptions(batch_size=batch_size), fresh=fresh)
    finally:
        pulse.close()
    click.echo(message, err=code != 0)
    if code:
        sys.exit(code)


@main.command()
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="The running Pulse server.")
@click.option("--rate", default=20.0, show_default=True, type=click.FloatRange(0.1, 5000), help="Events per second.")
@click.option("--duration", default=120.0, show_default=True, type=float, help="Seconds to stream; 0: until Ctrl-C.")
@click.option("--history-hours", default=3.0, show_default=True, type=click.FloatRange(0, 48), help="Past data first.")
@click.option("--key", envvar="PULSE_DEMO_KEY", help="API key with admin scope [PULSE_DEMO_KEY]; see below.")
@click.option("--seed", type=int, help="Random seed, for a repeatable stream.")
@store_options
def demo(
    settings: Settings,
    url: str,
    rate: float,
    duration: float,
    history_hours: float,
    key: str | None,
    seed: int | None,
) -> None:
    """Stream a small coffee business into a running Pulse, through its public API.

    Start the server first (`pulse serve`). When it requires API keys and no --key is
    given, the demo creates an admin key named demo-<time> in the server's store (the
    same --db / PULSE_* settings, i.e. run it on the same machine) and prints the secret
    for use in GraphiQL. With `pulse serve --no-auth` no key is needed.
    """
    import random
    from datetime import UTC, datetime

    from workers import demo as business

    client = business.PulseClient(url, key)
    try:
        if key is None and business.needs_key(client):
            client.key = _demo_key(settings)
            business.wait_for_key(client)
        for line in business.define_all(client):
            click.echo(line)
        from workers.demo_dashboard import publish_dashboard

        for line in publish_dashboard(client):
            click.echo(line)
        stream = business.DemoStream(random.Random(seed))
        history = stream.history(history_hours, datetime.now(UTC))
        for start in range(0, len(history), 500):
            client.post_events(history[start : start + 500])
        click.echo(f"posted {len(history)} events of the last {history_hours:g} hours; streaming {rate:g}/s ...")

        def report(totals: business.DemoTotals, elapsed: float) -> None:
            points = client.graphql(business.TODAY_REVENUE)["series"]["points"]
            today = points[-1]["value"] if points else 0
            click.echo(
                f"\r{elapsed:5.0f}s  posted {totals.posted}  duplicates acknowledged {totals.duplicates}"
                f"  revenue today {today or 0:,.2f}",
                nl=False,
            )

        try:
            totals = business.run_stream(client, stream, rate, duration, report)
        except KeyboardInterrupt:
            totals = None
        click.echo()
        if totals is not None:
            click.echo(f"done: {totals.posted} events posted, {totals.duplicates} acknowledged as duplicates")
    except business.ApiError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"open {url.rstrip('/')}/d/coffee-shops-live to watch the demo dashboard move (GraphiQL: /graphql)")


def _demo_key(settings: Settings) -> str:
    """An admin key created in the local store, printed for GraphiQL."""
    from datetime import UTC, datetime

    from services import keys as service

    store = _open_store(settings)
    try:
        key, secret = service.create(store, f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}", ["admin"])
    finally:
        store.close()
    click.echo(f"the server requires an API key: created admin key {key.id} ({key.name}) in its store")
    click.echo("use it in GraphiQL's Headers tab (shown once; revoke with `pulse keys revoke " + key.id + "`):")
    click.echo(json.dumps({"Authorization": f"Bearer {secret}"}))
    return secret


@main.group()
def tables() -> None:
    """Create the store's tables."""


@tables.command("create")
@store_options
def tables_create(settings: Settings) -> None:
    """Create the tables if they do not exist (idempotent)."""
    from bootstrap import create_tables

    for name in create_tables(settings):
        click.echo(f"ready: {name}")


@main.group()
def keys() -> None:
    """Create, list and revoke API keys (stored hashed, as events in the store)."""


def _open_store(settings: Settings):
    """The event store of the configured backend (the embedded one creates its files)."""
    from bootstrap import bootstrap

    return bootstrap(settings).store


def _fail(exc: Exception) -> None:
    from domain.errors import ValidationError

    if isinstance(exc, ValidationError):
        raise click.ClickException("; ".join(error.message for error in exc.errors))
    raise click.ClickException(str(exc))


@keys.command("create")
@click.option("--name", required=True, help="What the key is for, e.g. pos-store-12 (unique).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="ingest, read or admin (admin implies all); repeat for several.",
)
@store_options
def keys_create(settings: Settings, name: str, scopes: tuple[str, ...]) -> None:
    """Create a key and print its secret once, alone on the last line."""
    from domain.errors import PulseError
    from services import keys as service

    store = _open_store(settings)
    try:
        key, secret = service.create(store, name, scopes)
    except PulseError as exc:
        _fail(exc)
    finally:
        store.close()
    click.echo(f"created API key {key.id} ({key.name}) with scopes {', '.join(sorted(key.scopes))}")
    click.echo("the secret below is shown only this once; send it as 'Authorization: Bearer <secret>':")
    click.echo(secret)


@keys.command("list")
@store_options
def keys_list(settings: Settings) -> None:
    """List keys (never their secrets)."""
    from services import keys as service

    store = _open_store(settings)
    try:
        listed = service.listed(store)
    finally:
        store.close()
    if not listed:
        click.echo("no API keys yet: pulse keys create --name NAME --scope ingest")
        return
    click.echo(f"{'id':<16}  {'name':<24}  {'scopes':<20}  {'created (UTC)':<19}  status")
    for key in listed:
        status = f"revoked {key.revoked_at:%Y-%m-%d %H:%M:%S}" if key.revoked_at else "active"
        click.echo(
            f"{key.id:<16}  {key.name:<24}  {','.join(sorted(key.scopes)):<20}"
            f"  {key.created_at:%Y-%m-%d %H:%M:%S}  {status}"
        )


@keys.command("revoke")
@click.argument("key_id")
@store_options
def keys_revoke(settings: Settings, key_id: str) -> None:
    """Revoke a key for good; servers refuse it within about a second."""
    from domain.errors import PulseError
    from services import keys as service

    store = _open_store(settings)
    try:
        key = service.revoke(store, key_id)
    except PulseError as exc:
        _fail(exc)
    finally:
        store.close()
    click.echo(f"revoked API key {key.id} ({key.name})")


@main.group()
def archive() -> None:
    """The Parquet archive of every fact (README "Archive"): compact, query, export."""


def _archive_store(settings: Settings):
    from bootstrap.archive import blob_store

    return blob_store(settings)


@archive.command("compact")
@click.option("--date", "date", required=True, help="UTC day, YYYY-MM-DD.")
@click.option("--type", "event_type", help="One event type (default: every type).")
@store_options
def archive_compact(settings: Settings, date: str, event_type: str | None) -> None:
    """Merge each hour's small files of DATE into one (idempotent, safe to rerun after a crash)."""
    import datetime as dt

    from services.archive import compact

    try:
        dt.date.fromisoformat(date)
    except ValueError as exc:
        raise click.BadParameter(f"expected YYYY-MM-DD, got {date!r}", param_hint="--date") from exc
    done = compact(_archive_store(settings), settings.archive_prefix, date, event_type)
    for each in done:
        click.echo(f"{each.merged}: {len(each.removed)} files merged, {each.rows} rows")
    click.echo(f"{len(done)} hours compacted")


@archive.command("query")
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["tsv", "csv", "json"]), default="tsv", show_default=True)
@store_options
def archive_query(settings: Settings, sql: str, fmt: str) -> None:
    """Run SQL with DuckDB over the view `events` (hive-partitioned by type, date, hour)."""
    import csv
    import sys

    from services.archive_query import EmptyArchive, query

    try:
        columns, rows = query(_archive_store(settings), sql, prefix=settings.archive_prefix)
    except EmptyArchive as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # DuckDB's errors: bad SQL
        if type(exc).__module__.startswith("duckdb") or type(exc).__module__.startswith("_duckdb"):
            raise click.ClickException(str(exc)) from exc
        raise
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(dict(zip(columns, row, strict=True)), default=str))
        return
    writer = csv.writer(sys.stdout, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)


@archive.command("export")
@click.option("--type", "event_type", required=True, help="The event type.")
@click.option("--from", "start", help="From (inclusive): an ISO date or time, UTC unless it says.")
@click.option("--to", "end", help="To (exclusive).")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--output", "-o", help="File to write [default: <type>.<format>].")
@store_options
def archive_export(
    settings: Settings, event_type: str, start: str | None, end: str | None, fmt: str, output: str | None
) -> None:
    """Write one type's facts (of a time range) to CSV or Parquet, by occurredAt."""
    from services.archive_query import EmptyArchive, export

    target = output or f"{event_type}.{fmt}"
    try:
        count = export(_archive_store(settings), target, event_type, start, end, fmt, prefix=settings.archive_prefix)
    except EmptyArchive as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{count} events written to {target}")


@main.group()
def deploy() -> None:
    """AWS deployment steps Zappa does not do (see docs/aws.md)."""


@deploy.command("wire-streams")
@click.option("--stage", required=True, help="The Zappa stage, e.g. production.")
@click.option(
    "--zappa-settings",
    default="zappa_settings.json",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Where the stage is defined.",
)
@click.option("--batch-size", default=100, show_default=True, type=int, help="Records per invocation.")
@click.option(
    "--max-retries", default=10, show_default=True, type=int, help="Retries of a failing batch (-1: forever)."
)
@click.option("--on-failure", "on_failure", help="SQS queue or SNS topic ARN for records given up on.")
@click.option(
    "--starting-position",
    default="TRIM_HORIZON",
    show_default=True,
    type=click.Choice(["TRIM_HORIZON", "LATEST"]),
    help="Where a new mapping starts (fixed once created).",
)
@click.option("--no-bisect", is_flag=True, help="Do not split a failing batch in two to isolate a bad record.")
@click.option("--fix-settings", is_flag=True, help="Write the stream ARN into the stage's events entry, then stop.")
def deploy_wire_streams(
    stage: str,
    zappa_settings: str,
    batch_size: int,
    max_retries: int,
    on_failure: str | None,
    starting_position: str,
    no_bisect: bool,
    fix_settings: bool,
) -> None:
    """Create or update the events stream's mapping to the stage's Lambda, with
    StartingPosition, ReportBatchItemFailures, bisection, retries and an on-failure
    destination (which Zappa does not pass); turn on the views table's TTL."""
    from pathlib import Path

    import boto3

    from storage.dynamodb_base import TTL_ATTRIBUTE, make_client
    from storage.dynamodb_feed import latest_stream_arn
    from workers import wiring

    path = Path(zappa_settings)
    try:
        target = wiring.read_stage(path, stage)
        options = wiring.MappingOptions(
            batch_size=batch_size,
            maximum_retry_attempts=max_retries,
            bisect_on_error=not no_bisect,
            on_failure_arn=on_failure,
            starting_position=starting_position,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    dynamodb = make_client(target.settings)
    try:
        stream_arn = latest_stream_arn(dynamodb, target.settings.events_table)
        if target.event_source_arn != stream_arn:
            # Zappa's handler routes a stream event by this ARN; a stale one drops every batch.
            if fix_settings:
                wiring.fix_event_source_arn(path, stage, stream_arn)
                click.echo(f"wrote {stream_arn} into {path} ({stage}); run `zappa update {stage}`, then wire again")
                return
            raise click.ClickException(
                f"{path} ({stage}) routes {target.event_source_arn!r} to {wiring.HANDLER}, but the stream of"
                f" {target.settings.events_table} is {stream_arn}: Zappa would drop its batches. Rerun with"
                " --fix-settings, then `zappa update` the stage"
            )
        lambda_client = boto3.session.Session().client("lambda", region_name=target.region)
        wired = wiring.wire_streams(
            lambda_client, dynamodb, target.function_name, target.settings.events_table, options
        )
    finally:
        dynamodb.close()
    click.echo(f"{wired.action} event source mapping {wired.uuid}: {stream_arn} -> {target.function_name}")
    mapping = wired.mapping
    click.echo(
        f"  starting position {mapping.get('StartingPosition')}, batch size {mapping.get('BatchSize')},"
        f" retries {mapping.get('MaximumRetryAttempts')}, bisect {mapping.get('BisectBatchOnFunctionError')},"
        f" response types {','.join(mapping.get('FunctionResponseTypes') or [])},"
        f" on failure {(mapping.get('DestinationConfig') or {}).get('OnFailure', {}).get('Destination') or 'none'}"
    )
    click.echo(f"  TTL on {TTL_ATTRIBUTE} of {target.settings.views_table}: on")
    for warning in wired.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


@main.group()
def parked() -> None:
    """Events a projection could not apply after its retries: list, retry (exactly once), drop."""


@contextlib.contextmanager
def _parked_service(settings: Settings) -> Iterator[Any]:
    from bootstrap import bootstrap
    from bootstrap.parked import parked_service

    pulse = bootstrap(settings)
    try:
        yield parked_service(pulse)
    finally:
        pulse.close()


@parked.command("list")
@click.option("--projection", help="One projection (default: every one).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, the event included.")
@store_options
def parked_list(settings: Settings, projection: str | None, as_json: bool) -> None:
    from domain.access import OPEN_ACCESS

    with _parked_service(settings) as service:
        found = service.list(OPEN_ACCESS, projection)
    for p in found:
        if as_json:
            event = {"id": p.event_id, "type": p.event.type, "properties": dict(p.event.properties)}
            fields = {"projection": p.projection, "partition": p.partition, "position": p.position, "event": event}
            fields |= {"error": p.error, "attempts": p.attempts, "first": p.first_failure, "last": p.last_failure}
            click.echo(json.dumps(fields))
        else:
            where = f"position {p.position}" + (f" of {p.partition}" if p.partition else "")
            click.echo(f"{p.projection}\t{p.event_id}\t{p.event.type}\t{where}\t{p.attempts} tries\t{p.error}")
    if not found and not as_json:
        click.echo("no parked events", err=True)


@parked.command("retry")
@click.argument("projection")
@click.argument("event_id")
@store_options
def parked_retry(settings: Settings, projection: str, event_id: str) -> None:
    """Apply a parked event to PROJECTION again, exactly once (run it twice: once)."""
    from domain.access import OPEN_ACCESS

    try:
        with _parked_service(settings) as service:
            outcome = service.retry(OPEN_ACCESS, projection, event_id)
    except Exception as exc:
        _fail(exc)
    if not outcome.applied:
        raise click.ClickException(f"failed again, still parked: {outcome.error}")
    click.echo(f"applied {event_id} to {projection}")


@parked.command("drop")
@click.argument("projection")
@click.argument("event_id")
@store_options
def parked_drop(settings: Settings, projection: str, event_id: str) -> None:
    """Forget a parked event: PROJECTION never counts it (a replay would)."""
    from domain.access import OPEN_ACCESS

    try:
        with _parked_service(settings) as service:
            service.drop(OPEN_ACCESS, projection, event_id)
    except Exception as exc:
        _fail(exc)
    click.echo(f"dropped {event_id} of {projection}")


if __name__ == "__main__":
    main()
