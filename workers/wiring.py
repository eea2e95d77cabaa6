"""`pulse deploy wire-streams --stage <stage>`: connect the events table's stream to the
Zappa-deployed Lambda with every setting the projection needs.

Zappa 0.63 creates the event source mapping from its ``events`` entry but passes neither
``StartingPosition`` beyond its own default, nor ``FunctionResponseTypes``, bisection,
retry limits or an on-failure destination. Without ``ReportBatchItemFailures`` the
handler's partial-failure answer is ignored; with ``ParallelizationFactor`` above 1
Lambda would apply one shard's batches concurrently and out of order, which the
per-shard guards of the counters do not allow. So this creates the mapping, or updates
the one Zappa (or an earlier run) made, with boto3.

Zappa routes a stream event to ``workers.lambda_handlers.on_event_stream`` only when the
``arn`` of its ``events`` entry equals the stream ARN exactly (its label changes when the
table is recreated); otherwise Zappa's handler drops the batch. This command checks it
and, with ``--fix-settings``, writes the right ARN into zappa_settings.json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.client import BaseClient

from domain.settings import Settings

HANDLER = "workers.lambda_handlers.on_event_stream"
STARTING_POSITIONS = ("TRIM_HORIZON", "LATEST")


@dataclass(frozen=True, slots=True)
class StageSettings:
    """What wire-streams needs from one stage of zappa_settings.json."""

    stage: str
    function_name: str
    region: str
    settings: Settings
    event_source_arn: str | None  # the arn of the on_event_stream entry, if any


def zappa_function_name(project_name: str, stage: str) -> str:
    """Zappa's Lambda name: slugify(project_name + "-" + stage)."""
    return re.sub(r"[^a-z0-9]+", "-", f"{project_name}-{stage}".lower()).strip("-")


def read_stage(path: Path, stage: str) -> StageSettings:
    """The stage's function name, region and Pulse settings (its environment_variables)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValueError(f"{path} not found: run from the project root or pass --zappa-settings") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if stage not in document:
        raise ValueError(f"stage {stage!r} is not in {path} (stages: {', '.join(sorted(document)) or 'none'})")
    config = document[stage]
    project = config.get("project_name") or Path.cwd().name
    env = {key: str(value) for key, value in (config.get("environment_variables") or {}).items()}
    region = config.get("aws_region") or env.get("PULSE_REGION") or "us-east-1"
    settings = Settings.from_env(env, store="dynamodb", region=region)
    arn = None
    for entry in config.get("events") or ():
        if entry.get("function") == HANDLER:
            arn = (entry.get("event_source") or {}).get("arn")
    return StageSettings(stage, zappa_function_name(project, stage), region, settings, arn)


def fix_event_source_arn(path: Path, stage: str, stream_arn: str) -> None:
    """Set the arn of the stage's on_event_stream entry (added if missing) to ``stream_arn``."""
    document = json.loads(path.read_text(encoding="utf-8"))
    events = document[stage].setdefault("events", [])
    for entry in events:
        if entry.get("function") == HANDLER:
            entry.setdefault("event_source", {})["arn"] = stream_arn
            break
    else:
        events.append({"function": HANDLER, "event_source": {"arn": stream_arn, "starting_position": "TRIM_HORIZON"}})
    path.write_text(json.dumps(document, indent=4) + "\n", encoding="utf-8")


@dataclass(frozen=True, slots=True)
class MappingOptions:
    batch_size: int = 100
    maximum_retry_attempts: int = 10
    bisect_on_error: bool = True
    on_failure_arn: str | None = None
    starting_position: str = "TRIM_HORIZON"
    batching_window_seconds: int = 1
    maximum_record_age_seconds: int = -1  # -1: until the stream drops it (24 h)

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError(f"--batch-size must be 1 to 10000 for DynamoDB Streams, got {self.batch_size}")
        if not -1 <= self.maximum_retry_attempts <= 10_000:
            raise ValueError(f"--max-retries must be -1 (forever) to 10000, got {self.maximum_retry_attempts}")
        if self.starting_position not in STARTING_POSITIONS:
            raise ValueError(f"--starting-position must be one of {', '.join(STARTING_POSITIONS)}")
        if self.on_failure_arn is not None and not re.fullmatch(r"arn:aws[\w-]*:(sqs|sns):.+", self.on_failure_arn):
            raise ValueError(f"--on-failure must be an SQS queue or SNS topic ARN, got {self.on_failure_arn!r}")

    def parameters(self) -> dict[str, Any]:
        """What both CreateEventSourceMapping and UpdateEventSourceMapping take."""
        return {
            "BatchSize": self.batch_size,
            "MaximumBatchingWindowInSeconds": self.batching_window_seconds,
            # One batch per shard at a time, in order: what the per-shard guards rely on.
            "ParallelizationFactor": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BisectBatchOnFunctionError": self.bisect_on_error,
            "MaximumRetryAttempts": self.maximum_retry_attempts,
            "MaximumRecordAgeInSeconds": self.maximum_record_age_seconds,
            # An empty OnFailure removes a destination set before.
            "DestinationConfig": {"OnFailure": {"Destination": self.on_failure_arn} if self.on_failure_arn else {}},
        }


@dataclass(frozen=True, slots=True)
class Wired:
    action: str  # "created" or "updated"
    uuid: str
    stream_arn: str
    mapping: Mapping[str, Any]
    warnings: tuple[str, ...] = ()


def wire_streams(
    lambda_client: BaseClient,
    dynamodb_client: BaseClient,
    function_name: str,
    events_table: str,
    options: MappingOptions,
) -> Wired:
    """Create or update the mapping from the events table's stream to ``function_name``."""
    from storage.dynamodb_feed import latest_stream_arn

    stream_arn = latest_stream_arn(dynamodb_client, events_table)
    existing = lambda_client.list_event_source_mappings(EventSourceArn=stream_arn, FunctionName=function_name).get(
        "EventSourceMappings", []
    )
    parameters = options.parameters()
    warnings: list[str] = []
    if not existing:
        if options.on_failure_arn is None:
            del parameters["DestinationConfig"]
        mapping = lambda_client.create_event_source_mapping(
            EventSourceArn=stream_arn,
            FunctionName=function_name,
            StartingPosition=options.starting_position,
            Enabled=True,
            **parameters,
        )
        return Wired("created", mapping["UUID"], stream_arn, mapping)
    if len(existing) > 1:
        warnings.append(
            f"{len(existing)} mappings connect this stream to {function_name}; every one delivers each record:"
            f" delete all but {existing[0]['UUID']}"
        )
    current = existing[0]
    if current.get("StartingPosition") not in (None, options.starting_position):
        warnings.append(
            f"the mapping starts at {current['StartingPosition']}; AWS cannot change that on an existing mapping"
            " (delete it and run wire-streams again to start elsewhere)"
        )
    mapping = lambda_client.update_event_source_mapping(
        UUID=current["UUID"], FunctionName=function_name, Enabled=True, **parameters
    )
    return Wired("updated", mapping["UUID"], stream_arn, mapping, tuple(warnings))
