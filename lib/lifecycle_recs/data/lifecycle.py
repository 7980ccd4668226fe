"""Lifecycle stage per user as of D, its transition, and training labels.

Stages, first match wins (thresholds in ``LifecycleConf``):

* ``churned``      no event for more than ``churn_days``;
* ``reactivated``  active again within the last ``reactivation_window_days`` after
                   a silence longer than ``churn_days``;
* ``new``          first event within the last ``new_days``;
* ``at_risk``      silent for more than ``at_risk_days``, or for more than
                   ``at_risk_gap_multiplier`` x the user's own median gap between
                   active days (and at least ``at_risk_min_days``);
* ``active``       otherwise.

Everything is computed in one aggregation over events (no sort, no collect).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lifecycle_recs.config import LifecycleConf, SequenceConf
from lifecycle_recs.data.expressions import days_between, end_of_day, exact_sum, shift_days
from lifecycle_recs.dates import add_days, parse_date


def stage_expr(
    recency: Column, tenure: Column, reactivated: Column, median_gap: Column, c: LifecycleConf
) -> Column:
    at_risk = (recency > c.at_risk_days) | (
        median_gap.isNotNull()
        & (recency > F.lit(c.at_risk_gap_multiplier) * median_gap)
        & (recency > c.at_risk_min_days)
    )
    return (
        F.when(recency > c.churn_days, "churned")
        .when(reactivated, "reactivated")
        .when(tenure <= c.new_days, "new")
        .when(at_risk, "at_risk")
        .otherwise("active")
    )


def build_lifecycle(
    events: DataFrame,
    sequences: DataFrame,
    snapshot_date: str,
    conf: LifecycleConf,
    seq_conf: SequenceConf,
    labels_known: bool,
) -> DataFrame:
    """events (+ user_sequences of D for the median gap) -> ``user_lifecycle`` rows for D.

    Only users with an event on or before D appear. Features read events
    before the end of D; labels read only (D, D+H] and are null unless
    ``labels_known`` (the events cover D+H), so a scoring snapshot never
    carries made-up labels.
    """
    c = conf
    d = parse_date(snapshot_date, "snapshot_date")
    end = end_of_day(d)
    prev_end = end_of_day(add_days(d, -c.transition_step_days))
    horizon_end = shift_days(end, c.horizon_days)
    ts = F.col("event_ts")

    def react_parts(e: Column):
        window_start = shift_days(e, -c.reactivation_window_days)
        last_before = F.max(F.when(ts < window_start, ts))
        first_in = F.min(F.when((ts >= window_start) & (ts < e), ts))
        return last_before, first_in

    is_value = F.col("event_type").isin(*seq_conf.value_event_types)
    lb_d, fi_d = react_parts(end)
    lb_p, fi_p = react_parts(prev_end)
    upper = horizon_end if labels_known else end
    future = (ts >= end) & (ts < horizon_end)
    aggs = [
        F.max(F.when(ts < end, ts)).alias("last_ts"),
        F.min(ts).alias("first_ts"),
        F.max(F.when(ts < prev_end, ts)).alias("last_ts_prev"),
        lb_d.alias("lb_d"),
        fi_d.alias("fi_d"),
        lb_p.alias("lb_p"),
        fi_p.alias("fi_p"),
        F.sum(F.when((ts >= shift_days(end, -30)) & (ts < end), 1).otherwise(0))
        .cast("long")
        .alias("events_last_30d"),
        exact_sum(
            F.when((ts >= shift_days(end, -c.horizon_days)) & (ts < end) & is_value, F.col("value"))
        ).alias("value_last_horizon"),
    ]
    if labels_known:
        aggs += [
            F.sum(F.when(future, 1).otherwise(0)).cast("long").alias("events_next_horizon"),
            exact_sum(F.when(future & is_value, F.col("value"))).alias("value_next_horizon"),
            F.array_sort(F.collect_set(F.when(future, F.col("item_id")))).alias(
                "items_next_horizon"
            ),
        ]
    per_user = (
        events.where(F.col("event_ts") < upper)
        .groupBy("user_id")
        .agg(*aggs)
        .where(F.col("last_ts").isNotNull())
    )
    return lifecycle_rows(per_user, sequences, d, c, labels_known)


def lifecycle_rows(
    per_user: DataFrame, sequences: DataFrame, d, c: LifecycleConf, labels_known: bool
) -> DataFrame:
    """Per-user window aggregates (last_ts, first_ts, last_ts_prev, the reactivation parts
    lb/fi of D and of D - step, events_last_30d, value_last_horizon and, when
    ``labels_known``, the next-horizon labels) + the median gap of ``sequences`` -> the
    ``user_lifecycle`` rows of D."""
    end = end_of_day(d)
    prev_end = end_of_day(add_days(d, -c.transition_step_days))
    gaps_df = sequences.select(
        "user_id",
        F.array_sort(F.array_distinct(F.transform("event_ts", lambda x: F.to_date(x)))).alias("_d"),
    )
    gaps_df = gaps_df.select(
        "user_id",
        F.array_sort(
            F.expr(
                "transform(slice(_d, 2, greatest(size(_d) - 1, 0)), (x, i) -> CAST(datediff(x, "
                "_d[i]) AS DOUBLE))"
            )
        ).alias("_g"),
    )
    median_gap = F.when(F.size("_g") >= 2, F.element_at("_g", (F.size("_g") / 2).cast("int") + 1))
    gaps_df = gaps_df.select("user_id", median_gap.alias("median_gap_days"))

    j = per_user.join(gaps_df, on="user_id", how="left")
    recency = days_between(end, F.col("last_ts"))
    tenure = days_between(end, F.col("first_ts"))
    react_d = (
        F.col("fi_d").isNotNull()
        & F.col("lb_d").isNotNull()
        & (days_between(F.col("fi_d"), F.col("lb_d")) > c.churn_days)
    )
    stage = stage_expr(recency, tenure, react_d, F.col("median_gap_days"), c)
    rec_p = days_between(prev_end, F.col("last_ts_prev"))
    ten_p = days_between(prev_end, F.col("first_ts"))
    react_p = (
        F.col("fi_p").isNotNull()
        & F.col("lb_p").isNotNull()
        & (days_between(F.col("fi_p"), F.col("lb_p")) > c.churn_days)
    )
    prev_stage = F.when(
        F.col("last_ts_prev").isNotNull(),
        stage_expr(rec_p, ten_p, react_p, F.col("median_gap_days"), c),
    )
    null_l, null_d, null_a = (
        F.lit(None).cast("long"),
        F.lit(None).cast("double"),
        F.lit(None).cast("array<string>"),
    )
    out = j.select(
        F.lit(d.isoformat()).cast("date").alias("snapshot_date"),
        "user_id",
        stage.alias("stage"),
        prev_stage.alias("previous_stage"),
        recency.alias("days_since_last_event"),
        tenure.alias("tenure_days"),
        "median_gap_days",
        "events_last_30d",
        "value_last_horizon",
        F.lit(c.horizon_days).alias("horizon_days"),
        F.lit(bool(labels_known)).alias("has_labels"),
        (F.col("events_next_horizon") == 0).alias("churned_within_horizon")
        if labels_known
        else F.lit(None).cast("boolean").alias("churned_within_horizon"),
        F.col("value_next_horizon") if labels_known else null_d.alias("value_next_horizon"),
        F.col("events_next_horizon") if labels_known else null_l.alias("events_next_horizon"),
        F.col("items_next_horizon") if labels_known else null_a.alias("items_next_horizon"),
    )
    return out.withColumn(
        "stage_changed", F.coalesce(F.col("stage") != F.col("previous_stage"), F.lit(True))
    )


def users_with_stage(sequences: DataFrame, lifecycle: DataFrame) -> DataFrame:
    """user_sequences ⋈ user_lifecycle.stage of one snapshot: the scorer's input."""
    return sequences.join(lifecycle.select("user_id", "stage"), "user_id", "inner")
