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


def latest_first(*partition: str) -> Window:
    """Newest step first, in the exact reverse of the order of :func:`step_struct` (time,
    funnel rank, item key, value, item, type): the last N under this order are the N
    largest structs, so a last N of last Ns is the last N of the union."""
    item_key = F.coalesce(F.col("item_id"), F.lit(""))
    return Window.partitionBy(*partition).orderBy(
        F.col("event_ts").desc(),
        event_rank().desc(),
        item_key.desc(),
        F.col("value").desc(),
        F.col("item_id").desc(),
        F.col("event_type").desc(),
    )


def step_struct() -> Column:
    """One event as a step (``schemas.STEP``); sorting the structs orders the steps."""
    return F.struct(
        F.col("event_ts").alias("ts"),
        event_rank().alias("r"),
        F.coalesce(F.col("item_id"), F.lit("")).alias("k"),
        F.col("value").alias("value"),
        F.col("item_id").alias("item"),
        F.col("event_type").alias("type"),
    )


def last_steps(events: DataFrame, n: int, *by: str) -> DataFrame:
    """The last ``n`` steps per ``by`` group, oldest first, as column ``steps``. Only those
    N events per group are ever gathered: a ``row_number() <= N`` window, which Spark runs
    as a group limit on each map task before the shuffle (``WindowGroupLimit``)."""
    last_n = events.withColumn("_rn", F.row_number().over(latest_first(*by))).where(
        F.col("_rn") <= n
    )
    return last_n.groupBy(*by).agg(F.sort_array(F.collect_list(step_struct())).alias("steps"))


def build_sequences(events: DataFrame, snapshot_date: str, conf: SequenceConf) -> DataFrame:
    """events -> one row per user with an event on or before D (``user_sequences`` shape).

    Only events with ``event_date <= D`` are read: nothing after D leaks in.
    Steps are the last ``max_length`` events ordered by (event_ts, funnel order,
    item_id, value, event type), oldest first, so ties in time resolve the same way on
    every run and partitioning (:func:`last_steps`): a user with millions of events never
    has them collected into one array. The RFM features come from a separate aggregation
    with fixed-size buffers. Recency and tenure are measured from the end of D
    (D+1 00:00 UTC), in days.
    """
    d = parse_date(snapshot_date, "snapshot_date")
    n = max_length(conf)
    ev = events.where(F.col("event_date") <= F.lit(d.isoformat()).cast("date"))
    steps = last_steps(ev, n, "user_id")
    is_value = F.col("event_type").isin(*conf.value_event_types)
    stats = ev.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("n_events"),
        F.sum(F.when(is_value, 1).otherwise(0)).cast("long").alias("n_value_events"),
        exact_sum(F.when(is_value, F.col("value"))).alias("monetary_total"),
        F.min("event_ts").alias("first_event_ts"),
        F.max("event_ts").alias("last_event_ts"),
        F.countDistinct("event_date").cast("int").alias("active_days"),
    )
    return sequence_rows(stats.join(steps, "user_id"), d)


def max_length(conf: SequenceConf) -> int:
    n = int(conf.max_length)
    if n <= 0:
        raise ValueError(f"sequences.max_length must be positive, got {n}")
    return n


def sequence_rows(with_steps: DataFrame, d) -> DataFrame:
    """Per-user aggregates (n_events, n_value_events, monetary_total, first/last_event_ts,
    active_days) and ``steps`` -> the ``user_sequences`` rows of D."""
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
