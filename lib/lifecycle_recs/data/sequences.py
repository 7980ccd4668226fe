"""Per-user behaviour sequences and RFM features as of a snapshot date D."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lifecycle_recs.config import SequenceConf
from lifecycle_recs.data.expressions import days_between, end_of_day, exact_sum
from lifecycle_recs.dates import parse_date
from lifecycle_recs.names import EVENT_FUNNEL_ORDER


def event_rank(col: str = "event_type") -> Column:
    """Tie-break for events with the same timestamp: the funnel order (unknown types last)."""
    m = F.create_map(*[x for k, v in EVENT_FUNNEL_ORDER.items() for x in (F.lit(k), F.lit(v))])
    return F.coalesce(m[F.col(col)], F.lit(9))


# Session settings for ``build_sequences``: collect_list of the (at most N) kept steps
# as a sort aggregate over the sorted window output, not a hash aggregate that falls
# back to sorting again.
SORT_AGGREGATE = {"spark.sql.execution.useObjectHashAggregateExec": "false"}


def build_sequences(events: DataFrame, snapshot_date: str, conf: SequenceConf) -> DataFrame:
    """events -> one row per user with an event on or before D (``user_sequences`` shape).

    Only events with ``event_date <= D`` are read: nothing after D leaks in.
    Steps are the last ``max_length`` events ordered by (event_ts, funnel order,
    item_id, value), oldest first, so ties in time resolve the same way on
    every run and partitioning. Only those N events per user are ever gathered:
    a ``row_number() <= N`` window, which Spark runs as a group limit on each
    map task before the shuffle (``WindowGroupLimit``), so a user with millions
    of events never has them collected into one array. The RFM features come
    from a separate aggregation with fixed-size buffers. Recency and tenure are
    measured from the end of D (D+1 00:00 UTC), in days.
    """
    d = parse_date(snapshot_date, "snapshot_date")
    n = int(conf.max_length)
    if n <= 0:
        raise ValueError(f"sequences.max_length must be positive, got {n}")
    ev = events.where(F.col("event_date") <= F.lit(d.isoformat()).cast("date"))
    item_key = F.coalesce(F.col("item_id"), F.lit(""))
    latest_first = Window.partitionBy("user_id").orderBy(
        F.col("event_ts").desc(), event_rank().desc(), item_key.desc(), F.col("value").desc()
    )
    last_n = ev.withColumn("_rn", F.row_number().over(latest_first)).where(F.col("_rn") <= n)
    step = F.struct(
        F.col("event_ts").alias("ts"),
        event_rank().alias("r"),
        item_key.alias("k"),
        F.col("value").alias("value"),
        F.col("item_id").alias("item"),
        F.col("event_type").alias("type"),
    )
    steps = last_n.groupBy("user_id").agg(F.sort_array(F.collect_list(step)).alias("steps"))
    is_value = F.col("event_type").isin(*conf.value_event_types)
    stats = ev.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("n_events"),
        F.sum(F.when(is_value, 1).otherwise(0)).cast("long").alias("n_value_events"),
        exact_sum(F.when(is_value, F.col("value"))).alias("monetary_total"),
        F.min("event_ts").alias("first_event_ts"),
        F.max("event_ts").alias("last_event_ts"),
        F.countDistinct("event_date").alias("active_days"),
    )
    with_steps = stats.join(steps, "user_id")
    gaps = F.expr(
        "transform(steps, (x, i) -> IF(i = 0, 0D, "
        "(unix_micros(x.ts) - unix_micros(steps[i - 1].ts)) / 3600000000D))"
    )
    end = end_of_day(d)
    return with_steps.select(
        F.lit(d.isoformat()).cast("date").alias("snapshot_date"),
        "user_id",
        F.col("steps.item").alias("item_ids"),
        F.col("steps.type").alias("event_types"),
        F.col("steps.ts").alias("event_ts"),
        gaps.alias("time_gaps_hours"),
        F.col("steps.value").alias("values"),
        F.size("steps").alias("sequence_length"),
        "n_events",
        "n_value_events",
        "monetary_total",
        "first_event_ts",
        "last_event_ts",
        days_between(end, F.col("last_event_ts")).alias("days_since_last_event"),
        days_between(end, F.col("first_event_ts")).alias("tenure_days"),
        F.col("active_days").cast("int").alias("active_days"),
    )
