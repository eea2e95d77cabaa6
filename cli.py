"""The `pulse` command. Every subcommand takes the same store options; PULSE_* variables
give the same settings and the options override them."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Pulse: event-sourced real-time analytics."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=int, help="Threads per worker (gthread).")
@store_options
def serve(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    """Serve /graphql and the REST API with gunicorn (gthread workers)."""
    from gunicorn.app.base import BaseApplication

    from api.app import create_app
    from storage.tables import create_tables

    if settings.store == "sqlite":
        create_tables(settings)

    class PulseServer(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", "-")

        def load(self):
            return create_app(settings)

    click.echo(
        f"Pulse on http://{host}:{port}/graphql  (store: {settings.store}"
        f"{', ' + settings.db if settings.store == 'sqlite' else ''})"
    )
    PulseServer().run()


@main.group()
def tables() -> None:
    """Create the store's tables."""


@tables.command("create")
@store_options
def tables_create(settings: Settings) -> None:
    """Create the tables if they do not exist (idempotent)."""
    from storage.tables import create_tables

    for name in create_tables(settings):
        click.echo(f"ready: {name}")


if __name__ == "__main__":
    main()
