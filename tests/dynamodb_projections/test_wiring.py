"""`pulse deploy wire-streams` against moto: the Lambda function exists (not run), the
events table has its stream, and the event source mapping gets every setting Zappa
leaves out; a second run updates the same mapping."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from cli import main
from domain.settings import Settings
from storage.dynamodb import create_tables
from workers.wiring import HANDLER, MappingOptions, zappa_function_name

REGION = "eu-west-1"
DLQ = "arn:aws:sqs:eu-west-1:123456789012:pulse-dead-letters"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:pulse-alerts"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "PULSE_DYNAMODB_ENDPOINT", "PULSE_TABLE_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield


@pytest.fixture
def deployed(aws: None) -> str:
    """The stage's tables and its Zappa-made function; returns the events stream ARN."""
    settings = Settings(store="dynamodb", region=REGION, table_prefix="pulse-staging")
    create_tables(settings)
    role = boto3.client("iam").create_role(
        RoleName="pulse-staging-ZappaLambdaExecutionRole", AssumeRolePolicyDocument="{}"
    )
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def lambda_handler(event, context):\n    return None\n")
    boto3.client("lambda").create_function(
        FunctionName="pulse-staging",
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="handler.lambda_handler",
        Code={"ZipFile": code.getvalue()},
    )
    return boto3.client("dynamodb").describe_table(TableName=settings.events_table)["Table"]["LatestStreamArn"]


def zappa_settings(tmp_path: Path, arn: str) -> Path:
    path = tmp_path / "zappa_settings.json"
    path.write_text(
        json.dumps(
            {
                "staging": {
                    "app_function": "wsgi.app",
                    "project_name": "pulse",
                    "aws_region": REGION,
                    "environment_variables": {"PULSE_STORE": "dynamodb", "PULSE_TABLE_PREFIX": "pulse-staging"},
                    "events": [
                        {"function": HANDLER, "event_source": {"arn": arn, "starting_position": "TRIM_HORIZON"}}
                    ],
                }
            }
        )
    )
    return path


def wire(path: Path, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["deploy", "wire-streams", "--stage", "staging", "--zappa-settings", str(path), *options]
    )
    return result.exit_code, result.output


def mappings(arn: str) -> list[dict]:
    return boto3.client("lambda").list_event_source_mappings(EventSourceArn=arn, FunctionName="pulse-staging")[
        "EventSourceMappings"
    ]


def test_wire_streams_creates_the_mapping_with_everything_then_updates_it(deployed: str, tmp_path: Path) -> None:
    path = zappa_settings(tmp_path, deployed)
    code, output = wire(path, "--batch-size", "50", "--max-retries", "3", "--on-failure", DLQ)
    assert code == 0, output
    assert "created event source mapping" in output
    (mapping,) = mappings(deployed)
    assert mapping["FunctionArn"].endswith(":function:pulse-staging")
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["BatchSize"] == 50
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == 3
    assert mapping["ParallelizationFactor"] == 1
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": DLQ}}
    ttl = boto3.client("dynamodb").describe_time_to_live(TableName="pulse-staging-views")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expiresAt" and ttl["TimeToLiveStatus"] == "ENABLED"

    code, output = wire(path, "--batch-size", "200", "--max-retries", "7", "--no-bisect", "--on-failure", TOPIC)
    assert code == 0, output
    assert "updated event source mapping" in output
    (again,) = mappings(deployed)  # the same mapping, not a second one
    assert again["UUID"] == mapping["UUID"]
    assert (again["BatchSize"], again["MaximumRetryAttempts"], again["BisectBatchOnFunctionError"]) == (200, 7, False)
    assert again["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert again["DestinationConfig"] == {"OnFailure": {"Destination": TOPIC}}


def test_a_stale_stream_arn_in_the_zappa_settings_is_refused_or_fixed(deployed: str, tmp_path: Path) -> None:
    placeholder = "arn:aws:dynamodb:eu-west-1:ACCOUNT_ID:table/pulse-staging-events/stream/STREAM_LABEL"
    path = zappa_settings(tmp_path, placeholder)
    code, output = wire(path)
    assert code != 0
    assert "Zappa would drop its batches" in output and deployed in output
    assert mappings(deployed) == []

    code, output = wire(path, "--fix-settings")
    assert code == 0, output
    assert "zappa update staging" in output
    (entry,) = json.loads(path.read_text())["staging"]["events"]
    assert entry == {"function": HANDLER, "event_source": {"arn": deployed, "starting_position": "TRIM_HORIZON"}}
    assert mappings(deployed) == []  # wired only once the deployed function knows the ARN
    assert wire(path)[0] == 0 and len(mappings(deployed)) == 1


def test_bad_options_and_stages_are_named(deployed: str, tmp_path: Path) -> None:
    path = zappa_settings(tmp_path, deployed)
    code, output = wire(path, "--on-failure", "arn:aws:s3:::bucket")
    assert code == 2 and "--on-failure must be an SQS queue or SNS topic ARN" in output
    code, output = wire(path, "--batch-size", "0")
    assert code == 2 and "--batch-size" in output
    result = CliRunner().invoke(main, ["deploy", "wire-streams", "--stage", "prod", "--zappa-settings", str(path)])
    assert result.exit_code == 2 and "stage 'prod' is not in" in result.output


def test_zappa_names_the_function_project_dash_stage() -> None:
    assert zappa_function_name("pulse", "production") == "pulse-production"
    assert zappa_function_name("My_App", "dev 2") == "my-app-dev-2"
    assert MappingOptions().parameters()["ParallelizationFactor"] == 1


def test_the_repository_zappa_settings_route_the_stream_to_the_handler() -> None:
    settings = json.loads((Path(__file__).resolve().parents[2] / "zappa_settings.json").read_text())
    for stage in settings.values():
        functions = {entry["function"] for entry in stage["events"]}
        assert HANDLER in functions and "workers.lambda_handlers.run_rebuilds" in functions
