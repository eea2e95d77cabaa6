"""The contract suites run on every backend: the real ones and the in-memory fake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap import create_tables, drop_tables
from domain.settings import Settings
from storage.dynamodb import DynamoEventStore


@pytest.fixture
def memory_settings(tmp_path: Path) -> Settings:
    """The in-memory fake (``bootstrap.memory``), its stores named after a path of this test."""
    return Settings(store="memory", db=str(tmp_path / "pulse.db"))


@pytest.fixture(params=["sqlite", "dynamodb", "memory"])
def settings(request: pytest.FixtureRequest) -> Settings:
    """Each test using this runs once per backend."""
    return request.getfixturevalue(f"{request.param}_settings")


@pytest.fixture
def dynamodb_store(dynamodb_settings: Settings) -> Iterator[DynamoEventStore]:
    """The DynamoDB event store on fresh tables, for what that adapter does beyond the contract."""
    create_tables(dynamodb_settings)
    store = DynamoEventStore.from_settings(dynamodb_settings)
    yield store
    store.close()
    drop_tables(dynamodb_settings)
