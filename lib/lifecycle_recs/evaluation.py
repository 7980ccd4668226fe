"""Spark-side evaluation: ranking metrics computed in Spark (tested against
``ml.metrics`` on the same data), the baselines (most popular, Spark MLlib ALS,
recency, 'same as the last H days'), metric rows and the Markdown + PNG report.
Writes nothing to tables: the ``evaluate`` stage does."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from . import tables
from .config import Config
from .dates import parse_date, utc_now
from .lifecycle import users_with_stage
from .ml.artifacts import Artifact
from .ml.metrics import binary_metrics, calibration, lift_curve, regression_metrics
from .names import AT_RISK_STAGES
from .splits import holdout_flag
from .udfs import score_users, scored_outputs


# -- metrics in Spark ----------------------------------------------------------------
def set_metrics_spark(recs: DataFrame, truth: DataFrame, k: int) -> Dict[str, float]:
    """Per-user Recall@k / NDCG@k of ranked recs (user_id, rank, item_id) against
    ``truth`` (user_id, items array), averaged over users; users with empty truth
    skipped. The Spark twin of ``ml.metrics.set_metrics``."""
    ranked = recs.where(F.col("rank") <= k).groupBy("user_id").agg(
        F.array_sort(F.collect_list(F.struct("rank", "item_id"))).alias("r"))
    j = ranked.join(truth.where(F.size("items") > 0), "user_id", "inner")
    gains = F.transform("r", lambda x: F.when(F.array_contains(F.col("items"), x["item_id"]),
                                              1.0 / F.log2(x["rank"] + 1.0)).otherwise(0.0))
    hits = F.size(F.filter("r", lambda x: F.array_contains(F.col("items"), x["item_id"])))
    n_rel = F.least(F.size("items"), F.lit(k))
    idcg = F.aggregate(F.sequence(F.lit(1), n_rel), F.lit(0.0), lambda acc, i: acc + 1.0 / F.log2(i + 1.0))
    per_user = j.select((hits / n_rel).alias("recall"),
                        (F.aggregate(gains, F.lit(0.0), lambda a, g: a + g) / idcg).alias("ndcg"))
    row = per_user.agg(F.avg("recall"), F.avg("ndcg"), F.count("*")).first()
    nan = float("nan")
    return {f"recall@{k}": float(row[0]) if row[0] is not None else nan,
            f"ndcg@{k}": float(row[1]) if row[1] is not None else nan, "users": float(row[2])}


# -- baselines ----------------------------------------------------------------------------
def most_popular_recs(sequences: DataFrame, users: DataFrame, k: int, filter_seen: bool) -> DataFrame:
    """The k most frequent items of ``sequences`` for each of ``users`` (user_id, rank,
    item_id), the user's seen items filtered the same way as ours when ``filter_seen``."""
    pop = (sequences.select(F.explode("item_ids").alias("item_id")).where(F.col("item_id").isNotNull())
           .groupBy("item_id").count().orderBy(F.desc("count"), "item_id").limit(k * 20).collect())  # small
    candidates = F.array(*[F.lit(r["item_id"]) for r in pop])
    seen = sequences.select("user_id", F.col("item_ids").alias("seen"))
    keep = (lambda x: ~F.coalesce(F.array_contains("seen", x), F.lit(False))) if filter_seen else \
        (lambda x: F.lit(True))
    return (users.select("user_id").join(seen, "user_id", "left")
            .select("user_id", F.posexplode(F.slice(F.filter(candidates, keep), 1, k)).alias("pos", "item_id"))
            .select("user_id", (F.col("pos") + 1).alias("rank"), "item_id"))


