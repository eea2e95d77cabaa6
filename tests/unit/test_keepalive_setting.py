"""PULSE_KEEPALIVE_REQUESTS: read from the environment, checked, and applied by the
gunicorn hook (api/keepalive.py) to the request that reaches it."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from api.keepalive import cap_requests_per_connection
from domain.settings import Settings


class FakeRequest:
    """The part of gunicorn's Request the hook uses."""

    def __init__(self, number: int) -> None:
        self.method, self.path, self.req_number = "POST", "/v1/events", number
        self.closing = False

    def force_close(self) -> None:
        self.closing = True


WORKER = SimpleNamespace(log=logging.getLogger("test"))


def closes(limit: int, numbers: range) -> list[int]:
    hook = cap_requests_per_connection(limit)
    closed = []
    for number in numbers:
        request = FakeRequest(number)
        hook(WORKER, request)
        if request.closing:
            closed.append(number)
    return closed


def test_the_default_caps_a_connection_at_100_requests() -> None:
    assert Settings().keepalive_requests == 100
    assert Settings.from_env({"PULSE_KEEPALIVE_REQUESTS": "7"}).keepalive_requests == 7
    assert closes(Settings().keepalive_requests, range(1, 101)) == [100]


def test_only_the_capped_request_is_marked_and_zero_means_no_cap() -> None:
    assert closes(3, range(1, 4)) == [3]
    assert closes(0, range(1, 1000)) == []


def test_a_negative_cap_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="PULSE_KEEPALIVE_REQUESTS"):
        Settings.from_env({"PULSE_KEEPALIVE_REQUESTS": "-1"})
