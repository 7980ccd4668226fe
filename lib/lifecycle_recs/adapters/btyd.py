"""BG/NBD + Gamma-Gamma baselines on Spark: per-customer summaries as Spark
aggregates, a small driver-side fit on their distinct values with counts
(sufficient statistics: never per-event or per-user rows), and the predictions
for every user in ``mapInPandas`` (the math is ``ml.btyd``).

Two BG/NBD fits, in days: one on *active days* (any event; churn: P(no event in
the next H days)) and one on *purchase days* (a day with value events of
positive value), times Gamma-Gamma's spend per purchase day (value: expected
spend in the next H days). Users without a purchase yet are predicted 0 spend.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Iterator, Optional, Sequence

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lifecycle_recs.data.expressions import exact_sum
from lifecycle_recs.dates import parse_date
from lifecycle_recs.ml import btyd, stacking
from lifecycle_recs.ml.features import PURCHASE_COLUMNS

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    "x_active",
    "t_active",
    "age_active",
    "x_purchase",
    "t_purchase",
    "age_purchase",
    "m_purchase",
)
PREDICTION_SCHEMA = (
    "user_id string, bgnbd_p_churn double, bgnbd_p_alive double, bgnbd_expected_days double, "
    "bgnbd_gg_value double"
)


def summaries(events: DataFrame, snapshot_date: str, value_event_types: Sequence[str]) -> DataFrame:
    """One row per user with an event on or before D: (x, t_x, T) of active days and
    of purchase days, and the mean spend of the repeat purchase days (``m_purchase``)."""
    d = parse_date(snapshot_date, "snapshot_date").isoformat()
    ev = events.where(F.col("event_date") <= F.lit(d).cast("date"))
    is_value = F.col("event_type").isin(*value_event_types) & (F.col("value") > 0)
    daily = ev.groupBy("user_id", "event_date").agg(
        exact_sum(F.when(is_value, F.col("value"))).alias("v")
    )
    bought = F.col("v") > 0
    per = daily.groupBy("user_id").agg(
        F.count("*").alias("days"),
        F.min("event_date").alias("first"),
        F.max("event_date").alias("last"),
        F.sum(F.when(bought, 1).otherwise(0)).alias("p_days"),
        F.min(F.when(bought, F.col("event_date"))).alias("p_first"),
        F.max(F.when(bought, F.col("event_date"))).alias("p_last"),
        exact_sum(F.when(bought, F.col("v"))).alias("p_total"),
        F.min_by(F.col("v"), F.when(bought, F.col("event_date"))).alias("p_first_value"),
    )
    end = F.lit(d).cast("date")
    return per.select(
        "user_id",
        (F.col("days") - 1).cast("double").alias("x_active"),
        F.datediff("last", "first").cast("double").alias("t_active"),
        F.datediff(end, "first").cast("double").alias("age_active"),
        F.greatest(F.col("p_days") - 1, F.lit(0)).cast("double").alias("x_purchase"),
        F.coalesce(F.datediff("p_last", "p_first"), F.lit(0)).cast("double").alias("t_purchase"),
        F.datediff(end, "p_first").cast("double").alias("age_purchase"),  # null: never bought
        F.when(
            F.col("p_days") > 1, (F.col("p_total") - F.col("p_first_value")) / (F.col("p_days") - 1)
        ).alias("m_purchase"),
    )


def _grouped(df: DataFrame, cols: Sequence[str], max_rows: int, seed: int) -> pd.DataFrame:
    """Distinct values of ``cols`` with their counts (a uniform sample of users first
    when there are more than ``max_rows`` distinct rows)."""
    g = df.groupBy(*cols).agg(F.count("*").alias("n"))
    n = g.count()
    if n > max_rows:
        frac = max_rows / n
        log.info(
            "BG/NBD fit on a %.3f sample of users (%d distinct summaries > %d)", frac, n, max_rows
        )
        keep = (F.abs(F.xxhash64("user_id", F.lit(seed))) % 1_000_000) < int(frac * 1_000_000)
        g = df.where(keep).groupBy(*cols).agg(F.count("*").alias("n"))
    # distinct summaries: bounded by max_rows; sorted, so the fit's sums run in the same
    # order whatever the partitioning (a rerun fits bit-identical parameters)
    return g.toPandas().sort_values(list(cols), kind="mergesort").reset_index(drop=True)


def fit(
    summ: DataFrame, max_rows: int = 200_000, seed: int = 0, active: bool = True
) -> Dict[str, Dict[str, float]]:
    """Fitted parameters: ``active`` (unless not ``active``) and ``purchase`` BG/NBD,
    ``spend`` Gamma-Gamma (``purchase``/``spend`` absent when there are no purchases to fit)."""
    out: Dict[str, Dict[str, float]] = {}
    if active:
        a = _grouped(summ, ["x_active", "t_active", "age_active"], max_rows, seed)
        out["active"] = btyd.fit_bgnbd(a.x_active, a.t_active, a.age_active, a.n).to_dict()
    p = _grouped(
        summ.where(F.col("age_purchase").isNotNull()),
        ["x_purchase", "t_purchase", "age_purchase"],
        max_rows,
        seed,
    )
    if len(p):
        out["purchase"] = btyd.fit_bgnbd(p.x_purchase, p.t_purchase, p.age_purchase, p.n).to_dict()
    s = summ.where(F.col("m_purchase") > 0).select(
        "user_id", "x_purchase", F.round("m_purchase", 2).alias("m_purchase")
    )
    s = _grouped(s, ["x_purchase", "m_purchase"], max_rows, seed)
    if len(s):
        try:
            out["spend"] = btyd.fit_gamma_gamma(s.x_purchase, s.m_purchase, s.n).to_dict()
        except ValueError as e:
            log.info("Gamma-Gamma not fitted: %s", e)
    return out


def predict(summ: DataFrame, params: Dict[str, Dict[str, float]], horizon_days: int) -> DataFrame:
    """Per user: P(no event in the next H days) and P(alive) (active-days BG/NBD),
    expected active days, and expected spend (purchase BG/NBD x Gamma-Gamma)."""
    act = btyd.BGNBD(**params["active"])
    pur = btyd.BGNBD(**params["purchase"]) if "purchase" in params else None
    spend = btyd.GammaGamma(**params["spend"]) if "spend" in params else None
    H = float(horizon_days)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for b in batches:
            x, t, T = b.x_active.to_numpy(), b.t_active.to_numpy(), b.age_active.to_numpy()
            value = btyd.expected_value(
                pur,
                spend,
                H,
                b.x_purchase.to_numpy(),
                b.t_purchase.to_numpy(),
                b.age_purchase.to_numpy(dtype=float),
                b.m_purchase.to_numpy(dtype=float),
            )
            yield pd.DataFrame(
                {
                    "user_id": b.user_id,
                    "bgnbd_p_churn": btyd.p_no_transaction(act, H, x, t, T),
                    "bgnbd_p_alive": btyd.p_alive(act, x, t, T),
                    "bgnbd_expected_days": btyd.expected_transactions(act, H, x, t, T),
                    "bgnbd_gg_value": value,
                }
            )

    return summ.mapInPandas(run, PREDICTION_SCHEMA)


def with_purchases(users: DataFrame, summ: DataFrame) -> DataFrame:
    """User rows with their purchase-days summary (``PURCHASE_COLUMNS`` of
    :func:`summaries` at the users' D; null for a user without events there): the
    input of the stack's BG/NBD x Gamma-Gamma value (``ml.features.spend_features``)."""
    return users.join(summ.select("user_id", *PURCHASE_COLUMNS), "user_id", "left")


def scoring_rows(
    users: DataFrame, stack: Optional[Dict], summ: Callable[[], DataFrame]
) -> DataFrame:
    """The user rows to score of D: with the purchase-days summary of D (``summ()``:
    :func:`summaries` at D) where the artifact's stack blends BG/NBD x Gamma-Gamma's
    value in (``ml.stacking.uses_baseline_value``), else as they are (no pass over
    the events)."""
    return with_purchases(users, summ()) if stacking.uses_baseline_value(stack) else users


def sequence_summaries(sequences: DataFrame) -> DataFrame:
    """(user_id, x, t_x, age) of active days from ``user_sequences`` columns, rounded to
    whole days as ``ml.features.activity_summary`` rounds them at scoring."""
    age = F.floor(F.coalesce(F.col("tenure_days"), F.lit(0.0)) + 0.5)
    t_x = F.floor(
        F.coalesce(F.col("tenure_days") - F.col("days_since_last_event"), F.lit(0.0)) + 0.5
    )
    return sequences.select(
        "user_id",
        F.greatest(F.col("active_days") - 1, F.lit(0)).cast("double").alias("x"),
        F.least(F.greatest(t_x, F.lit(0.0)), age).cast("double").alias("t_x"),
        age.cast("double").alias("age"),
    )


def fit_activity(
    sequences: DataFrame, horizon_days: int, max_rows: int = 200_000, seed: int = 0
) -> Dict:
    """The active-days BG/NBD fitted on one snapshot of ``user_sequences``: the
    model's stacked features (``{"active": params, "horizon_days": H}``)."""
    g = _grouped(sequence_summaries(sequences), ["x", "t_x", "age"], max_rows, seed)
    if not len(g):
        return {}
    return {
        "active": btyd.fit_bgnbd(g.x, g.t_x, g.age, g.n).to_dict(),
        "horizon_days": int(horizon_days),
    }
