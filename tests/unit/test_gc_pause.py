"""The projection step's garbage-collection pause (services/gc_pause.py) never leaves the
collector off, whatever the step does."""

from __future__ import annotations

import gc

import pytest

from services.gc_pause import collection_paused


@pytest.fixture(autouse=True)
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_off_inside_and_back_on_after() -> None:
    with collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_step_that_raises_still_turns_it_back_on() -> None:
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("a projection failed")
    assert gc.isenabled()


def test_a_nested_pause_leaves_it_to_the_outer_one() -> None:
    with collection_paused():
        with collection_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_process_that_turned_it_off_keeps_it_off() -> None:
    gc.disable()
    with collection_paused():
        pass
    assert not gc.isenabled()
