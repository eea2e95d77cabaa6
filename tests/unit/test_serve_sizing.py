"""pulse serve: subscription streams never take the threads queries and ingest need."""

from __future__ import annotations

import click
import pytest

from cli import QUERY_THREADS, size_threads


def test_threads_follow_the_stream_limit_and_the_limit_follows_the_threads() -> None:
    assert size_threads(None, None, 32) == (32 + QUERY_THREADS, 32)
    assert size_threads(None, 200, 32) == (200 + QUERY_THREADS, 200)
    assert size_threads(64, None, 32) == (64, 64 - QUERY_THREADS)
    assert size_threads(3, None, 32) == (3, 0)  # too few threads for streams: none are served
    assert size_threads(64, 10, 32) == (64, 10)


def test_a_limit_that_would_starve_queries_is_refused() -> None:
    with pytest.raises(click.UsageError, match=f"--max-streams 60 needs --threads {60 + QUERY_THREADS}"):
        size_threads(62, 60, 32)


def test_each_server_has_its_own_gunicorn_control_socket(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from cli import control_socket_path

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    first, second = control_socket_path("127.0.0.1", 8000), control_socket_path("127.0.0.1", 8001)
    assert first != second and first.startswith(str(tmp_path))
    assert control_socket_path("::", 8000).endswith("pulse-__-8000.ctl")