def popular_ranks(pop: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rank of each target under a fixed popularity order (ties against the target)."""
    return np.array([(pop > pop[t]).sum() + 1 for t in targets])


def als_factors(spark: SparkSession, triples, n_items: int, rank: int = 32, reg: float = 0.05,
                alpha: float = 10.0, seed: int = 2020, max_iter: int = 10):
    """Spark MLlib ALS (implicit) on (user_index, item_index, count) rows.
    Returns user factors {user_index: vector} and an item factor matrix [n_items, rank]."""
    from pyspark.ml.recommendation import ALS

    df = spark.createDataFrame(triples, "user int, item int, rating float")
    model = ALS(rank=rank, regParam=reg, alpha=alpha, implicitPrefs=True, seed=seed, maxIter=max_iter,
                userCol="user", itemCol="item", ratingCol="rating", coldStartStrategy="drop").fit(df)
    items = np.zeros((n_items, rank), np.float32)
    for r in model.itemFactors.collect():  # one row per catalog item: small
        items[r["id"]] = r["features"]
    users = {r["id"]: np.asarray(r["features"], np.float32) for r in model.userFactors.collect()}
    return users, items


# -- rows and report ----------------------------------------------------------------------
def metric_rows(snapshot_date: str, dataset: str, model: str, model_version: str, task: str,
                metrics: Dict[str, float], evaluated_at: Optional[dt.datetime] = None) -> List[Dict]:
    """``evaluation_metrics`` rows, one per metric."""
    at = evaluated_at or utc_now()
    return [{"snapshot_date": parse_date(snapshot_date), "dataset": dataset, "model": model,
             "model_version": model_version, "task": task, "metric": k,
             "value": float(v) if v is not None else float("nan"), "evaluated_at": at}
            for k, v in metrics.items()]


def write_report(out_dir: str, title: str, rows: List[Dict], churn: Optional[Dict] = None,
                 notes: str = "") -> str:
    """Markdown metric table + PNG plots (calibration, cumulative gain)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    models = sorted({r["model"] for r in rows})
    lines = [f"# {title}", "", notes, "", "| task | metric | " + " | ".join(models) + " |",
             "|---|---|" + "---|" * len(models)]
    keys = []
    for r in rows:
        if (r["task"], r["metric"]) not in keys:
            keys.append((r["task"], r["metric"]))
    val = {(r["task"], r["metric"], r["model"]): r["value"] for r in rows}
    for task, metric in keys:
        cells = [f"{val[(task, metric, m)]:.4f}" if (task, metric, m) in val else "" for m in models]
        lines.append(f"| {task} | {metric} | " + " | ".join(cells) + " |")
    if churn:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for name, (y, p) in churn.items():
            cal = calibration(y, p)
            ax[0].plot([c[0] for c in cal], [c[1] for c in cal], marker="o", label=name)
            lc = lift_curve(y, p)
            ax[1].plot([0] + [c[0] for c in lc], [0] + [c[1] for c in lc], label=name)
        ax[0].plot([0, 1], [0, 1], "k--", lw=0.8)
        ax[0].set(title="churn calibration", xlabel="predicted", ylabel="observed")
        ax[1].plot([0, 1], [0, 1], "k--", lw=0.8)
        ax[1].set(title="churn cumulative gain", xlabel="share of users (by score)", ylabel="share of churners")
        for a in ax:
            a.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "churn.png"), dpi=90)
        plt.close(fig)
        lines += ["", "![churn calibration and gain](churn.png)"]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


