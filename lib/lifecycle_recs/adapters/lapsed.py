"""The lapsed users of earlier periods, for the silence model of ``ml.lapsed``.

The training snapshot T holds few lapsed users who come back (on the demo, 17 of about 600),
too few to tell whether coming back gets rarer with silence. The same question can be
asked of the periods before T: at each cutoff c = T - k H (k = 1 .. ``periods`` - 1), the
users silent longer than ``lifecycle.churn_days`` at the end of c, and whether they had
any event in (c, c + H]. Every label ends by T, so nothing after the training snapshot is
read. A user still away at c + H is asked again there with a silence H days longer: the
pooled fit is a discrete-time hazard model (each period's outcome conditional on not
having come back before), whose likelihood is the product of the periods' and whose
standard errors stay valid.

Spark aggregates only: events -> one row per (user, day) -> per user, for every cutoff, the
last event, the first event, the active days and whether they came back (one pass) ->
counts per distinct (log1p silence, log rate), rounded as ``ml.lapsed.TailCounts`` rounds
them. Only those grouped counts reach the driver.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lifecycle_recs.data.expressions import days_between, end_of_day
from lifecycle_recs.dates import add_days, parse_date


def cutoffs(training_date: str, horizon_days: int, periods: int) -> List[str]:
    """The earlier cutoffs T - k H, k = 1 .. periods - 1 (newest first)."""
    t = parse_date(training_date, "training_date")
    return [add_days(t, -k * int(horizon_days)) for k in range(1, int(periods))]


def earlier_tail_counts(
    events: DataFrame, training_date: str, horizon_days: int, churn_days: float, periods: int
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x [groups, 2]: log1p silence and log rate, n users, k churned) of the lapsed
    users at every earlier cutoff (see the module), summed over the cutoffs."""
    cuts = cutoffs(training_date, horizon_days, periods)
    empty = (np.zeros((0, 2)), np.zeros(0), np.zeros(0))
    if not cuts:
        return empty
    H = int(horizon_days)
    last_label_day = F.lit(cuts[0]).cast("date") + F.lit(H)  # = T: nothing after it is read
    days = (
        events.where(F.col("event_date") <= last_label_day)
        .groupBy("user_id", "event_date")
        .agg(F.min("event_ts").alias("first_ts"), F.max("event_ts").alias("last_ts"))
    )
    aggs = [F.min("first_ts").alias("first_ts")]
    for i, c in enumerate(cuts):
        cd = F.lit(c).cast("date")
        before = F.col("event_date") <= cd
        aggs += [
            F.max(F.when(before, F.col("last_ts"))).alias(f"last_{i}"),
            F.sum(F.when(before, 1).otherwise(0)).alias(f"active_{i}"),
            F.max(
                F.when(
                    (F.col("event_date") > cd) & (F.col("event_date") <= F.date_add(cd, H)), 1
                ).otherwise(0)
            ).alias(f"back_{i}"),
        ]
    per_user = days.groupBy("user_id").agg(*aggs)
    rows = F.explode(
        F.array(
            *[
                F.struct(
                    days_between(end_of_day(c), F.col(f"last_{i}")).alias("silence"),
                    days_between(end_of_day(c), F.col("first_ts")).alias("tenure"),
                    F.col(f"active_{i}").cast("double").alias("active"),
                    (F.col(f"back_{i}") == 0).cast("double").alias("churned"),
                )
                for i, c in enumerate(cuts)
            ]
        )
    )
    lapsed = (
        per_user.select(rows.alias("r"))
        .select("r.*")
        .where(F.col("silence").isNotNull() & (F.col("silence") > F.lit(float(churn_days))))
    )
    grouped = (
        lapsed.select(
            F.round(F.log1p("silence"), 3).alias("x"),
            F.round(F.log1p("active") - F.log1p("tenure"), 2).alias("r"),
            "churned",
        )
        .groupBy("x", "r")
        .agg(F.count(F.lit(1)).alias("n"), F.sum("churned").alias("k"))
        .orderBy("x", "r")
    )
    got = (
        grouped.collect()
    )  # grouped counts: at most (distinct silences x distinct rates), never per user
    if not got:
        return empty
    return (
        np.array([[g["x"], g["r"]] for g in got], np.float64),
        np.array([g["n"] for g in got], np.float64),
        np.array([g["k"] for g in got], np.float64),
    )
