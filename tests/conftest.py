"""Shared fixtures: a real DynamoDB Local per test session, isolated per test module, and
the clock in-process code under test reads (see tests/support.py)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import dynamodb_local  # noqa: E402

from bootstrap import Pulse, bootstrap, drop_tables  # noqa: E402
from domain.clock import FrozenClock  # noqa: E402
from domain.settings import Settings  # noqa: E402
from tests.support import AWKWARD_INSTANTS, DEFAULT_INSTANT  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"
#: Running under libfaketime (`faketime '2027-01-01 00:59:58' pytest ...`), which neither
#: DynamoDB Local's JVM nor `pulse serve` runs well under: their tests are skipped then.
UNDER_FAKETIME = "FAKETIME" in os.environ or "faketime" in os.environ.get("LD_PRELOAD", "")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "serves: runs `pulse serve` in another process (skipped under faketime)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if UNDER_FAKETIME:
        for item in items:
            if item.get_closest_marker("serves"):
                item.add_marker(pytest.mark.skip(reason="`pulse serve` does not run under faketime"))


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FrozenClock:
    """The clock handed to in-process code under test, frozen at an awkward instant: the
    default one, or the AWKWARD_INSTANTS name a test parametrizes it with (indirect)."""
    return FrozenClock(AWKWARD_INSTANTS[getattr(request, "param", DEFAULT_INSTANT)])


@pytest.fixture(scope="session")
def dynamodb_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DynamoDB Local on a free port for the whole session, stopped by its PID."""
    if UNDER_FAKETIME:
        pytest.skip("DynamoDB Local does not run under faketime")
    try:
        if not IN_CI:
            dynamodb_local.fetch()
        process, endpoint = dynamodb_local.start(log=tmp_path_factory.mktemp("ddb") / "ddb.log")
    except (dynamodb_local.DynamoDBLocalMissing, OSError) as exc:
        if IN_CI:
            pytest.fail(f"DynamoDB Local is required in CI: {exc}", pytrace=False)
        pytest.skip(f"DynamoDB Local unavailable: {exc}")
    yield endpoint
    dynamodb_local.stop(process)


@pytest.fixture(scope="module")
def dynamodb_credentials(dynamodb_endpoint: str) -> Iterator[str]:
    """A distinct dummy access key per module: DynamoDB Local keeps a database per key,
    so modules never slow each other down with stream records they hold."""
    key = f"pulse{uuid.uuid4().hex[:12]}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", key)
        mp.setenv("AWS_SECRET_ACCESS_KEY", "local")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        yield key


@pytest.fixture
def dynamodb_settings(dynamodb_endpoint: str, dynamodb_credentials: str) -> Settings:
    """Settings naming fresh tables for one test."""
    return Settings(
        store="dynamodb",
        dynamodb_endpoint=dynamodb_endpoint,
        region="us-east-1",
        table_prefix=f"t{uuid.uuid4().hex[:10]}",
    )


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(store="sqlite", db=str(tmp_path / "pulse.db"))


@pytest.fixture(params=["sqlite", "dynamodb"])
def settings(request: pytest.FixtureRequest) -> Settings:
    """Each test using this runs once per backend."""
    return request.getfixturevalue(f"{request.param}_settings")


@pytest.fixture
def pulse(settings: Settings) -> Iterator[Pulse]:
    """A running Pulse on fresh tables of the ``settings`` backend, dropped afterwards."""
    pulse = bootstrap(settings, create=True)
    yield pulse
    pulse.close()
    drop_tables(settings)
