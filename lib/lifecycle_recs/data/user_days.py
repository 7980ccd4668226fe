"""The incremental night's state: day-grain partial aggregates per user (``user_days``),
and the snapshots of any date D built from them instead of from every event.

A ``user_days`` row is a pure function of one date's partition of ``events``: the
user's events that day, counted and summed (exactly, as decimals), their first and
last time, their distinct items and their last N steps. So a night rebuilds only the
dates whose events changed (new, late, corrected or restated), and every rule of the
snapshots is an aggregate over day rows:

* last N steps: the last N of the union of each day's last N (the steps' order is a
  total order, :func:`data.sequences.latest_first`); only the most recent days whose
  events reach N are read;
* counts and decimal sums add; first / last times take min / max; active days count
  the rows;
* every window of the lifecycle rules (last 30 days, the horizon, the reactivation
  window, D - step, the next horizon of T) starts and ends at midnight UTC, so a day
  lies wholly inside or outside it.

Nor is every day read each night: ``user_base`` folds every day up to a date before the
first day any window of the night's snapshots reads (:func:`window_reach`) into one row
per user (:func:`fold`), which enters the aggregates as one more day row dated then
(:func:`history`). A snapshot reads that row and the days after it: a fixed window, not
the whole history.

The results equal :func:`data.sequences.build_sequences` and
:func:`data.lifecycle.build_lifecycle` over the same events, bit for bit.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional, Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lifecycle_recs.config import LifecycleConf, SequenceConf
from lifecycle_recs.data.lifecycle import lifecycle_rows
from lifecycle_recs.data.sequences import last_steps, max_length, sequence_rows
from lifecycle_recs.dates import add_days, parse_date

EXACT = "decimal(38,9)"


def build_user_days(events: DataFrame, conf: SequenceConf) -> DataFrame:
    """events (any set of whole dates) -> their ``user_days`` rows."""
    n = max_length(conf)
    is_value = F.col("event_type").isin(*conf.value_event_types)
    stats = events.groupBy("event_date", "user_id").agg(
        F.count(F.lit(1)).alias("n_events"),
        F.sum(F.when(is_value, 1).otherwise(0)).cast("long").alias("n_value_events"),
        F.sum(F.when(is_value, F.col("value")).cast(EXACT)).alias("value_total"),
        F.min("event_ts").alias("first_ts"),
        F.max("event_ts").alias("last_ts"),
        F.array_sort(F.collect_set("item_id")).alias("items"),
    )
    return stats.join(last_steps(events, n, "event_date", "user_id"), ["event_date", "user_id"])


def _date(d) -> Column:
    return F.lit(parse_date(d).isoformat()).cast("date")


def _on_or_before(d) -> Column:
    return F.col("event_date") <= _date(d)


def _between(lo, hi) -> Column:
    """event_date in [lo, hi] (dates or ISO strings)."""
    return F.col("event_date").between(_date(lo), _date(hi))


def window_reach(conf: LifecycleConf) -> int:
    """How many days before D the earliest window of D's lifecycle rules starts (last 30
    days, last horizon, the reactivation windows of D and of D - step); earlier days only
    count through the unbounded aggregates (totals, first / last time, last N steps)."""
    c = conf
    return max(29, c.horizon_days - 1, c.transition_step_days + c.reactivation_window_days - 1)


def base_date(snapshot_dates: Sequence[str], conf: LifecycleConf) -> dt.date:
    """The date ``user_base`` folds up to for a night's snapshots: the day before the first
    day any of their windows reads."""
    first = min(parse_date(d, "snapshot_date") for d in snapshot_dates)
    return first - dt.timedelta(days=window_reach(conf) + 1)


def day_rows(days: DataFrame) -> DataFrame:
    """``user_days`` rows, each one active day (``n_days``)."""
    return days.withColumn("n_days", F.lit(1).cast("long"))


def base_rows(base: DataFrame) -> DataFrame:
    """``user_base`` rows (every day up to ``as_of`` folded) as one day row each, dated
    ``as_of``: every window of the snapshots it serves starts after that date."""
    return base.select(
        F.col("as_of").alias("event_date"),
        "user_id",
        "n_events",
        "n_value_events",
        "value_total",
        "first_ts",
        "last_ts",
        F.lit(None).cast("array<string>").alias("items"),
        "steps",
        F.col("active_days").alias("n_days"),
    )


def history(days: DataFrame, upto, base: Optional[DataFrame] = None, as_of=None) -> DataFrame:
    """The rows to aggregate for every user's history up to ``upto``: the ``base`` (folded
    up to ``as_of``) and the ``user_days`` rows after it, else every ``user_days`` row."""
    if base is None:
        return day_rows(days.where(_on_or_before(upto)))
    after = days.where(_between(add_days(as_of, 1), upto))
    return base_rows(base).unionByName(day_rows(after))


def _totals(rows: DataFrame, n: int) -> DataFrame:
    """History rows -> per user: counts, exact value sum, first / last time, active days
    and the last N steps (the last N of the union of the rows' last Ns)."""
    stats = rows.groupBy("user_id").agg(
        F.sum("n_events").cast("long").alias("n_events"),
        F.sum("n_value_events").cast("long").alias("n_value_events"),
        F.sum("value_total").cast(EXACT).alias("value_total"),
        F.min("first_ts").alias("first_ts"),
        F.max("last_ts").alias("last_ts"),
        F.sum("n_days").cast("long").alias("active_days"),
    )
    # the most recent rows until their events reach N: events in later rows < N
    newest_first = Window.partitionBy("user_id").orderBy(F.col("event_date").desc())
    later = F.sum("n_events").over(newest_first.rowsBetween(Window.unboundedPreceding, -1))
    recent = rows.select("user_id", "steps", F.coalesce(later, F.lit(0)).alias("_later")).where(
        F.col("_later") < n
    )
    merged = F.sort_array(F.flatten(F.collect_list("steps")))
    steps = recent.groupBy("user_id").agg(
        F.slice(merged, F.greatest(F.size(merged) - n + 1, F.lit(1)), n).alias("steps")
    )
    return stats.join(steps, "user_id")


def fold(rows: DataFrame, as_of, conf: SequenceConf) -> DataFrame:
    """History rows up to ``as_of`` -> the ``user_base`` rows of ``as_of``."""
    d = parse_date(as_of, "as_of")
    t = _totals(rows.where(_on_or_before(d)), max_length(conf))
    return t.select(_date(d).alias("as_of"), *[c for c in t.columns])


def sequences_from_days(rows: DataFrame, snapshot_date: str, conf: SequenceConf) -> DataFrame:
    """History rows (:func:`history`) -> the ``user_sequences`` rows of D (=
    ``build_sequences`` of the events)."""
    d = parse_date(snapshot_date, "snapshot_date")
    t = _totals(rows.where(_on_or_before(d)), max_length(conf))
    return sequence_rows(
        t.select(
            "user_id",
            "n_events",
            "n_value_events",
            F.coalesce(F.col("value_total").cast("double"), F.lit(0.0)).alias("monetary_total"),
            F.col("first_ts").alias("first_event_ts"),
            F.col("last_ts").alias("last_event_ts"),
            "active_days",
            "steps",
        ),
        d,
    )


def lifecycle_from_days(
    rows: DataFrame,
    sequences: DataFrame,
    snapshot_date: str,
    conf: LifecycleConf,
    labels_known: bool,
) -> DataFrame:
    """History rows (:func:`history`, up to D + H when ``labels_known``) + user_sequences
    of D -> the ``user_lifecycle`` rows of D (= ``build_lifecycle`` of the events)."""
    c = conf
    d = parse_date(snapshot_date, "snapshot_date")
    prev = add_days(d, -c.transition_step_days)

    def react_parts(x):  # last day before the window of x, first day inside it
        start = add_days(x, 1 - c.reactivation_window_days)
        last_before = F.max(F.when(F.col("event_date") < _date(start), F.col("last_ts")))
        first_in = F.min(F.when(_between(start, x), F.col("first_ts")))
        return last_before, first_in

    lb_d, fi_d = react_parts(d)
    lb_p, fi_p = react_parts(prev)
    on_or_before = _on_or_before(d)
    aggs = [
        F.max(F.when(on_or_before, F.col("last_ts"))).alias("last_ts"),
        F.min("first_ts").alias("first_ts"),
        F.max(F.when(_on_or_before(prev), F.col("last_ts"))).alias("last_ts_prev"),
        lb_d.alias("lb_d"),
        fi_d.alias("fi_d"),
        lb_p.alias("lb_p"),
        fi_p.alias("fi_p"),
        F.sum(F.when(_between(add_days(d, -29), d), F.col("n_events")).otherwise(0))
        .cast("long")
        .alias("events_last_30d"),
        F.coalesce(
            F.sum(F.when(_between(add_days(d, 1 - c.horizon_days), d), F.col("value_total"))).cast(
                "double"
            ),
            F.lit(0.0),
        ).alias("value_last_horizon"),
    ]
    upper = add_days(d, c.horizon_days) if labels_known else d
    if labels_known:
        future = _between(add_days(d, 1), upper)
        aggs += [
            F.sum(F.when(future, F.col("n_events")).otherwise(0))
            .cast("long")
            .alias("events_next_horizon"),
            F.coalesce(
                F.sum(F.when(future, F.col("value_total"))).cast("double"), F.lit(0.0)
            ).alias("value_next_horizon"),
            F.array_sort(
                F.array_distinct(F.flatten(F.collect_list(F.when(future, F.col("items")))))
            ).alias("items_next_horizon"),
        ]
    per_user = (
        rows.where(_on_or_before(upper))
        .groupBy("user_id")
        .agg(*aggs)
        .where(F.col("last_ts").isNotNull())
    )
    return lifecycle_rows(per_user, sequences, d, c, labels_known)
