"""Spark-side evaluation: ranking metrics computed in Spark (tested against
``ml.metrics`` on the same data), the baselines (most popular, Spark MLlib ALS,
recency, 'same as the last H days', BG/NBD and Gamma-Gamma), every figure with
n and a bootstrap interval (``quality``), metric rows and the Markdown + PNG
report. Per-user rows stay in Spark. Writes nothing to tables: the ``evaluate``
stage does."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from . import btyd, quality, scratch, tables
from .list_metrics import explanation_metrics, jaccard, popularity_metrics
from .config import Config, RecommendConf
from .dates import parse_date, utc_now
from .feeding import artifact_repeat_share
from .lifecycle import users_with_stage
from .ml.artifacts import Artifact
from .ml.recommend import seen_policy
from .names import STRATEGY_AT_RISK, STRATEGY_NEW_USER, STRATEGY_PERSONALIZED
from .splits import holdout_flag
from .udfs import score_users


# -- metrics in Spark ----------------------------------------------------------------
def ranking_per_user(recs: DataFrame, truth: DataFrame, k: int) -> DataFrame:
    """(user_id, recall, ndcg) of ranked recs (user_id, rank, item_id) against
    ``truth`` (user_id, items array) for each user with a non-empty truth; a user
    with no recommendations scores 0."""
    ranked = recs.where(F.col("rank") <= k).groupBy("user_id").agg(
        F.array_sort(F.collect_list(F.struct("rank", "item_id"))).alias("r"))
    j = truth.where(F.size("items") > 0).join(ranked, "user_id", "left") \
        .withColumn("r", F.coalesce("r", F.array().cast("array<struct<rank:int,item_id:string>>")))
    gains = F.transform("r", lambda x: F.when(F.array_contains(F.col("items"), x["item_id"]),
                                              1.0 / F.log2(x["rank"] + 1.0)).otherwise(0.0))
    hits = F.size(F.filter("r", lambda x: F.array_contains(F.col("items"), x["item_id"])))
    n_rel = F.least(F.size("items"), F.lit(k))
    idcg = F.aggregate(F.sequence(F.lit(1), n_rel), F.lit(0.0), lambda acc, i: acc + 1.0 / F.log2(i + 1.0))
    return j.select("user_id", (hits / n_rel).alias("recall"),
                    (F.aggregate(gains, F.lit(0.0), lambda a, g: a + g) / idcg).alias("ndcg"))


def set_metrics_spark(recs: DataFrame, truth: DataFrame, k: int) -> Dict[str, float]:
    """Per-user Recall@k / NDCG@k averaged over users with a non-empty truth (users
    without recommendations count 0). The Spark twin of ``ml.metrics.set_metrics``."""
    row = ranking_per_user(recs, truth, k).agg(F.avg("recall"), F.avg("ndcg"), F.count("*")).first()
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


# -- rows and report ----------------------------------------------------------------------
def metric_rows(snapshot_date: str, dataset: str, model: str, model_version: str, task: str,
                metrics: Dict[str, float], evaluated_at: Optional[dt.datetime] = None,
                n_users: Optional[int] = None) -> List[Dict]:
    """``evaluation_metrics`` rows, one per metric (no interval)."""
    at = evaluated_at or utc_now()
    return [{"snapshot_date": parse_date(snapshot_date), "dataset": dataset, "model": model,
             "model_version": model_version, "task": task, "metric": k,
             "value": float(v) if v is not None else float("nan"), "evaluated_at": at,
             "n_users": n_users, "ci_low": None, "ci_high": None, "verdict": None}
            for k, v in metrics.items()]


def summary_rows(snapshot_date: str, dataset: str, version: str, summaries: List[quality.Summary],
                 evaluated_at: Optional[dt.datetime] = None) -> List[Dict]:
    """``evaluation_metrics`` rows of bootstrapped summaries (our rows carry the
    artifact version; a baseline's its name)."""
    at = evaluated_at or utc_now()
    return [{"snapshot_date": parse_date(snapshot_date), "dataset": dataset, "model": x.model,
             "model_version": version if x.model == "ours" or x.model.startswith("ours-vs-") else x.model,
             "task": x.task, "metric": x.metric, "value": float(x.value), "evaluated_at": at, "n_users": int(x.n),
             "ci_low": x.low, "ci_high": x.high, "verdict": x.verdict} for x in summaries]


def _cell(r: Dict) -> str:
    v = r["value"]
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if r.get("ci_low") is not None and r.get("ci_high") is not None:
        return f"{v:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
    return f"{v:.4f}"


def quality_table(rows: List[Dict]) -> List[str]:
    """Markdown: per task and metric, each model's value [95% interval] (n), and each
    ours-vs-baseline difference with its verdict."""
    plain = [r for r in rows if not r["model"].startswith("ours-vs-")]
    models = sorted({r["model"] for r in plain}, key=lambda m: (m != "ours", m))
    keys: List[Tuple[str, str]] = []
    for r in plain:
        if (r["task"], r["metric"]) not in keys:
            keys.append((r["task"], r["metric"]))
    val = {(r["task"], r["metric"], r["model"]): r for r in plain}
    lines = ["| task | metric | n | " + " | ".join(models) + " |", "|---|---|---|" + "---|" * len(models)]
    for task, metric in keys:
        ns = sorted({val[(task, metric, m)]["n_users"] for m in models
                     if (task, metric, m) in val and val[(task, metric, m)].get("n_users") is not None})
        cells = [_cell(val[(task, metric, m)]) if (task, metric, m) in val else "" for m in models]
        lines.append(f"| {task} | {metric} | {'/'.join(str(n) for n in ns)} | " + " | ".join(cells) + " |")
    diffs = [r for r in rows if r["model"].startswith("ours-vs-")]
    if diffs:
        lines += ["", "| task | metric | comparison | n | ours - baseline [95% interval] | verdict |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['metric']} | {r['model']} | {r['n_users']} | {_cell(r)} | {r['verdict']} |"
                  for r in diffs]
    return lines


def write_report(out_dir: str, title: str, rows: List[Dict], curves: Optional[Dict] = None,
                 notes: str = "") -> str:
    """Markdown quality table + PNG plots (churn calibration and cumulative gain,
    from the small per-bin curves of ``churn_curves``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    lines = [f"# {title}", "", notes, ""] + quality_table(rows)
    if curves:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for name, c in curves.items():
            ax[0].plot([p[0] for p in c["calibration"]], [p[1] for p in c["calibration"]], marker="o", label=name)
            ax[1].plot([0] + [p[0] for p in c["gain"]], [0] + [p[1] for p in c["gain"]], label=name)
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


def churn_curves(per_user: DataFrame, y: str, scores: Dict[str, str], probabilities: Sequence[str]) -> Dict:
    """Calibration (10 bins; probability models) and cumulative gain (score quantile
    bins) per model, as one Spark aggregate (each user exploded into one row per
    model and curve): at most ``quality.AUC_BINS`` rows per model and curve."""
    rows = []
    for model, col in scores.items():
        bins = [("gain", F.col(f"{col}__bin"))]
        if model in probabilities:
            bins.append(("calibration", F.least(F.floor(F.col(col) * 10), F.lit(9))))
        rows += [F.struct(F.lit(model).alias("model"), F.lit(kind).alias("kind"), b.cast("double").alias("b"),
                          F.col(col).cast("double").alias("s")) for kind, b in bins]
    if not rows:
        return {}
    g = (per_user.select(F.col(y).cast("double").alias("y"), F.explode(F.array(*rows)).alias("r"))
         .where(F.col("r.s").isNotNull())
         .groupBy(F.col("r.model").alias("model"), F.col("r.kind").alias("kind"), F.col("r.b").alias("b"))
         .agg(F.sum("y").alias("pos"), F.avg("r.s").alias("p"), F.avg("y").alias("o"), F.count("*").alias("n"))
         .collect())  # small: one row per (model, curve, bin), at most 1,000 bins each
    out = {}
    for model in scores:
        gains = sorted((r for r in g if r["model"] == model and r["kind"] == "gain"), key=lambda r: -r["b"])
        total_pos, total = sum(r["pos"] for r in gains), sum(r["n"] for r in gains)
        gain, cp, cn = [], 0.0, 0
        for r in gains:
            cp, cn = cp + r["pos"], cn + r["n"]
            gain.append((cn / max(total, 1), cp / max(total_pos, 1.0)))
        cal = [(r["p"], r["o"], r["n"]) for r in sorted((r for r in g if r["model"] == model and r["kind"] ==
                                                         "calibration"), key=lambda r: r["b"])]
        out[model] = {"calibration": cal, "gain": gain}
    return out


# -- the nightly evaluation -------------------------------------------------------------
PLAIN_MODEL = "plain_personalized"
# the items the evaluated users touched in (T, T + H], as a list to compare ours with
NEXT_HORIZON_ITEMS = "next_horizon_items"


def plain_policy(conf: RecommendConf) -> RecommendConf:
    """The policy without lifecycle strategies: every user ranked by the model alone."""
    return dataclasses.replace(conf, at_risk_value_weight=0.0, new_user_model_weight=1.0,
                               new_user_content_weight=0.0, new_user_popularity_weight=0.0,
                               new_user_no_text_model_weight=1.0)


def _recs(scored: DataFrame) -> DataFrame:
    return scored.select("user_id", F.posexplode("rec_items").alias("pos", "item_id")).select(
        "user_id", (F.col("pos") + 1).alias("rank"), "item_id")


def nightly_metrics(spark: SparkSession, cfg: Config, training_date: str, art: Artifact,
                    dataset: str = "nightly", all_labelled: bool = False) -> Tuple[List[Dict], Dict, Dict]:
    """Score the users of the training snapshot T with ``art`` (in memory: the
    consumer tables are never touched) and measure, on the evaluated users (every
    labelled user of T when ``all_labelled``: ``art`` must then be a model trained
    at or before T - H, which never saw (T, T+H]; else the users held out of
    ``art``'s training), with a 95% bootstrap interval and n for every figure and
    a paired ours-vs-baseline difference for every baseline:

    * long-horizon Recall/NDCG@K against the items of (T, T+H]: ours, most popular;
    * each lifecycle strategy against the plain personalised ranking for the same
      users (recall, NDCG, mean long-term-value association of the items shown);
    * churn (ROC AUC, PR AUC, Brier, calibration error): ours, BG/NBD, recency,
      "same as the last H days" (inactive in the last H days = churn);
    * value over (T, T+H] (RMSE, MAE, Spearman, total predicted / actual): ours,
      BG/NBD x Gamma-Gamma, "same as the last H days";
    * catalog: coverage, category diversity, mean Jaccard overlap of the lists of
      random user pairs, and popularity bias (:func:`popularity_metrics`) of ours, of
      most popular and of the items the evaluated users touched in (T, T+H] (point
      figures, over all users of T);
    * explanations: entropy of the top-category weights and peak attention of
      ``because_items`` against uniform (:func:`explanation_metrics`, point figures).

    Returns the metric rows, the churn curves for the report, and a small info dict."""
    T, k, version, H = training_date, cfg.recommend.k, art.version, cfg.lifecycle.horizon_days
    # seen items filtered or kept as the score stage decides for ``art``, for ours and the baselines;
    # every strategy applied, also those the score stage turns off, so each is still measured
    policy = dataclasses.replace(seen_policy(cfg.recommend, artifact_repeat_share(spark, cfg, art)
                                             if cfg.recommend.filter_seen else None), strategies_off=())
    ec = cfg.evaluation
    seq_t = tables.read(spark, cfg, "user_sequences", T)
    life_t = tables.read(spark, cfg, "user_lifecycle", T)
    labelled = life_t.where(F.col("churned_within_horizon").isNotNull())
    evaluated = labelled if all_labelled else labelled.where(holdout_flag(cfg.train.validation_fraction,
                                                                          cfg.train.seed))
    truth = evaluated.select("user_id", F.coalesce("items_next_horizon", F.array()).alias("items"), "stage",
                             F.col("churned_within_horizon").cast("double").alias("y_churn"),
                             F.col("value_next_horizon").alias("y_value"), "value_last_horizon",
                             "days_since_last_event")
    has_items = art.vocab.n_items > 2
    # one row per user of T, read by the BG/NBD fit, its prediction and (where the kept value blend
    # weighs BG/NBD x Gamma-Gamma) the scoring rows: persisted, so the events are aggregated once
    summ = btyd.summaries(tables.read(spark, cfg, "events"), T, cfg.sequences.value_event_types) \
        .persist(StorageLevel.MEMORY_AND_DISK)
    to_free = [summ]
    users_t = btyd.scoring_rows(users_with_stage(seq_t, life_t), art.config.get("stack"), lambda: summ)
    scored = score_users(users_t, art.path, policy, cfg.train.device).persist(StorageLevel.MEMORY_AND_DISK)
    to_free.append(scored)
    rows: List[Dict] = []
    now = utc_now()
    with scratch.directory(cfg, f"evaluate-{T}") as path:
        try:
            # BG/NBD + Gamma-Gamma fitted on the history up to T (every user of T), predicted for the evaluated
            params = btyd.fit(summ, ec.btyd_max_rows, ec.seed)
            bg = btyd.predict(summ.join(truth.select("user_id"), "user_id", "inner"), params, H)
            per_user = (truth.join(scored.select("user_id", "churn_probability", "predicted_value", "strategy"),
                                   "user_id", "inner")
                        .join(bg, "user_id", "left")
                        .withColumn("same_as_last_h_churn", (F.col("days_since_last_event") > H).cast("double")))
            if has_items:
                all_recs = _recs(scored)
                ours_r = ranking_per_user(all_recs.join(truth.select("user_id"), "user_id"), truth, k)
                pop_r = ranking_per_user(most_popular_recs(seq_t, truth, k, policy.filter_seen), truth, k)
                per_user = (per_user.join(ours_r.select("user_id", F.col("recall").alias("ours_recall"),
                                                        F.col("ndcg").alias("ours_ndcg")), "user_id", "left")
                            .join(pop_r.select("user_id", F.col("recall").alias("pop_recall"),
                                               F.col("ndcg").alias("pop_ndcg")), "user_id", "left"))
                # the plain personalised ranking for the users a lifecycle strategy served
                special = truth.join(scored.where(F.col("strategy") != STRATEGY_PERSONALIZED).select("user_id"),
                                     "user_id")
                plain = score_users(users_t.join(special.select("user_id"), "user_id"), art.path,
                                    plain_policy(policy), cfg.train.device)
                plain_r = ranking_per_user(_recs(plain), special, k)
                ltv = spark.createDataFrame(  # one row per catalog item: small
                    [(str(i), float(v)) for i, v in zip(art.vocab.item_ids, art.item_stats.ltv[2:])],
                    "item_id string, ltv double")
                ours_ltv = all_recs.join(F.broadcast(ltv), "item_id").groupBy("user_id").agg(
                    F.avg("ltv").alias("ours_ltv"))
                plain_ltv = _recs(plain).join(F.broadcast(ltv), "item_id").groupBy("user_id").agg(
                    F.avg("ltv").alias("plain_ltv"))
                per_user = (per_user.join(plain_r.select("user_id", F.col("recall").alias("plain_recall"),
                                                         F.col("ndcg").alias("plain_ndcg")), "user_id", "left")
                            .join(ours_ltv, "user_id", "left").join(plain_ltv, "user_id", "left"))
            churn_scores = {"ours": "churn_probability", "bgnbd": "bgnbd_p_churn", "recency": "days_since_last_event",
                            "same_as_last_h": "same_as_last_h_churn"}
            value_preds = {"ours": "predicted_value", "bgnbd_gamma_gamma": "bgnbd_gg_value",
                           "same_as_last_h": "value_last_horizon"}
            # one row per evaluated user, written once: the metrics below plan against its files
            per_user = scratch.materialised(per_user.drop("items"), os.path.join(path, "per_user"))
            per_user = quality.quantile_bins(per_user, [*churn_scores.values(), *value_preds.values(), "y_value"])
            for c in (*value_preds.values(), "y_value"):
                per_user = quality.midranks(per_user, c)
            per_user = per_user.persist(StorageLevel.MEMORY_AND_DISK)
            to_free.append(per_user)
            n_eval = per_user.count()
            rep = quality.replicate(per_user, ec.bootstrap, ec.seed).persist(StorageLevel.MEMORY_AND_DISK)
            to_free.append(rep)
            summaries: List[quality.Summary] = []
            probs = ("ours", "bgnbd", "same_as_last_h")
            if n_eval:
                summaries += quality.summarise("churn", quality.collect(
                    quality.binary_metrics(rep, "y_churn", churn_scores, probs)))
                summaries += quality.summarise("value", quality.collect(quality.regression_metrics(rep, "y_value",
                                                                                                   value_preds)))
                if has_items:
                    summaries += quality.summarise("long_horizon", quality.collect(quality.mean_metrics(rep, {
                        ("ours", f"recall@{k}"): "ours_recall", ("ours", f"ndcg@{k}"): "ours_ndcg",
                        ("most_popular", f"recall@{k}"): "pop_recall", ("most_popular", f"ndcg@{k}"): "pop_ndcg"})))
                    for strat in (STRATEGY_NEW_USER, STRATEGY_AT_RISK):
                        sub = rep.where(F.col("strategy") == strat)
                        summaries += quality.summarise(f"strategy[{strat}]", quality.collect(quality.mean_metrics(sub, {
                            ("ours", f"recall@{k}"): "ours_recall", ("ours", f"ndcg@{k}"): "ours_ndcg",
                            ("ours", "mean_item_ltv"): "ours_ltv", (PLAIN_MODEL, f"recall@{k}"): "plain_recall",
                            (PLAIN_MODEL, f"ndcg@{k}"): "plain_ndcg", (PLAIN_MODEL, "mean_item_ltv"): "plain_ltv"})))
            rows += summary_rows(T, dataset, version, summaries, now)
            curves = churn_curves(per_user, "y_churn", churn_scores, probs) if n_eval else {}
            if has_items:  # catalog metrics of the lists of all users of T (point figures)
                n_catalog = art.vocab.n_items - 2
                cats = spark.createDataFrame([(str(i), c) for i, c in zip(art.vocab.item_ids, art.vocab.categories
                                                                          or [None] * n_catalog)],
                                             "item_id string, category string")  # one row per item: small
                cat = all_recs.join(F.broadcast(cats), "item_id", "left")
                n_users = scored.count()
                per_list = cat.groupBy("user_id").agg(F.countDistinct("category").alias("c"), F.count("*").alias("n"))
                cov = cat.select("item_id").distinct().count() / max(1, n_catalog)
                div = per_list.agg(F.avg(F.col("c") / F.col("n"))).first()[0]
                jac, n_pairs = jaccard(all_recs, ec.jaccard_pairs, ec.seed)
                rows += metric_rows(T, dataset, "ours", version, "catalog",
                                    {"coverage": cov, "category_diversity": div}, now, n_users)
                if jac is not None:
                    rows += metric_rows(T, dataset, "ours", version, "catalog", {"mean_pairwise_jaccard": jac}, now,
                                        n_pairs)
                # popularity bias: our lists, most popular's, and what the evaluated users touched after T
                lists = {"ours": all_recs, "most_popular": most_popular_recs(seq_t, scored, k,
                                                                             policy.filter_seen),
                         NEXT_HORIZON_ITEMS: truth.select("user_id", F.explode("items").alias("item_id"))}
                for name, (pct, tail, n) in popularity_metrics(lists, seq_t, cats, ec.popularity_head_fraction).items():
                    rows += metric_rows(T, dataset, name, version if name == "ours" else name, "catalog",
                                        {"mean_popularity_percentile": pct, "long_tail_share": tail}, now, n)
                for metric, (ours, uniform, n) in explanation_metrics(scored, seq_t, art.max_len).items():
                    rows += metric_rows(T, dataset, "ours", version, "explanations", {metric: ours}, now, n)
                    rows += metric_rows(T, dataset, "uniform", version, "explanations", {metric: uniform}, now, n)
        finally:
            for df in reversed(to_free):
                df.unpersist()
    info = {"evaluated_users": n_eval, "protocol": "all labelled users, earlier model" if all_labelled
            else "held-out users", "btyd": params, "seen_items_filtered": policy.filter_seen}
    return rows, curves, info
