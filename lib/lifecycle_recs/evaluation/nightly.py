"""The nightly evaluation: score the users of the training snapshot T with an
artifact, in memory, and compare ours with the baselines (most popular, recency,
"same as the last H days", BG/NBD and Gamma-Gamma) on the same users, every figure
with n and a bootstrap interval (``bootstrap``), split by task: churn and value,
the long-horizon lists, the lifecycle strategies, the catalog and the explanations.
Per-user rows stay in Spark. Writes nothing to tables: the ``evaluate`` stage does."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from typing import Dict, List, Tuple

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lifecycle_recs.adapters import btyd
from lifecycle_recs.adapters.scoring_input import seen_items_policy, users_to_score
from lifecycle_recs.adapters.udfs import score_users
from lifecycle_recs.config import Config, RecommendConf
from lifecycle_recs.data.splits import holdout_flag
from lifecycle_recs.dates import utc_now
from lifecycle_recs.evaluation import bootstrap
from lifecycle_recs.evaluation.lists import (
    explanation_metrics,
    jaccard,
    popularity_metrics,
    ranking_per_user,
)
from lifecycle_recs.evaluation.report import churn_curves, metric_rows, summary_rows
from lifecycle_recs.io import scratch, tables
from lifecycle_recs.ml.artifacts import Artifact
from lifecycle_recs.names import STRATEGY_AT_RISK, STRATEGY_NEW_USER, STRATEGY_PERSONALIZED


# -- baselines ----------------------------------------------------------------------------
def most_popular_recs(
    sequences: DataFrame, users: DataFrame, k: int, filter_seen: bool
) -> DataFrame:
    """The k most frequent items of ``sequences`` for each of ``users`` (user_id, rank,
    item_id), the user's seen items filtered the same way as ours when ``filter_seen``."""
    pop = (
        sequences.select(F.explode("item_ids").alias("item_id"))
        .where(F.col("item_id").isNotNull())
        .groupBy("item_id")
        .count()
        .orderBy(F.desc("count"), "item_id")
        .limit(k * 20)
        .collect()
    )  # small
    candidates = F.array(*[F.lit(r["item_id"]) for r in pop])
    seen = sequences.select("user_id", F.col("item_ids").alias("seen"))
    keep = (
        (lambda x: ~F.coalesce(F.array_contains("seen", x), F.lit(False)))
        if filter_seen
        else (lambda x: F.lit(True))
    )
    return (
        users.select("user_id")
        .join(seen, "user_id", "left")
        .select(
            "user_id",
            F.posexplode(F.slice(F.filter(candidates, keep), 1, k)).alias("pos", "item_id"),
        )
        .select("user_id", (F.col("pos") + 1).alias("rank"), "item_id")
    )


