"""Which users and dates train, validate and evaluate.

The training snapshot is T = D - H (``dates.training_date``); its labels (T, D]
are known on the night of D. Users are held out by a stable hash, so the same
users are held out by training and by evaluation, run after run.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lifecycle_recs.config import LifecycleConf
from lifecycle_recs.dates import DateLike, parse_date


def holdout_flag(fraction: float, seed: int) -> Column:
    """A user-level split column, stable across runs: hash(user_id, seed) < fraction."""
    return (F.abs(F.xxhash64(F.col("user_id"), F.lit(seed))) % 10000) < int(fraction * 10000)


def data_end_date(events: DataFrame) -> Optional[dt.date]:
    """Last event date in the events table (one small aggregate)."""
    row = events.agg(F.max("event_date")).first()
    return row[0] if row else None


def labels_known(
    events: DataFrame,
    snapshot_date: DateLike,
    conf: LifecycleConf,
    last_date: Optional[dt.date] = None,
) -> bool:
    """True when the events reach past D + H, so labels of (D, D+H] are complete.

    ``last_date``: the last event date when already known (e.g. from the table's
    partition metadata), which saves a scan of ``events``."""
    last = last_date if last_date is not None else data_end_date(events)
    d = parse_date(snapshot_date)
    return last is not None and last >= d + dt.timedelta(days=conf.horizon_days)
