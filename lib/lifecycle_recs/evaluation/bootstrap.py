"""Metrics with intervals, computed as Spark aggregates (nothing per user reaches
the driver): a Poisson bootstrap over users.

Each evaluated user gets a weight per replicate, ``w ~ Poisson(1)`` drawn from a
hash of (user, replicate, seed), so replicates are reproducible and need no
driver-side sampling; replicate 0 has every weight 1 (the point estimate).
Every metric is a weighted aggregate per replicate; the driver receives one
small row per (replicate, model, metric). The 95% interval is the 2.5/97.5
percentiles of the replicates; ours-vs-baseline differences are paired (the
same weights for both in each replicate), so their interval says whether a
difference is real: ``ours better``, ``baseline better`` or ``inconclusive``
(the interval spans 0).

AUCs come from the scores in ``AUC_BINS`` quantile bins (ties within a bin count
half): the exact AUC for scores with fewer distinct values, within about
1/``AUC_BINS`` otherwise. Spearman correlations use the same binned ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from pyspark.ml.feature import Bucketizer
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

AUC_BINS = 1000
# metrics where lower is better (all others: higher is better)
LOWER_IS_BETTER = frozenset({"brier", "rmse", "mae", "calibration_error", "total_ratio_error"})
# descriptive figures with no better direction: no ours-vs-baseline row
NOT_COMPARED = frozenset({"total_ratio"})
OURS_BETTER, BASELINE_BETTER, INCONCLUSIVE = "ours better", "baseline better", "inconclusive"
# P(Poisson(1) <= k), k = 0..7
_POISSON1_CDF = tuple(sum(math.exp(-1) / math.factorial(j) for j in range(k + 1)) for k in range(8))


def poisson_weight(user: Column, rep: Column, seed: int) -> Column:
    """A Poisson(1) draw per (user, replicate) from a hash: deterministic."""
    u = (F.abs(F.xxhash64(user, rep, F.lit(seed))) % 1_000_000_000) / F.lit(1e9)
    w = F.lit(len(_POISSON1_CDF))
    for k in reversed(range(len(_POISSON1_CDF))):
        w = F.when(u < _POISSON1_CDF[k], F.lit(k)).otherwise(w)
    return w.cast("double")


def replicate(per_user: DataFrame, n_boot: int, seed: int) -> DataFrame:
    """``per_user`` x replicates 0..n_boot with the weight ``w`` (1 in replicate 0)."""
    reps = per_user.sparkSession.range(n_boot + 1).select(F.col("id").cast("int").alias("rep"))
    out = per_user.crossJoin(F.broadcast(reps))
    return out.withColumn(
        "w",
        F.when(F.col("rep") == 0, F.lit(1.0)).otherwise(
            poisson_weight(F.col("user_id"), F.col("rep"), seed)
        ),
    )


def quantile_bins(df: DataFrame, cols: Sequence[str], bins: int = AUC_BINS) -> DataFrame:
    """Adds ``<col>__bin`` (0-based quantile bin of each column; ties stay together)."""
    probs = [i / bins for i in range(1, bins)]
    qs = df.approxQuantile(list(cols), probs, 1.0 / (4 * bins)) if cols else []
    splits = [
        [-float("inf")]
        + sorted(set(float(v) for v in q if v is not None and np.isfinite(v)))
        + [float("inf")]
        for q in qs
    ]
    if not cols:
        return df
    # Bucketizer wants doubles without nulls; nulls get their own bin -1 below. One
    # withColumns per step: each withColumn re-analyses the whole (long) lineage
    filled = df.withColumns(
        {f"__{c}": F.coalesce(F.col(c).cast("double"), F.lit(0.0)) for c in cols}
    )
    b = Bucketizer(
        splitsArray=splits,
        inputCols=[f"__{c}" for c in cols],
        outputCols=[f"{c}__bin" for c in cols],
        handleInvalid="keep",
    )
    out = b.transform(filled)
    return out.withColumns(
        {
            f"{c}__bin": F.when(F.col(c).isNull(), F.lit(-1.0)).otherwise(F.col(f"{c}__bin"))
            for c in cols
        }
    ).drop(*[f"__{c}" for c in cols])


# -- per-replicate aggregates --------------------------------------------------------
class Part(NamedTuple):
    """The metrics computed from one per-replicate aggregate: ``df`` has one row per
    (rep, model, metric) with ``value`` and ``n`` (users), ``keys`` its (model, metric)s."""

    df: DataFrame
    keys: Tuple[Tuple[str, str], ...]


def _long(df: DataFrame, metrics: Sequence[Tuple[str, str, Column, Column]]) -> Part:
    """One part from the aggregate ``df`` (one row per rep) and its metrics (model,
    metric, value, n): the rows are made by exploding an array of structs, so
    collecting the part is one job however many metrics it holds."""
    rows = [
        F.struct(
            F.lit(model).alias("model"),
            F.lit(metric).alias("metric"),
            value.cast("double").alias("value"),
            n.cast("long").alias("n"),
        )
        for model, metric, value, n in metrics
    ]
    out = df.select("rep", F.explode(F.array(*rows)).alias("m")).select(
        "rep", "m.model", "m.metric", "m.value", "m.n"
    )
    return Part(out, tuple((model, metric) for model, metric, _, _ in metrics))


def mean_parts(rep: DataFrame, columns: Dict[Tuple[str, str], str]) -> List[Part]:
    """Weighted means per replicate: {(model, metric): column} (null values skipped)."""
    aggs = []
    for i, ((model, metric), c) in enumerate(columns.items()):
        aggs += [
            F.sum(F.col("w") * F.col(c)).alias(f"s{i}"),
            F.sum(F.when(F.col(c).isNotNull(), F.col("w"))).alias(f"n{i}"),
            F.count(F.col(c)).alias(f"u{i}"),
        ]
    if not aggs:
        return []
    g = rep.groupBy("rep").agg(*aggs)
    return [
        _long(
            g,
            [
                (model, metric, F.try_divide(F.col(f"s{i}"), F.col(f"n{i}")), F.col(f"u{i}"))
                for i, (model, metric) in enumerate(columns)
            ],
        )
    ]


def binary_parts(
    rep: DataFrame, y: str, scores: Dict[str, str], probabilities: Sequence[str]
) -> List[Part]:
    """ROC AUC and PR AUC (average precision) from the binned scores (``<col>__bin``),
    and, for the models in ``probabilities``, Brier score and calibration error
    (expected calibration error over 10 equal-width bins). One part per model
    for the AUCs and one per probability model for Brier and calibration."""
    out = []
    for model, col in scores.items():
        g = (
            rep.where(F.col(col).isNotNull())
            .groupBy("rep", F.col(f"{col}__bin").alias("bin"))
            .agg(
                F.sum(F.col("w") * F.col(y)).alias("pos"),
                F.sum(F.col("w") * (1 - F.col(y))).alias("neg"),
                F.count("*").alias("users"),
            )
        )
        asc = Window.partitionBy("rep").orderBy("bin").rowsBetween(Window.unboundedPreceding, -1)
        desc = (
            Window.partitionBy("rep")
            .orderBy(F.desc("bin"))
            .rowsBetween(Window.unboundedPreceding, 0)
        )
        g = g.withColumns(
            {
                "neg_below": F.coalesce(F.sum("neg").over(asc), F.lit(0.0)),
                "cum_pos": F.sum("pos").over(desc),
                "cum_all": F.sum(F.col("pos") + F.col("neg")).over(desc),
            }
        )
        t = g.groupBy("rep").agg(
            F.sum(F.col("pos") * (F.col("neg_below") + 0.5 * F.col("neg"))).alias("s"),
            F.sum("pos").alias("P"),
            F.sum("neg").alias("N"),
            F.sum("users").alias("users"),
            F.sum(
                F.when(
                    F.col("pos") > 0,
                    F.col("pos") * F.try_divide(F.col("cum_pos"), F.col("cum_all")),
                )
            ).alias("ap"),
        )
        defined = (F.col("P") > 0) & (F.col("N") > 0)
        out.append(
            _long(
                t,
                [
                    (
                        model,
                        "roc_auc",
                        F.when(defined, F.try_divide(F.col("s"), F.col("P") * F.col("N"))),
                        F.col("users"),
                    ),
                    (
                        model,
                        "pr_auc",
                        F.when(F.col("P") > 0, F.try_divide(F.col("ap"), F.col("P"))),
                        F.col("users"),
                    ),
                ],
            )
        )
    for model in probabilities:
        col = scores[model]
        base = rep.where(F.col(col).isNotNull())
        # Brier from the calibration bins' sums: one aggregate for both
        cal = base.groupBy("rep", F.least(F.floor(F.col(col) * 10), F.lit(9)).alias("b")).agg(
            F.sum(F.col("w") * F.col(col)).alias("sp"),
            F.sum(F.col("w") * F.col(y)).alias("sy"),
            F.sum(F.col("w") * (F.col(col) - F.col(y)) ** 2).alias("se"),
            F.sum("w").alias("W"),
            F.count("*").alias("users"),
        )
        e = cal.groupBy("rep").agg(
            F.sum(F.abs(F.col("sp") - F.col("sy"))).alias("gap"),
            F.sum("se").alias("se"),
            F.sum("W").alias("W"),
            F.sum("users").alias("users"),
        )
        out.append(
            _long(
                e,
                [
                    (model, "brier", F.try_divide(F.col("se"), F.col("W")), F.col("users")),
                    (
                        model,
                        "calibration_error",
                        F.try_divide(F.col("gap"), F.col("W")),
                        F.col("users"),
                    ),
                ],
            )
        )
    return out


def midranks(df: DataFrame, col: str) -> DataFrame:
    """Adds ``<col>__rank``: the mid-rank of the column's quantile bin (``<col>__bin``),
    from a small table of bin counts (at most ``AUC_BINS`` rows)."""
    counts = df.where(F.col(col).isNotNull()).groupBy(F.col(f"{col}__bin").alias("b")).count()
    w = Window.orderBy("b").rowsBetween(Window.unboundedPreceding, -1)
    ranks = counts.withColumn("below", F.coalesce(F.sum("count").over(w), F.lit(0))).select(
        F.col("b").alias(f"{col}__bin"),
        (F.col("below") + (F.col("count") + 1) / 2.0).alias(f"{col}__rank"),
    )
    return df.join(F.broadcast(ranks), f"{col}__bin", "left")


def regression_parts(rep: DataFrame, y: str, preds: Dict[str, str]) -> List[Part]:
    """RMSE, MAE, Spearman (from ``<col>__rank``), total predicted / actual and its
    distance from 1 (``total_ratio_error``): one part per model."""
    out = []
    for model, col in preds.items():
        r = rep.where(F.col(col).isNotNull() & F.col(y).isNotNull())
        e = F.col(col) - F.col(y)
        x1, y1 = F.col(f"{col}__rank"), F.col(f"{y}__rank")
        t = r.groupBy("rep").agg(
            F.sum("w").alias("W"),
            F.count("*").alias("users"),
            F.sum(F.col("w") * e * e).alias("se"),
            F.sum(F.col("w") * F.abs(e)).alias("ae"),
            F.sum(F.col("w") * F.col(col)).alias("tp"),
            F.sum(F.col("w") * F.col(y)).alias("ty"),
            F.sum(F.col("w") * x1).alias("sx"),
            F.sum(F.col("w") * y1).alias("sy"),
            F.sum(F.col("w") * x1 * x1).alias("sxx"),
            F.sum(F.col("w") * y1 * y1).alias("syy"),
            F.sum(F.col("w") * x1 * y1).alias("sxy"),
        )

        def per_w(c):  # a replicate may give every user of a small group weight 0
            return F.try_divide(c, F.col("W"))

        cov = per_w(F.col("sxy")) - per_w(F.col("sx")) * per_w(F.col("sy"))
        vx = per_w(F.col("sxx")) - per_w(F.col("sx")) ** 2
        vy = per_w(F.col("syy")) - per_w(F.col("sy")) ** 2
        ratio = F.when(F.col("ty") > 0, F.try_divide(F.col("tp"), F.col("ty")))
        users = F.col("users")
        out.append(
            _long(
                t,
                [
                    (model, "rmse", F.sqrt(F.try_divide(F.col("se"), F.col("W"))), users),
                    (model, "mae", F.try_divide(F.col("ae"), F.col("W")), users),
                    (
                        model,
                        "spearman",
                        F.when((vx > 1e-12) & (vy > 1e-12), F.try_divide(cov, F.sqrt(vx * vy))),
                        users,
                    ),
                    (model, "total_ratio", ratio, users),
                    (model, "total_ratio_error", F.abs(ratio - 1.0), users),
                ],
            )
        )
    return out


# -- summarising on the driver (small: replicates x models x metrics) ------------------
@dataclass
class Summary:
    task: str
    model: str
    metric: str
    value: float
    n: int
    low: Optional[float]
    high: Optional[float]
    verdict: Optional[str] = None


def collect(parts: List[Part]) -> Dict[Tuple[str, str], Dict[int, Tuple[float, int]]]:
    """{(model, metric): {rep: (value, users)}}; undefined values (null) left out.

    One small job per part (per aggregate, all its metrics exploded into rows): a
    union of the parts would be one job, but Spark re-analyses the growing union at
    each ``unionByName``, and every part carries the whole lineage of the evaluated
    users (scoring, joins, bins), so planning that union cost ~3 s per part on any
    data size; and each job costs ~0.7 s on 2 cores however small, so a job per
    metric cost more than the metrics (``benchmarks/evaluate_collect.py``)."""
    out: Dict[Tuple[str, str], Dict[int, Tuple[float, int]]] = {}
    for part in parts:
        for r in part.df.where(F.col("value").isNotNull() & ~F.isnan("value")).collect():
            out.setdefault((r["model"], r["metric"]), {})[r["rep"]] = (
                float(r["value"]),
                int(r["n"]),
            )
    return out


def _interval(values: np.ndarray) -> Tuple[Optional[float], Optional[float]]:
    if len(values) < 2:
        return None, None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def summarise(
    task: str, reps: Dict[Tuple[str, str], Dict[int, Tuple[float, int]]], ours: str = "ours"
) -> List[Summary]:
    """Point estimate (replicate 0), 95% interval, n per (model, metric); plus a paired
    difference ``ours - baseline`` per baseline and metric with its verdict."""
    out = []
    for (model, metric), byrep in sorted(reps.items()):
        if 0 not in byrep:
            continue
        boot = np.array([v for r, (v, _) in byrep.items() if r > 0])
        out.append(Summary(task, model, metric, byrep[0][0], byrep[0][1], *_interval(boot)))
    for (model, metric), byrep in sorted(reps.items()):
        mine = reps.get((ours, metric))
        if (
            model == ours
            or metric in NOT_COMPARED
            or mine is None
            or 0 not in mine
            or 0 not in byrep
        ):
            continue
        common = sorted(set(mine) & set(byrep) - {0})
        diff = np.array([mine[r][0] - byrep[r][0] for r in common])
        lo, hi = _interval(diff)
        out.append(
            Summary(
                task,
                f"{ours}-vs-{model}",
                metric,
                mine[0][0] - byrep[0][0],
                min(mine[0][1], byrep[0][1]),
                lo,
                hi,
                verdict(metric, lo, hi),
            )
        )
    return out


def verdict(metric: str, low: Optional[float], high: Optional[float]) -> str:
    """Who wins a paired difference ``ours - baseline`` whose 95% interval is [low, high]."""
    if low is None or high is None or low <= 0 <= high:
        return INCONCLUSIVE
    ours_higher = low > 0
    better = (not ours_higher) if metric in LOWER_IS_BETTER else ours_higher
    return OURS_BETTER if better else BASELINE_BETTER
