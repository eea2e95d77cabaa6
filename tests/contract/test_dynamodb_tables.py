"""`pulse tables create` against DynamoDB Local: both tables, as the adapter needs them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from bootstrap import drop_tables
from cli import main
from domain.settings import Settings
from storage.dynamodb_base import make_client
from tests.support import store_args


@pytest.fixture
def tables(dynamodb_settings: Settings) -> Iterator[Settings]:
    yield dynamodb_settings
    drop_tables(dynamodb_settings)


def create(settings: Settings) -> list[str]:
    result = CliRunner().invoke(
        main,
        ["tables", "create", *store_args(settings)],
    )
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_tables_create_makes_both_tables_and_is_idempotent(tables: Settings) -> None:
    expected = [f"ready: {tables.events_table}", f"ready: {tables.views_table}"]
    assert create(tables) == expected
    assert create(tables) == expected  # existing tables are left alone

    client = make_client(tables)
    try:
        names = client.list_tables()["TableNames"]
        assert {tables.events_table, tables.views_table} <= set(names)

        events = client.describe_table(TableName=tables.events_table)["Table"]
        assert events["TableStatus"] == "ACTIVE"
        assert events["KeySchema"] == [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ]
        assert events["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert events["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
        assert events["LatestStreamArn"]
        # No secondary index: one would only add write units to every fact.
        assert "GlobalSecondaryIndexes" not in events
        for table in (tables.events_table, tables.views_table):
            ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
            assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}

        views = client.describe_table(TableName=tables.views_table)["Table"]
        assert [k["AttributeName"] for k in views["KeySchema"]] == ["pk", "sk"]
        assert views["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    finally:
        client.close()


def test_drop_tables_removes_both_and_ignores_missing_ones(tables: Settings) -> None:
    create(tables)
    drop_tables(tables)
    drop_tables(tables)
    client = make_client(tables)
    try:
        names = set(client.list_tables()["TableNames"])
    finally:
        client.close()
    assert tables.events_table not in names and tables.views_table not in names
