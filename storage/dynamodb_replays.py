"""The replay ledger on DynamoDB: one item per projection in the views table (pk
``REPLAY``, sk the projection), every change one conditional write, so two processes
racing for a replay find out which one won from the item itself."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from domain.ports import PROJECTIONS_MARKER
from domain.replay import FAILED, REPLAYING, REQUESTED, ReplayLost, ReplayRunning, ReplayStatus, claim_of
from storage.dynamodb_base import ConditionFailed, Table

REPLAY_PK = "REPLAY"


def _key(projection: str) -> dict[str, Any]:
    return {"pk": {"S": REPLAY_PK}, "sk": {"S": projection}}


def _number(value: float | None) -> dict[str, Any]:
    return {"NULL": True} if value is None else {"N": repr(float(value))}


def _item(status: ReplayStatus) -> dict[str, Any]:
    return {
        **_key(status.projection),
        "state": {"S": status.state},
        "owner": {"NULL": True} if status.owner is None else {"S": status.owner},
        "lease_until": _number(status.lease_until),
        "done": {"N": str(status.done)},
        "total": {"N": str(status.total)},
        "rate": _number(status.events_per_second),
        "requested_at": _number(status.requested_at),
        "started_at": _number(status.started_at),
        "updated_at": _number(status.updated_at),
        "error": {"NULL": True} if status.error is None else {"S": status.error},
    }


def _status(item: Mapping[str, Any]) -> ReplayStatus:
    def number(name: str) -> float | None:
        value = item.get(name, {"NULL": True})
        return None if "NULL" in value else float(value["N"])

    def text(name: str) -> str | None:
        value = item.get(name, {"NULL": True})
        return None if "NULL" in value else value["S"]

    return ReplayStatus(
        projection=item["sk"]["S"],
        state=item["state"]["S"],
        owner=text("owner"),
        lease_until=number("lease_until") or 0.0,
        done=int(item["done"]["N"]),
        total=int(item["total"]["N"]),
        events_per_second=number("rate") or 0.0,
        requested_at=number("requested_at"),
        started_at=number("started_at"),
        updated_at=number("updated_at"),
        error=text("error"),
    )


class DynamoReplayLedger:
    """``ReplayLedger`` in the views table; ``bump`` moves change markers (the status one)."""

    def __init__(self, table: Table, bump: Callable[[Collection[str]], None]) -> None:
        self._table = table
        self._bump = bump

    def _get(self, projection: str) -> ReplayStatus | None:
        item = self._table.get(_key(projection), "reading a replay")
        return None if item is None else _status(item)

    def replays(self) -> dict[str, ReplayStatus]:
        items = self._table.query(
            {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": REPLAY_PK}}},
            "reading replays",
        )
        return {status.projection: status for status in map(_status, items)}

    def request(self, projection: str, now: float) -> ReplayStatus:
        status = ReplayStatus(projection, REQUESTED, requested_at=now, updated_at=now)
        try:
            self._table.put(
                "requesting a replay",
                Item=_item(status),
                ConditionExpression="attribute_not_exists(pk)"
                " OR (#s <> :requested AND (#s <> :replaying OR #l <= :now))",
                ExpressionAttributeNames={"#s": "state", "#l": "lease_until"},
                ExpressionAttributeValues={
                    ":requested": {"S": REQUESTED},
                    ":replaying": {"S": REPLAYING},
                    ":now": {"N": repr(float(now))},
                },
            )
        except ConditionFailed as failed:
            raise ReplayRunning(self._get(projection) or status) from failed
        self._bump({PROJECTIONS_MARKER})
        return status

    def claim(self, projection: str, owner: str, now: float, lease_seconds: float, total: int) -> ReplayStatus:
        # Checked here on what was read, and again by the write's condition (a racing claim).
        status = claim_of(self._get(projection), projection, owner, now, lease_seconds, total)
        try:
            self._table.put(
                "claiming a replay",
                Item=_item(status),
                ConditionExpression="attribute_not_exists(pk) OR #s <> :replaying OR #o = :owner OR #l <= :now",
                ExpressionAttributeNames={"#s": "state", "#o": "owner", "#l": "lease_until"},
                ExpressionAttributeValues={
                    ":replaying": {"S": REPLAYING},
                    ":owner": {"S": owner},
                    ":now": {"N": repr(float(now))},
                },
            )
        except ConditionFailed as failed:
            raise ReplayRunning(self._get(projection) or status) from failed
        self._bump({PROJECTIONS_MARKER})
        return status

    def renew(
        self, projection: str, owner: str, now: float, lease_seconds: float, done: int, total: int, rate: float
    ) -> None:
        try:
            self._table.update(
                "renewing a replay",
                Key=_key(projection),
                UpdateExpression="SET #l = :lease, #d = :done, #t = :total, #r = :rate, #u = :now",
                ConditionExpression="#o = :owner AND #s = :replaying",
                ExpressionAttributeNames={
                    "#s": "state",
                    "#o": "owner",
                    "#l": "lease_until",
                    "#d": "done",
                    "#t": "total",
                    "#r": "rate",
                    "#u": "updated_at",
                },
                ExpressionAttributeValues={
                    ":lease": {"N": repr(float(now + lease_seconds))},
                    ":done": {"N": str(done)},
                    ":total": {"N": str(total)},
                    ":rate": {"N": repr(float(rate))},
                    ":now": {"N": repr(float(now))},
                    ":owner": {"S": owner},
                    ":replaying": {"S": REPLAYING},
                },
            )
        except ConditionFailed as failed:
            raise ReplayLost(f"the replay of {projection} was taken over by another process") from failed

    def finish(self, projection: str, owner: str) -> None:
        try:
            self._table.client.delete_item(
                TableName=self._table.name,
                Key=_key(projection),
                ConditionExpression="#o = :owner",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except self._table.client.exceptions.ConditionalCheckFailedException:
            return
        self._bump({PROJECTIONS_MARKER})

    def fail(self, projection: str, owner: str, error: str, now: float) -> None:
        try:
            self._table.update(
                "recording a failed replay",
                Key=_key(projection),
                UpdateExpression="SET #s = :failed, #e = :error, #l = :zero, #u = :now",
                ConditionExpression="#o = :owner",
                ExpressionAttributeNames={
                    "#s": "state",
                    "#o": "owner",
                    "#e": "error",
                    "#l": "lease_until",
                    "#u": "updated_at",
                },
                ExpressionAttributeValues={
                    ":failed": {"S": FAILED},
                    ":error": {"S": error[:2000]},
                    ":zero": {"N": "0"},
                    ":now": {"N": repr(float(now))},
                    ":owner": {"S": owner},
                },
            )
        except ConditionFailed:
            return
        self._bump({PROJECTIONS_MARKER})
