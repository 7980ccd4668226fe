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

The results equal :func:`data.sequences.build_sequences` and
:func:`data.lifecycle.build_lifecycle` over the same events, bit for bit.
"""

from __future__ import annotations

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


def sequences_from_days(days: DataFrame, snapshot_date: str, conf: SequenceConf) -> DataFrame:
    """``user_days`` -> the ``user_sequences`` rows of D (= ``build_sequences`` of the events)."""
    d = parse_date(snapshot_date, "snapshot_date")
    n = max_length(conf)
    upto = days.where(_on_or_before(d))
    stats = upto.groupBy("user_id").agg(
        F.sum("n_events").cast("long").alias("n_events"),
        F.sum("n_value_events").cast("long").alias("n_value_events"),
        F.coalesce(F.sum("value_total").cast("double"), F.lit(0.0)).alias("monetary_total"),
        F.min("first_ts").alias("first_event_ts"),
        F.max("last_ts").alias("last_event_ts"),
        F.count(F.lit(1)).cast("int").alias("active_days"),
    )
    # the most recent days until their events reach N: events on later days < N
    newest_first = Window.partitionBy("user_id").orderBy(F.col("event_date").desc())
    later = F.sum("n_events").over(newest_first.rowsBetween(Window.unboundedPreceding, -1))
    recent = upto.select("user_id", "steps", F.coalesce(later, F.lit(0)).alias("_later")).where(
        F.col("_later") < n
    )
    merged = F.sort_array(F.flatten(F.collect_list("steps")))
    steps = recent.groupBy("user_id").agg(
        F.slice(merged, F.greatest(F.size(merged) - n + 1, F.lit(1)), n).alias("steps")
    )
    return sequence_rows(stats.join(steps, "user_id"), d)


def lifecycle_from_days(
    days: DataFrame,
    sequences: DataFrame,
    snapshot_date: str,
    conf: LifecycleConf,
    labels_known: bool,
) -> DataFrame:
    """``user_days`` (+ user_sequences of D) -> the ``user_lifecycle`` rows of D
    (= ``build_lifecycle`` of the events)."""
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
        days.where(_on_or_before(upper))
        .groupBy("user_id")
        .agg(*aggs)
        .where(F.col("last_ts").isNotNull())
    )
    return lifecycle_rows(per_user, sequences, d, c, labels_known)
