"""Evaluation: named metric functions, baselines, the ``evaluation_metrics``
table and a Markdown + PNG report.

Metric functions are plain numpy (tested against hand-computed values).
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

# -- ranking ------------------------------------------------------------------------


def rank_metrics(ranks: np.ndarray, k: int = 10) -> Dict[str, float]:
    """Hit@k, NDCG@k, MRR@k from 1-based ranks of a single target per user."""
    r = np.asarray(ranks, dtype=np.float64)
    if len(r) == 0:
        return {f"hit@{k}": float("nan"), f"ndcg@{k}": float("nan"), f"mrr@{k}": float("nan")}
    inside = r <= k
    return {f"hit@{k}": float(inside.mean()),
            f"ndcg@{k}": float(np.where(inside, 1.0 / np.log2(r + 1.0), 0.0).mean()),
            f"mrr@{k}": float(np.where(inside, 1.0 / r, 0.0).mean())}


def set_metrics(recommended: Sequence[Sequence], truth: Sequence[Iterable], k: int) -> Dict[str, float]:
    """Recall@k and NDCG@k against a set of relevant items per user (long horizon).
    Users with an empty truth set are skipped."""
    recalls, ndcgs = [], []
    for rec, rel in zip(recommended, truth):
        rel = set(rel or ())
        if not rel:
            continue
        top = list(rec)[:k]
        gains = [1.0 if x in rel else 0.0 for x in top]
        recalls.append(sum(gains) / min(len(rel), k))
        dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
        idcg = sum(1.0 / np.log2(i + 2) for i in range(min(len(rel), k)))
        ndcgs.append(dcg / idcg)
    n = len(recalls)
    return {f"recall@{k}": float(np.mean(recalls)) if n else float("nan"),
            f"ndcg@{k}": float(np.mean(ndcgs)) if n else float("nan"), "users": float(n)}


# -- binary (churn) -------------------------------------------------------------------


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (ties get half credit)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    n_pos, n_neg = y.sum(), (~y).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sp = p[order]
    # average ranks for ties
    i = 0
    while i < len(sp):
        j = i
        while j + 1 < len(sp) and sp[j + 1] == sp[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """PR AUC as average precision (step-wise, like scikit-learn)."""
    y = np.asarray(y).astype(bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(p, dtype=np.float64), kind="mergesort")
    ys = y[order]
    tp = np.cumsum(ys)
    precision = tp / np.arange(1, len(ys) + 1)
    return float((precision * ys).sum() / ys.sum())


def binary_metrics(y: np.ndarray, p: np.ndarray) -> Dict[str, float]:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    return {"roc_auc": roc_auc(y, p), "pr_auc": average_precision(y, p),
            "brier": float(np.mean((p - y) ** 2)) if len(y) else float("nan"),
            "base_rate": float(y.mean()) if len(y) else float("nan")}


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10):
    """(mean predicted, observed rate, count) per equal-width probability bin."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append((float(p[m].mean()), float(y[m].mean()), int(m.sum())))
    return out


def lift_curve(y: np.ndarray, p: np.ndarray, points: int = 20):
    """Cumulative gain: fraction of positives captured in the top x of users by score."""
    y = np.asarray(y, float)
    order = np.argsort(-np.asarray(p, float), kind="mergesort")
    cum = np.cumsum(y[order]) / max(1.0, y.sum())
    xs = np.linspace(0, 1, points + 1)[1:]
    return [(float(x), float(cum[max(0, int(np.ceil(x * len(y))) - 1)])) for x in xs] if len(y) else []


# -- regression (value) ----------------------------------------------------------------


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    import pandas as pd

    a, b = pd.Series(np.asarray(a, float)), pd.Series(np.asarray(b, float))
    if a.nunique() < 2 or b.nunique() < 2:
        return float("nan")
    return float(a.rank().corr(b.rank()))


def regression_metrics(y: np.ndarray, yhat: np.ndarray) -> Dict[str, float]:
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    return {"mae": float(np.mean(np.abs(y - yhat))), "rmse": float(np.sqrt(np.mean((y - yhat) ** 2))),
            "spearman": spearman(y, yhat)}


# -- catalog -------------------------------------------------------------------------------


def catalog_metrics(recs: Sequence[Sequence[int]], n_catalog: int, popularity: np.ndarray,
                    categories: Optional[Sequence] = None) -> Dict[str, float]:
    """Coverage (share of catalog recommended to anyone), intra-list diversity
    (share of distinct categories in a list), popularity bias (mean log popularity)."""
    flat = [i for r in recs for i in r]
    out = {"coverage": len(set(flat)) / max(1, n_catalog),
           "popularity_bias": float(np.mean(np.log1p(popularity[flat]))) if flat else float("nan")}
    if categories is not None and recs:
        out["category_diversity"] = float(np.mean([len({categories[i] for i in r}) / max(1, len(r)) for r in recs if r]))
    return out


# -- baselines ----------------------------------------------------------------------------


