"""Time buckets of the counters read model.

A bucket is named by its start in epoch seconds. Minute and hour buckets are UTC; day
buckets are calendar days in one IANA time zone (``PULSE_TIMEZONE``), so a day is 23, 24
or 25 hours long around DST changes, and starts at the first instant of the local date
(01:00 where a DST change skips midnight).

Every UTC offset in use since 1970 is a whole number of minutes, so a local day starts
on a minute boundary and the day of a fact follows from its minute: ``day_of_minute``
caches that per minute, which makes the hot path one dict lookup per fact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.metrics import DAY, HOUR, MINUTE, RESOLUTIONS, SKIPPED

K = TypeVar("K", bound=tuple[Any, ...])

#: Seconds per bucket of the fixed-length resolutions.
FIXED_SECONDS = {MINUTE: 60, HOUR: 3600}
_DAY_CACHE_LIMIT = 200_000


def zone(name: str) -> ZoneInfo:
    """The IANA zone, or ``ValueError`` naming the setting."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"PULSE_TIMEZONE: {name!r} is not an IANA time zone such as Europe/Paris or UTC") from exc


def _date_or_feb_28(year: int, month: int, day: int) -> date:
    # The same date a year apart; 29 February maps to the 28th.
    return date(year, month, min(day, 28) if month == 2 else day)


class Bucketing:
    """Bucket arithmetic for one day time zone."""

    def __init__(self, timezone: str = "UTC") -> None:
        self.timezone = timezone
        self.tz = zone(timezone)
        self._day_of_minute: dict[int, int] = {}

    # --- Flooring ------------------------------------------------------------------------

    def day_start(self, day: date) -> int:
        # fold=0: in a gap at midnight this is the transition instant, the day's first one.
        return int(datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp())

    def local_date(self, ts: int) -> date:
        return datetime.fromtimestamp(ts, self.tz).date()

    def day_of_minute(self, minute: int) -> int:
        """The start of the local day holding the minute that starts at ``minute``."""
        found = self._day_of_minute.get(minute)
        if found is None:
            if len(self._day_of_minute) >= _DAY_CACHE_LIMIT:
                self._day_of_minute.clear()
            found = self._day_of_minute[minute] = self.day_start(self.local_date(minute))
        return found

    def floor(self, resolution: str, ts: float) -> int:
        """The start of the bucket holding the instant ``ts`` (epoch seconds)."""
        whole = int(ts // 1)
        if resolution == DAY:
            return self.day_of_minute(whole - whole % 60)
        return whole - whole % FIXED_SECONDS[resolution]

    # --- Stepping ------------------------------------------------------------------------

    def shift(self, resolution: str, bucket: int, n: int) -> int:
        """The bucket ``n`` buckets after ``bucket`` (before when negative)."""
        if resolution == DAY:
            return self.day_start(self.local_date(bucket) + timedelta(days=n))
        return bucket + n * FIXED_SECONDS[resolution]

    def end(self, resolution: str, bucket: int) -> int:
        return self.shift(resolution, bucket, 1)

    def count(self, resolution: str, first: int, stop: int) -> int:
        """How many buckets start in ``[first, stop)``; ``first`` is a bucket start."""
        if stop <= first:
            return 0
        if resolution == DAY:
            last = self.floor(DAY, stop - 1)
            return (self.local_date(last) - self.local_date(first)).days + 1
        step = FIXED_SECONDS[resolution]
        return (stop - first + step - 1) // step

    def buckets(self, resolution: str, first: int, n: int) -> list[int]:
        """``n`` consecutive bucket starts from ``first``."""
        if resolution == DAY:
            day = self.local_date(first)
            return [self.day_start(day + timedelta(days=i)) for i in range(n)]
        step = FIXED_SECONDS[resolution]
        return [first + i * step for i in range(n)]

    def week_before(self, resolution: str, bucket: int) -> int:
        if resolution == DAY:
            return self.shift(DAY, bucket, -7)
        return bucket - 7 * 86400

    def year_before(self, resolution: str, bucket: int) -> int:
        """The same wall-clock bucket one calendar year earlier (UTC for minute and hour,
        the local date for day)."""
        if resolution == DAY:
            day = self.local_date(bucket)
            return self.day_start(_date_or_feb_28(day.year - 1, day.month, day.day))
        moment = datetime.fromtimestamp(bucket, UTC)
        earlier = _date_or_feb_28(moment.year - 1, moment.month, moment.day)
        return int(datetime.combine(earlier, moment.timetz()).timestamp())

    # --- Presentation --------------------------------------------------------------------

    def to_datetime(self, resolution: str, bucket: int) -> datetime:
        """A bucket start as shown to clients: UTC, or the day zone for days."""
        return datetime.fromtimestamp(bucket, self.tz if resolution == DAY else UTC)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long counter cells are kept, per resolution, in days (None: forever).

    Pruning keeps one extra day of minutes beyond ``minute_days`` so that comparing the
    current hour or day with the same period last week can still be cut to the minute.
    """

    minute_days: int | None = 7
    hour_days: int | None = 400
    day_days: int | None = None

    def days(self, resolution: str) -> int | None:
        if resolution == SKIPPED:
            return None  # a metric's all-time count of skipped values, not a bucket of time
        return {MINUTE: self.minute_days, HOUR: self.hour_days, DAY: self.day_days}[resolution]

    def horizon(self, resolution: str, now: float) -> int | None:
        """Buckets starting before this (epoch seconds) may be pruned; None: keep all."""
        days = self.days(resolution)
        if days is None:
            return None
        margin = 1 if resolution == MINUTE else 0
        return int(now) - (days + margin) * 86400

    def horizons(self, now: float) -> dict[str, int]:
        """The horizon of each resolution that has one, at epoch second ``now``: projections
        write no cell whose bucket starts before it (pruning would delete it)."""
        found = {resolution: self.horizon(resolution, now) for resolution in RESOLUTIONS}
        return {resolution: horizon for resolution, horizon in found.items() if horizon is not None}

    def expired(self, keys: Iterable[K], now: float, resolution_at: int) -> list[K]:
        """Of counter cell ``keys`` (tuples holding the resolution at ``resolution_at`` and the
        bucket right after it), those whose bucket starts before their resolution's horizon
        at epoch second ``now``: what every adapter leaves out of a write (pruning would
        delete them)."""
        horizons = self.horizons(now)
        bucket_at = resolution_at + 1
        return [key for key in keys if key[bucket_at] < horizons.get(key[resolution_at], key[bucket_at])]


__all__ = ["FIXED_SECONDS", "RESOLUTIONS", "Bucketing", "Retention", "zone"]