def popular_ranks(pop: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rank of each target under a fixed popularity order (ties against the target)."""
    return np.array([(pop > pop[t]).sum() + 1 for t in targets])


# -- the nightly evaluation -------------------------------------------------------------
PLAIN_MODEL = "plain_personalized"
# the items the evaluated users touched in (T, T + H], as a list to compare ours with
NEXT_HORIZON_ITEMS = "next_horizon_items"


def plain_policy(conf: RecommendConf) -> RecommendConf:
    """The policy without lifecycle strategies: every user ranked by the model alone."""
    return dataclasses.replace(
        conf,
        at_risk_value_weight=0.0,
        new_user_model_weight=1.0,
        new_user_content_weight=0.0,
        new_user_popularity_weight=0.0,
        new_user_no_text_model_weight=1.0,
    )


def _recs(scored: DataFrame) -> DataFrame:
    return scored.select("user_id", F.posexplode("rec_items").alias("pos", "item_id")).select(
        "user_id", (F.col("pos") + 1).alias("rank"), "item_id"
    )


# per-user columns the churn and value rows compare, by model
CHURN_SCORES = {
    "ours": "churn_probability",
    "bgnbd": "bgnbd_p_churn",
    "recency": "days_since_last_event",
    "same_as_last_h": "same_as_last_h_churn",
}
CHURN_PROBABILITIES = ("ours", "bgnbd", "same_as_last_h")
VALUE_PREDICTIONS = {
    "ours": "predicted_value",
    "bgnbd_gamma_gamma": "bgnbd_gg_value",
    "same_as_last_h": "value_last_horizon",
}


def nightly_metrics(
    spark: SparkSession,
    cfg: Config,
    training_date: str,
    art: Artifact,
    dataset: str = "nightly",
    all_labelled: bool = False,
) -> Tuple[List[Dict], Dict, Dict]:
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
    T, version, H = training_date, art.version, cfg.lifecycle.horizon_days
    # seen items filtered or kept as the score stage decides for ``art``, for ours and the
    # baselines; every strategy applied, also those the score stage turns off, so each is still
    # measured
    policy = dataclasses.replace(seen_items_policy(spark, cfg, art)[0], strategies_off=())
    ec = cfg.evaluation
    seq_t = tables.read(spark, cfg, "user_sequences", T)
    life_t = tables.read(spark, cfg, "user_lifecycle", T)
    truth = evaluated_users(life_t, cfg, all_labelled)
    has_items = art.vocab.n_items > 2
    # one row per user of T, read by the BG/NBD fit, its prediction and (where the kept value blend
    # weighs BG/NBD x Gamma-Gamma) the scoring rows: persisted, so the events are aggregated once
    summ = btyd.summaries(
        tables.read(spark, cfg, "events"), T, cfg.sequences.value_event_types
    ).persist(StorageLevel.MEMORY_AND_DISK)
    to_free = [summ]
    users_t = users_to_score(seq_t, life_t, art, lambda: summ)
    scored = score_users(users_t, art.path, policy, cfg.train.device).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    to_free.append(scored)
    rows: List[Dict] = []
    now = utc_now()
    with scratch.directory(cfg, f"evaluate-{T}") as path:
        try:
            # BG/NBD + Gamma-Gamma fitted on the history up to T (every user of T), predicted for
            # the evaluated
            params = btyd.fit(summ, ec.btyd_max_rows, ec.seed)
            per_user = _churn_and_value_columns(summ, truth, scored, params, H)
            if has_items:
                all_recs = _recs(scored)
                per_user = _list_columns(
                    spark, cfg, per_user, truth, scored, users_t, seq_t, art, policy
                )
            # one row per evaluated user, written once: the metrics below plan against its files
            per_user = scratch.materialised(per_user.drop("items"), os.path.join(path, "per_user"))
            per_user = bootstrap.quantile_bins(
                per_user, [*CHURN_SCORES.values(), *VALUE_PREDICTIONS.values(), "y_value"]
            )
            for c in (*VALUE_PREDICTIONS.values(), "y_value"):
                per_user = bootstrap.midranks(per_user, c)
            per_user = per_user.persist(StorageLevel.MEMORY_AND_DISK)
            to_free.append(per_user)
            n_eval = per_user.count()
            rep = bootstrap.replicate(per_user, ec.bootstrap, ec.seed).persist(
                StorageLevel.MEMORY_AND_DISK
            )
            to_free.append(rep)
            summaries = _bootstrapped(rep, cfg.recommend.k, has_items) if n_eval else []
            rows += summary_rows(T, dataset, version, summaries, now)
            curves = (
                churn_curves(per_user, "y_churn", CHURN_SCORES, CHURN_PROBABILITIES)
                if n_eval
                else {}
            )
            if has_items:
                rows += _catalog_rows(
                    spark, cfg, T, dataset, art, scored, all_recs, truth, seq_t, policy, now
                )
        finally:
            for df in reversed(to_free):
                df.unpersist()
    info = {
        "evaluated_users": n_eval,
        "protocol": "all labelled users, earlier model" if all_labelled else "held-out users",
        "btyd": params,
        "seen_items_filtered": policy.filter_seen,
    }
    return rows, curves, info


def evaluated_users(life_t: DataFrame, cfg: Config, all_labelled: bool) -> DataFrame:
    """The evaluated users of T (every labelled one, or those held out of training) with
    what happened in (T, T+H]: ``items``, ``y_churn``, ``y_value``, and the figures of the
    "same as the last H days" baselines."""
    labelled = life_t.where(F.col("churned_within_horizon").isNotNull())
    evaluated = (
        labelled
        if all_labelled
        else labelled.where(holdout_flag(cfg.train.validation_fraction, cfg.train.seed))
    )
    return evaluated.select(
        "user_id",
        F.coalesce("items_next_horizon", F.array()).alias("items"),
        "stage",
        F.col("churned_within_horizon").cast("double").alias("y_churn"),
        F.col("value_next_horizon").alias("y_value"),
        "value_last_horizon",
        "days_since_last_event",
    )


def _churn_and_value_columns(
    summ: DataFrame, truth: DataFrame, scored: DataFrame, params: Dict, horizon_days: int
) -> DataFrame:
    """Per evaluated user: ours, BG/NBD (x Gamma-Gamma) and the "same as the last H days"
    churn and value predictions beside the truth."""
    bg = btyd.predict(summ.join(truth.select("user_id"), "user_id", "inner"), params, horizon_days)
    return (
        truth.join(
            scored.select("user_id", "churn_probability", "predicted_value", "strategy"),
            "user_id",
            "inner",
        )
        .join(bg, "user_id", "left")
        .withColumn(
            "same_as_last_h_churn", (F.col("days_since_last_event") > horizon_days).cast("double")
        )
    )


def _list_columns(
    spark: SparkSession,
    cfg: Config,
    per_user: DataFrame,
    truth: DataFrame,
    scored: DataFrame,
    users_t: DataFrame,
    seq_t: DataFrame,
    art: Artifact,
    policy: RecommendConf,
) -> DataFrame:
    """``per_user`` with the long-horizon recall/NDCG of ours and of most popular, and, for
    the users a lifecycle strategy served, those of the plain personalised ranking and the
    mean long-term-value association of the items each list shows."""
    k = cfg.recommend.k
    all_recs = _recs(scored)
    ours_r = ranking_per_user(all_recs.join(truth.select("user_id"), "user_id"), truth, k)
    pop_r = ranking_per_user(most_popular_recs(seq_t, truth, k, policy.filter_seen), truth, k)
    per_user = per_user.join(
        ours_r.select(
            "user_id", F.col("recall").alias("ours_recall"), F.col("ndcg").alias("ours_ndcg")
        ),
        "user_id",
        "left",
    ).join(
        pop_r.select(
            "user_id", F.col("recall").alias("pop_recall"), F.col("ndcg").alias("pop_ndcg")
        ),
        "user_id",
        "left",
    )
    # the plain personalised ranking for the users a lifecycle strategy served
    special = truth.join(
        scored.where(F.col("strategy") != STRATEGY_PERSONALIZED).select("user_id"), "user_id"
    )
    plain = score_users(
        users_t.join(special.select("user_id"), "user_id"),
        art.path,
        plain_policy(policy),
        cfg.train.device,
    )
    plain_r = ranking_per_user(_recs(plain), special, k)
    ltv = spark.createDataFrame(  # one row per catalog item: small
        [(str(i), float(v)) for i, v in zip(art.vocab.item_ids, art.item_stats.ltv[2:])],
        "item_id string, ltv double",
    )
    ours_ltv = (
        all_recs.join(F.broadcast(ltv), "item_id")
        .groupBy("user_id")
        .agg(F.avg("ltv").alias("ours_ltv"))
    )
    plain_ltv = (
        _recs(plain)
        .join(F.broadcast(ltv), "item_id")
        .groupBy("user_id")
        .agg(F.avg("ltv").alias("plain_ltv"))
    )
    return (
        per_user.join(
            plain_r.select(
                "user_id", F.col("recall").alias("plain_recall"), F.col("ndcg").alias("plain_ndcg")
            ),
            "user_id",
            "left",
        )
        .join(ours_ltv, "user_id", "left")
        .join(plain_ltv, "user_id", "left")
    )


def _bootstrapped(rep: DataFrame, k: int, has_items: bool) -> List[bootstrap.Summary]:
    """Every compared figure over the bootstrap replicates ``rep``: churn, value, and with
    items the long-horizon lists and each lifecycle strategy against the plain ranking."""
    summaries = bootstrap.summarise(
        "churn",
        bootstrap.collect(
            bootstrap.binary_parts(rep, "y_churn", CHURN_SCORES, CHURN_PROBABILITIES)
        ),
    )
    summaries += bootstrap.summarise(
        "value", bootstrap.collect(bootstrap.regression_parts(rep, "y_value", VALUE_PREDICTIONS))
    )
    if has_items:
        summaries += bootstrap.summarise(
            "long_horizon",
            bootstrap.collect(
                bootstrap.mean_parts(
                    rep,
                    {
                        ("ours", f"recall@{k}"): "ours_recall",
                        ("ours", f"ndcg@{k}"): "ours_ndcg",
                        ("most_popular", f"recall@{k}"): "pop_recall",
                        ("most_popular", f"ndcg@{k}"): "pop_ndcg",
                    },
                )
            ),
        )
        for strat in (STRATEGY_NEW_USER, STRATEGY_AT_RISK):
            sub = rep.where(F.col("strategy") == strat)
            summaries += bootstrap.summarise(
                f"strategy[{strat}]",
                bootstrap.collect(
                    bootstrap.mean_parts(
                        sub,
                        {
                            ("ours", f"recall@{k}"): "ours_recall",
                            ("ours", f"ndcg@{k}"): "ours_ndcg",
                            ("ours", "mean_item_ltv"): "ours_ltv",
                            (PLAIN_MODEL, f"recall@{k}"): "plain_recall",
                            (PLAIN_MODEL, f"ndcg@{k}"): "plain_ndcg",
                            (PLAIN_MODEL, "mean_item_ltv"): "plain_ltv",
                        },
                    )
                ),
            )
    return summaries


def _catalog_rows(
    spark: SparkSession,
    cfg: Config,
    T: str,
    dataset: str,
    art: Artifact,
    scored: DataFrame,
    all_recs: DataFrame,
    truth: DataFrame,
    seq_t: DataFrame,
    policy: RecommendConf,
    now: dt.datetime,
) -> List[Dict]:
    """Point figures of the lists of all users of T: coverage, category diversity, pairwise
    overlap, popularity bias (ours, most popular, what the evaluated users touched next) and
    the explanations' peakedness against uniform."""
    ec, k, version = cfg.evaluation, cfg.recommend.k, art.version
    n_catalog = art.vocab.n_items - 2
    cats = spark.createDataFrame(
        [
            (str(i), c)
            for i, c in zip(art.vocab.item_ids, art.vocab.categories or [None] * n_catalog)
        ],
        "item_id string, category string",
    )  # one row per item: small
    cat = all_recs.join(F.broadcast(cats), "item_id", "left")
    n_users = scored.count()
    per_list = cat.groupBy("user_id").agg(
        F.countDistinct("category").alias("c"), F.count("*").alias("n")
    )
    cov = cat.select("item_id").distinct().count() / max(1, n_catalog)
    div = per_list.agg(F.avg(F.col("c") / F.col("n"))).first()[0]
    jac, n_pairs = jaccard(all_recs, ec.jaccard_pairs, ec.seed)
    rows = metric_rows(
        T,
        dataset,
        "ours",
        version,
        "catalog",
        {"coverage": cov, "category_diversity": div},
        now,
        n_users,
    )
    if jac is not None:
        rows += metric_rows(
            T, dataset, "ours", version, "catalog", {"mean_pairwise_jaccard": jac}, now, n_pairs
        )
    # popularity bias: our lists, most popular's, and what the evaluated users touched after T
    lists = {
        "ours": all_recs,
        "most_popular": most_popular_recs(seq_t, scored, k, policy.filter_seen),
        NEXT_HORIZON_ITEMS: truth.select("user_id", F.explode("items").alias("item_id")),
    }
    for name, (pct, tail, n) in popularity_metrics(
        lists, seq_t, cats, ec.popularity_head_fraction
    ).items():
        rows += metric_rows(
            T,
            dataset,
            name,
            version if name == "ours" else name,
            "catalog",
            {"mean_popularity_percentile": pct, "long_tail_share": tail},
            now,
            n,
        )
    for metric, (ours, uniform, n) in explanation_metrics(scored, seq_t, art.max_len).items():
        rows += metric_rows(T, dataset, "ours", version, "explanations", {metric: ours}, now, n)
        rows += metric_rows(
            T, dataset, "uniform", version, "explanations", {metric: uniform}, now, n
        )
    return rows