def popularity_scores(items: np.ndarray, n_items: int) -> np.ndarray:
    """Counts per item index over the training steps (index 0/1 never win)."""
    c = np.bincount(items[items > 1].ravel(), minlength=n_items).astype(np.float64)
    c[:2] = -1
    return c


def popular_ranks(pop: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rank of each target under a fixed popularity order (ties against the target)."""
    return np.array([(pop > pop[t]).sum() + 1 for t in targets])


def als_factors(spark, triples, n_items: int, rank: int = 32, reg: float = 0.05, alpha: float = 10.0,
                seed: int = 2020, max_iter: int = 10):
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


# -- table and report ---------------------------------------------------------------------


def metric_rows(snapshot_date: str, dataset: str, model: str, model_version: str, task: str,
                metrics: Dict[str, float]) -> List[Dict]:
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    return [{"snapshot_date": dt.date.fromisoformat(snapshot_date), "dataset": dataset, "model": model,
             "model_version": model_version, "task": task, "metric": k,
             "value": float(v) if v is not None else float("nan"), "evaluated_at": now}
            for k, v in metrics.items()]


def write_metrics(spark, cfg, rows: List[Dict], snapshot_date: str, dataset: str) -> int:
    """Replace this (snapshot, dataset)'s rows of ``evaluation_metrics`` in one commit."""
    from . import tables

    ts = tables.spec("evaluation_metrics")
    tables.ensure_table(spark, cfg, ts)
    df = spark.createDataFrame(rows, ts.schema)
    (df.write.format("delta").mode("overwrite")
     .option("replaceWhere", f"snapshot_date = DATE'{snapshot_date}' AND dataset = '{dataset}'")
     .save(tables.path(cfg, "evaluation_metrics")))
    return len(rows)


def write_report(out_dir: str, title: str, rows: List[Dict], churn: Optional[Dict] = None,
                 notes: str = "") -> str:
    """Markdown metric table + PNG plots (calibration, cumulative gain)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    lines = [f"# {title}", "", notes, "", "| task | metric | " + " | ".join(sorted({r['model'] for r in rows})) + " |"]
    models = sorted({r["model"] for r in rows})
    lines.append("|---|---|" + "---|" * len(models))
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


# -- the nightly stage --------------------------------------------------------------------


def _set_metrics_spark(recs, truth, k: int):
    """Spark: per-user Recall@k / NDCG@k of ranked recs (user_id, rank, item_id)
    against ``truth`` (user_id, items array); users with empty truth skipped."""
    from pyspark.sql import functions as F

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
    return {f"recall@{k}": float(row[0] or float("nan")), f"ndcg@{k}": float(row[1] or float("nan")),
            "users": float(row[2])}


def run_stage(ctx) -> Dict[str, object]:
    """Nightly stage ``evaluate``: score the training snapshot T = D - H with the
    latest artifact (written to the output tables' T partition), then measure,
    on the users held out of training, what landed: long-horizon Recall/NDCG@K of
    ``recommendations`` against the items of (T, D], churn (vs recency), value
    (vs 'same as the last H days'), catalog coverage/diversity, the at-risk
    strategy against the plain personalized ranking, and the most-popular
    baseline. Writes ``evaluation_metrics`` and a report."""
    from pyspark.sql import functions as F

    from . import tables
    from .config import RecommendConf
    from .pipeline import RunContext
    from .scoring import run_stage as score_stage
    from .training import holdout_flag, load_artifact

    spark, cfg = ctx.spark, ctx.cfg
    T = ctx.training_date
    k = cfg.recommend.k
    art = load_artifact(cfg.artifacts)
    score_stage(RunContext(spark, cfg, T))
    held = tables.read(spark, cfg, "user_lifecycle", T).where(holdout_flag(cfg.train.validation_fraction,
                                                                           cfg.train.seed))
    truth = held.select("user_id", F.coalesce("items_next_horizon", F.array()).alias("items"),
                        "stage", "churned_within_horizon", "value_next_horizon", "value_last_horizon",
                        "days_since_last_event")
    recs = tables.read(spark, cfg, "recommendations", T).join(truth.select("user_id"), "user_id", "inner")
    rows = []
    ours = _set_metrics_spark(recs, truth, k)
    rows += metric_rows(T, "nightly", "ours", art.version, "long_horizon", ours)
    for strat in [r[0] for r in recs.select("strategy").distinct().collect()]:
        m = _set_metrics_spark(recs.where(F.col("strategy") == strat), truth, k)
        rows += metric_rows(T, "nightly", "ours", art.version, f"long_horizon[{strat}]", m)
    # most popular, seen items filtered the same way, for the same users
    pop = (tables.read(spark, cfg, "user_sequences", T).select(F.explode("item_ids").alias("item_id"))
           .where(F.col("item_id").isNotNull()).groupBy("item_id").count()
           .orderBy(F.desc("count"), "item_id").limit(k * 20).collect())  # small: top of the catalog
    pop_ids = [r["item_id"] for r in pop]
    seen = tables.read(spark, cfg, "user_sequences", T).select("user_id", F.col("item_ids").alias("seen"))
    pop_recs = truth.select("user_id").join(seen, "user_id", "left").select(
        "user_id", F.posexplode(F.slice(F.filter(F.array(*[F.lit(x) for x in pop_ids]),
                                                 lambda x: ~F.coalesce(F.array_contains("seen", x), F.lit(False))
                                                 if cfg.recommend.filter_seen else F.lit(True)), 1, k))
        .alias("pos", "item_id")).select("user_id", (F.col("pos") + 1).alias("rank"), "item_id")
    rows += metric_rows(T, "nightly", "most_popular", "most_popular", "long_horizon",
                        _set_metrics_spark(pop_recs, truth, k))
    # churn and value on held-out users (small report: one row per held-out user)
    sc = tables.read(spark, cfg, "retention_scores", T).select("user_id", "churn_probability", "predicted_value")
    lab = truth.join(sc, "user_id", "inner").select(
        "churned_within_horizon", "churn_probability", "days_since_last_event", "value_next_horizon",
        "predicted_value", "value_last_horizon").toPandas()
    churn_plot = None
    if len(lab) and lab["churned_within_horizon"].notna().all():
        y = lab["churned_within_horizon"].astype(float).to_numpy()
        rows += metric_rows(T, "nightly", "ours", art.version, "churn", binary_metrics(y, lab["churn_probability"]))
        rec = binary_metrics(y, lab["days_since_last_event"])
        rec["brier"] = float("nan")
        rows += metric_rows(T, "nightly", "recency", "recency", "churn", rec)
        rows += metric_rows(T, "nightly", "ours", art.version, "value",
                            regression_metrics(lab["value_next_horizon"], lab["predicted_value"]))
        rows += metric_rows(T, "nightly", "same_as_last_h", "same_as_last_h", "value",
                            regression_metrics(lab["value_next_horizon"], lab["value_last_horizon"]))
        churn_plot = {"ours": (y, lab["churn_probability"].to_numpy())}
    # catalog metrics of what landed (all users of T)
    n_items = tables.read(spark, cfg, "items").count()
    cat = tables.read(spark, cfg, "recommendations", T).join(
        tables.read(spark, cfg, "items").select("item_id", "category"), "item_id", "left")
    per_list = cat.groupBy("user_id").agg(F.countDistinct("category").alias("c"), F.count("*").alias("n"))
    cov = cat.select("item_id").distinct().count() / max(1, n_items)
    div = per_list.agg(F.avg(F.col("c") / F.col("n"))).first()[0]
    rows += metric_rows(T, "nightly", "ours", art.version, "catalog",
                        {"coverage": cov, "category_diversity": float(div or float("nan"))})
    # at-risk strategy vs the plain personalized ranking, same users
    risky = truth.where(F.col("stage").isin("at_risk", "churned"))
    if risky.count():
        from .scoring import score_users

        art_dir = os.path.join(cfg.artifacts, art.version)
        plain_conf = RecommendConf(**{**cfg.recommend.__dict__, "at_risk_value_weight": 0.0})
        users = tables.read(spark, cfg, "user_sequences", T).join(risky.select("user_id", "stage"), "user_id")
        plain = score_users(users, art_dir, plain_conf, cfg.train.device).select(
            "user_id", F.posexplode(F.arrays_zip("rec_items")).alias("pos", "r")).select(
            "user_id", (F.col("pos") + 1).alias("rank"), F.col("r.rec_items").alias("item_id"))
        risky_recs = recs.join(risky.select("user_id"), "user_id", "inner")
        for name, rr in (("at_risk_strategy", risky_recs), ("plain_personalized", plain)):
            m = _set_metrics_spark(rr, truth, k)
            m["coverage"] = rr.select("item_id").distinct().count() / max(1, n_items)
            rows += metric_rows(T, "nightly", name, art.version, "at_risk_users", m)
    write_metrics(spark, cfg, rows, T, "nightly")
    report = write_report(os.path.join(cfg.reports, T), f"Nightly evaluation, snapshot {T} (held-out users)",
                          rows, churn_plot, notes=f"Model {art.version}; K={k}; horizon {cfg.lifecycle.horizon_days} days.")
    key = {(r["model"], r["task"], r["metric"]): r["value"] for r in rows}
    return {"report": os.path.relpath(report), "metrics": len(rows),
            f"recall@{k}": round(key.get(("ours", "long_horizon", f"recall@{k}"), float("nan")), 4),
            f"popular_recall@{k}": round(key.get(("most_popular", "long_horizon", f"recall@{k}"), float("nan")), 4),
            "churn_auc": round(key.get(("ours", "churn", "roc_auc"), float("nan")), 4),
            "recency_auc": round(key.get(("recency", "churn", "roc_auc"), float("nan")), 4)}
