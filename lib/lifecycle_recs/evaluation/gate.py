"""Which lifecycle strategies the score stage of night D applies.

The evaluate stage compares each strategy with the plain personalised ranking for the
same users (``evaluation_metrics``, task ``strategy[<name>]``, model
``ours-vs-plain_personalized``: recall, NDCG and the long-term-value association of the
items shown, each a paired difference with a 95% interval and a verdict). A strategy is
kept only where it wins or ties: with ``recommend.strategy_gate`` on, a strategy with a
``baseline better`` verdict in the latest nightly evaluation of an earlier night is not
applied (its users get the plain ranking and the ``personalized`` label), and the reason
is logged and returned. ``recommend.strategies_off`` turns strategies off by hand.

Only evaluations of snapshots before T = D - H count: night D's own evaluate stage writes
the snapshot T after score, so a rerun of night D sees the same evaluations as its first
run and lands the same lists. The evaluate stage measures every strategy whether it is
applied or not, so a strategy turned off comes back once it no longer loses.
"""

from __future__ import annotations

import logging
from typing import Dict

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lifecycle_recs.config import Config
from lifecycle_recs.dates import parse_date, training_date
from lifecycle_recs.evaluation.bootstrap import BASELINE_BETTER
from lifecycle_recs.evaluation.nightly import PLAIN_MODEL
from lifecycle_recs.io import tables
from lifecycle_recs.names import STRATEGY_AT_RISK, STRATEGY_NEW_USER

log = logging.getLogger(__name__)
PLAIN_COMPARISON = f"ours-vs-{PLAIN_MODEL}"


def losing_strategies(spark: SparkSession, cfg: Config, d: str) -> Dict[str, str]:
    """Strategy -> why it is off tonight: the rows of the latest nightly evaluation of a
    snapshot before D - H where it lost to the plain ranking. Empty when the gate is off or
    no such evaluation exists. Reads a few metric rows (one small aggregate and one filter)."""
    if not cfg.recommend.strategy_gate:
        return {}
    before = parse_date(training_date(d, cfg.lifecycle.horizon_days))
    if not tables.exists(spark, cfg, "evaluation_metrics"):
        log.info(
            "strategy gate: no nightly evaluation of a snapshot before %s yet; every strategy "
            "applies",
            before,
        )
        return {}
    ev = tables.read(spark, cfg, "evaluation_metrics")
    missing = sorted({"verdict", "ci_low", "ci_high", "n_users"} - set(ev.columns))
    if missing:  # a table from before the verdicts: the next evaluate adds the columns
        log.info(
            "strategy gate: evaluation_metrics has no %s yet (written before verdicts existed); "
            "every strategy applies",
            missing,
        )
        return {}
    ev = ev.where((F.col("dataset") == "nightly") & (F.col("snapshot_date") < F.lit(before)))
    latest = ev.agg(F.max("snapshot_date")).first()[0]
    if latest is None:
        log.info(
            "strategy gate: no nightly evaluation of a snapshot before %s yet; every strategy "
            "applies",
            before,
        )
        return {}
    names = [f"strategy[{s}]" for s in (STRATEGY_NEW_USER, STRATEGY_AT_RISK)]
    rows = (
        ev.where(
            (F.col("snapshot_date") == F.lit(latest))
            & F.col("task").isin(names)
            & (F.col("model") == PLAIN_COMPARISON)
            & (F.col("verdict") == BASELINE_BETTER)
        )
        .select("task", "metric", "value", "ci_low", "ci_high", "n_users")
        .orderBy("task", "metric")
        .collect()
    )  # small: at most a few rows per strategy
    off: Dict[str, list] = {}
    for r in rows:
        off.setdefault(r["task"][len("strategy[") : -1], []).append(
            f"{r['metric']} {r['value']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] on "
            f"{r['n_users']} users"
        )
    reasons = {
        s: f"lost to the plain ranking in the evaluation of {latest}: " + "; ".join(v)
        for s, v in off.items()
    }
    for s, why in reasons.items():
        log.info("strategy gate: %s is not applied tonight (%s)", s, why)
    if not reasons:
        log.info(
            "strategy gate: every strategy won or tied the plain ranking in the evaluation of %s",
            latest,
        )
    return reasons