# -- the nightly evaluation -------------------------------------------------------------
def nightly_metrics(spark: SparkSession, cfg: Config, training_date: str, art: Artifact,
                    dataset: str = "nightly") -> Tuple[List[Dict], Optional[Dict]]:
    """Score every user of the training snapshot T with ``art`` (in memory: the
    consumer tables are never touched) and measure, on the users held out of
    training: long-horizon Recall/NDCG@K against the items of (T, T+H] (ours,
    per strategy, most popular), churn (ours vs recency), value (ours vs 'same as
    the last H days'), catalog coverage/diversity over all users of T, and the
    at-risk strategy against the plain personalised ranking for the same users.
    Returns the metric rows and the churn arrays for the report's plots."""
    T, k, version = training_date, cfg.recommend.k, art.version
    seq_t = tables.read(spark, cfg, "user_sequences", T)
    life_t = tables.read(spark, cfg, "user_lifecycle", T)
    held = life_t.where(holdout_flag(cfg.train.validation_fraction, cfg.train.seed))
    truth = held.select("user_id", F.coalesce("items_next_horizon", F.array()).alias("items"),
                        "stage", "churned_within_horizon", "value_next_horizon", "value_last_horizon",
                        "days_since_last_event")
    scored = score_users(users_with_stage(seq_t, life_t), art.path, cfg.recommend, cfg.train.device) \
        .persist(StorageLevel.MEMORY_AND_DISK)
    rows: List[Dict] = []
    try:
        outs = scored_outputs(scored, T, version, utc_now(), cfg.lifecycle.horizon_days)
        all_recs = outs["recommendations"]
        recs = all_recs.join(truth.select("user_id"), "user_id", "inner")
        rows += metric_rows(T, dataset, "ours", version, "long_horizon", set_metrics_spark(recs, truth, k))
        for strat in sorted(r[0] for r in recs.select("strategy").distinct().collect()):
            m = set_metrics_spark(recs.where(F.col("strategy") == strat), truth, k)
            rows += metric_rows(T, dataset, "ours", version, f"long_horizon[{strat}]", m)
        pop_recs = most_popular_recs(seq_t, truth, k, cfg.recommend.filter_seen)
        rows += metric_rows(T, dataset, "most_popular", "most_popular", "long_horizon",
                            set_metrics_spark(pop_recs, truth, k))
        # churn and value on held-out users (small report: one row per held-out user)
        sc = outs["retention_scores"].select("user_id", "churn_probability", "predicted_value")
        lab = truth.join(sc, "user_id", "inner").select(
            "churned_within_horizon", "churn_probability", "days_since_last_event", "value_next_horizon",
            "predicted_value", "value_last_horizon").toPandas()
        churn_plot = None
        if len(lab) and lab["churned_within_horizon"].notna().all():
            y = lab["churned_within_horizon"].astype(float).to_numpy()
            rows += metric_rows(T, dataset, "ours", version, "churn", binary_metrics(y, lab["churn_probability"]))
            rec = binary_metrics(y, lab["days_since_last_event"])
            rec["brier"] = float("nan")  # days are not a probability
            rows += metric_rows(T, dataset, "recency", "recency", "churn", rec)
            rows += metric_rows(T, dataset, "ours", version, "value",
                                regression_metrics(lab["value_next_horizon"], lab["predicted_value"]))
            rows += metric_rows(T, dataset, "same_as_last_h", "same_as_last_h", "value",
                                regression_metrics(lab["value_next_horizon"], lab["value_last_horizon"]))
            churn_plot = {"ours": (y, lab["churn_probability"].to_numpy())}
        # catalog metrics of the lists of all users of T
        items = tables.read(spark, cfg, "items").select("item_id", "category")
        n_items = items.count()
        cat = all_recs.join(items, "item_id", "left")
        per_list = cat.groupBy("user_id").agg(F.countDistinct("category").alias("c"), F.count("*").alias("n"))
        cov = cat.select("item_id").distinct().count() / max(1, n_items)
        div = per_list.agg(F.avg(F.col("c") / F.col("n"))).first()[0]
        rows += metric_rows(T, dataset, "ours", version, "catalog",
                            {"coverage": cov, "category_diversity": float(div if div is not None else "nan")})
        # at-risk strategy vs the plain personalised ranking, same users
        risky = truth.where(F.col("stage").isin(*AT_RISK_STAGES))
        if risky.count():
            plain_conf = dataclasses.replace(cfg.recommend, at_risk_value_weight=0.0)
            plain = score_users(users_with_stage(seq_t, risky), art.path, plain_conf, cfg.train.device).select(
                "user_id", F.posexplode(F.arrays_zip("rec_items")).alias("pos", "r")).select(
                "user_id", (F.col("pos") + 1).alias("rank"), F.col("r.rec_items").alias("item_id"))
            risky_recs = recs.join(risky.select("user_id"), "user_id", "inner")
            for name, rr in (("at_risk_strategy", risky_recs), ("plain_personalized", plain)):
                m = set_metrics_spark(rr, truth, k)
                m["coverage"] = rr.select("item_id").distinct().count() / max(1, n_items)
                rows += metric_rows(T, dataset, name, version, "at_risk_users", m)
    finally:
        scored.unpersist()
    return rows, churn_plot
