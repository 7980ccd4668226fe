"""Column expressions that several data and adapter modules share: day boundaries,
fractional days between timestamps, and an order-independent sum."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from lifecycle_recs.dates import DateLike, add_days

DAY_US = 86400e6


def end_of_day(d: DateLike) -> Column:
    """Timestamp of the end of day D (= D+1 00:00 UTC): the exclusive upper bound."""
    return F.lit(add_days(d, 1)).cast("timestamp")


def days_between(later: Column, earlier: Column) -> Column:
    """Fractional days from ``earlier`` to ``later`` (timestamps; microsecond exact)."""
    return (F.unix_micros(later) - F.unix_micros(earlier)) / F.lit(DAY_US)


def shift_days(ts: Column, days: float) -> Column:
    """``ts`` moved by ``days`` (fractional days, to the microsecond)."""
    return F.timestamp_micros(F.unix_micros(ts) + F.lit(int(days * DAY_US)))


def exact_sum(col: Column) -> Column:
    """Sum of a double column that does not depend on the order rows are added in
    (partitioning, task retries, a lost executor): summed as decimal(38, 9), exact,
    then cast back to double; 0.0 when there is nothing to sum. A floating-point
    sum differs in its last bits between runs, so reruns would not be identical."""
    return F.coalesce(F.sum(col.cast("decimal(38,9)")).cast("double"), F.lit(0.0))
