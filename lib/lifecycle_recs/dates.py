"""Day arithmetic and "now, UTC" in one place (plain Python, no Spark)."""

from __future__ import annotations

import datetime as dt
from typing import Union

DateLike = Union[str, dt.date]


def parse_date(d: DateLike, what: str = "date") -> dt.date:
    """'YYYY-MM-DD' (or a date) -> date; a clear error naming ``what`` otherwise."""
    if isinstance(d, dt.datetime):
        return d.date()
    if isinstance(d, dt.date):
        return d
    try:
        return dt.date.fromisoformat(str(d))
    except ValueError:
        raise ValueError(f"{what} must be a date YYYY-MM-DD, got {d!r}") from None


def iso(d: DateLike) -> str:
    return parse_date(d).isoformat()


def add_days(d: DateLike, days: int) -> str:
    """D + days as 'YYYY-MM-DD' (negative days go back)."""
    return (parse_date(d) + dt.timedelta(days=int(days))).isoformat()


def training_date(snapshot_date: DateLike, horizon_days: int) -> str:
    """The training snapshot T = D - H: on the night of D its labels (T, D] are known."""
    return add_days(snapshot_date, -int(horizon_days))


def utc_now() -> dt.datetime:
    """Now in UTC, time-zone aware, to the second (what ``*_at`` columns store). Aware, so
    that Spark stores the instant whatever the driver's local time zone (a naive value is
    read as local time)."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
