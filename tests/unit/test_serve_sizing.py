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
