"""The contract suites run on every backend: the real ones and the in-memory fake."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.settings import Settings


@pytest.fixture
def memory_settings(tmp_path: Path) -> Settings:
    """The in-memory fake (``bootstrap.memory``), its stores named after a path of this test."""
    return Settings(store="memory", db=str(tmp_path / "pulse.db"))


@pytest.fixture(params=["sqlite", "dynamodb", "memory"])
def settings(request: pytest.FixtureRequest) -> Settings:
    """Each test using this runs once per backend."""
    return request.getfixturevalue(f"{request.param}_settings")
