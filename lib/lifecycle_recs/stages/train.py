"""Stage ``train``: fit on the training snapshot T = D - H (labels (T, D]),
hold out a fraction of users for early stopping and the heads refit, and save an
immutable, versioned artifact (with the item statistics of T) under ``artifacts``.
It is promoted for night D only when its churn/value heads were trained and its
held-out churn AUC is not more than ``train.max_metric_drop`` below that of the
model currently promoted for D; otherwise D keeps scoring with that one.

The examples are written once per run to a directory of its own and streamed
(``train.feeder``); the feed's files are removed once the artifact is saved.

A rerun whose training inputs (the rows of T, vocabulary, text vectors, BG/NBD of
T, shaping configuration, code: ``fingerprint``) are those an intact artifact of T
was trained from reuses that artifact instead of training again; promotion and
MLflow are then decided as for a new one (``train.reuse_same_inputs``)."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Dict, Optional, Tuple

from pyspark import StorageLevel
from pyspark.sql import functions as F

from lifecycle_recs.adapters import btyd, fingerprint
from lifecycle_recs.adapters.feeding import (
    build_vocab,
    example_feed,
    examples,
    item_stats,
    repeat_share,
    training_frame,
)
from lifecycle_recs.adapters.lapsed import cutoffs, earlier_tail_counts
from lifecycle_recs.context import RunContext
from lifecycle_recs.data.splits import holdout_flag
from lifecycle_recs.io import scratch, tables
from lifecycle_recs.ml import artifacts, lapsed, registry
from lifecycle_recs.ml.features import PURCHASE_COLUMNS
from lifecycle_recs.ml.trainer import feature_reference, fit, fit_heads, fit_stack, held_out_churn

log = logging.getLogger(__name__)


def promotion_refusal(root: str, night: str, metrics: Dict, max_drop: float) -> Optional[str]:
    """Why the new artifact must not be promoted for ``night`` (None: promote it)."""
    if "heads_best_loss" not in metrics:
        return (
            "its churn/value heads were never trained (the training snapshot has no labelled users)"
        )
    prev = artifacts.promoted_version(root, as_of=night)
    if prev is None:
        return None
    with open(os.path.join(root, prev, "metrics.json")) as fh:
        prev_auc = json.load(fh).get("val_churn_auc")
    auc = metrics.get("val_churn_auc")
    if prev_auc is not None and (auc is None or auc < prev_auc - max_drop):
        return (
            f"its held-out churn AUC {auc} is more than train.max_metric_drop {max_drop} below "
            f"{prev_auc} of the promoted {prev}"
        )
    return None


def earlier_lapsed(spark, cfg, t_date: str) -> Optional[tuple]:
    """The lapsed users of the ``model.lapsed_periods`` - 1 periods of H days before T
    (``adapters.lapsed`` counts; None without the lapsed users' model or earlier periods)."""
    periods = int(cfg.model.lapsed_periods)
    if not cfg.model.lapsed_churn or periods <= 1:
        return None
    x, n, k = earlier_tail_counts(
        tables.read(spark, cfg, "events"),
        t_date,
        cfg.lifecycle.horizon_days,
        cfg.lifecycle.churn_days,
        periods,
    )
    log.info(
        "lapsed churn: %d users silent > %g days at the %d cutoffs before %s (%s), %d came back",
        n.sum(),
        cfg.lifecycle.churn_days,
        periods - 1,
        t_date,
        ", ".join(cutoffs(t_date, cfg.lifecycle.horizon_days, periods)),
        (n - k).sum(),
    )
    return x, n, k


def reusable(cfg, t_date: str, inputs: str) -> Optional[str]:
    """The intact artifact of ``t_date`` trained from inputs with the fingerprint
    ``inputs`` (None: train)."""
    if not cfg.train.reuse_same_inputs:
        return None
    try:
        version = artifacts.trained_from(cfg.artifacts, t_date, inputs)
        if version is not None:
            artifacts.check(os.path.join(cfg.artifacts, version))
        return version
    except (OSError, ValueError) as e:
        log.warning(
            "the artifact recorded for these training inputs is not intact (%s): training again", e
        )
        return None


def run(ctx: RunContext) -> Dict[str, object]:
    spark, cfg = ctx.spark, ctx.cfg
    t_date = ctx.training_date
    vocab, text = build_vocab(spark, cfg, tables.read(spark, cfg, "user_sequences", t_date))
    if vocab.n_items <= 2:
        log.info(
            "no items in the catalog or the training sequences (an order-level log): the model "
            "trains its churn and value heads only; score writes no recommendations"
        )
    frame = training_frame(spark, cfg, t_date)
    if frame.limit(1).count() == 0:
        raise ValueError(
            "no training examples: user_sequences/user_lifecycle of the training snapshot "
            f"{t_date} have no users (run sequences and lifecycle with train, or "
            "--training-snapshot)"
        )
    # the BG/NBD of T's active days: its P(alive) and expected days are model features (stacking)
    bg = btyd.fit_activity(
        tables.read(spark, cfg, "user_sequences", t_date),
        cfg.lifecycle.horizon_days,
        cfg.evaluation.btyd_max_rows,
        cfg.train.seed,
    )
    purchases = None
    if cfg.model.stacking:
        # the purchase-days BG/NBD x Gamma-Gamma of T: its expected spend is an input of the stack's
        # value blend (not of the model); the artifact keeps the fit, score joins the same summary
        # of D
        summ = btyd.summaries(
            tables.read(spark, cfg, "events"), t_date, cfg.sequences.value_event_types
        )
        purchases = summ.select("user_id", *PURCHASE_COLUMNS).persist(StorageLevel.MEMORY_AND_DISK)
        bg = {
            **bg,
            **btyd.fit(summ, cfg.evaluation.btyd_max_rows, cfg.train.seed, active=False),
            "horizon_days": int(cfg.lifecycle.horizon_days),
        }
        frame = btyd.with_purchases(frame, purchases)
    try:
        t0 = time.perf_counter()  # the one pass over the training rows that a reuse costs
        digest = fingerprint.frame_digest(frame)
        fingerprint_seconds = round(time.perf_counter() - t0, 2)
        earlier = earlier_lapsed(spark, cfg, t_date)
        inputs = fingerprint.training_inputs(digest, vocab, text, bg, cfg, earlier)
        version = reusable(cfg, t_date, inputs)
        reused = version is not None
        if reused:
            log.info(
                "training inputs of %s unchanged (fingerprint %s): artifact %s is reused, not "
                "trained again",
                t_date,
                inputs,
                version,
            )
            d = os.path.join(cfg.artifacts, version)
            with open(os.path.join(d, "metrics.json")) as fh:
                metrics = json.load(fh)
            info = metrics
        else:
            d, info, metrics = train_and_save(ctx, frame, vocab, text, bg, inputs, earlier)
    finally:
        if purchases is not None:
            purchases.unpersist()
    version, night = os.path.basename(d), ctx.require_date()
    refusal = promotion_refusal(cfg.artifacts, night, metrics, cfg.train.max_metric_drop)
    if refusal is None:
        artifacts.promote_version(cfg.artifacts, version, night)
        log.info("artifact %s promoted for %s", version, night)
    else:
        log.warning(
            "artifact %s saved but NOT promoted: %s; night %s scores with %s",
            version,
            refusal,
            night,
            artifacts.promoted_version(cfg.artifacts, as_of=night) or "no model (score will fail)",
        )
    run_id = (registry.log_reuse if reused else registry.log_training)(
        cfg, d, info, metrics, refusal is None, night
    )
    return {
        "artifact": version,
        "promoted": refusal is None,
        "not_promoted_because": refusal,
        "mlflow_run": run_id,
        "reused": reused,
        "inputs_fingerprint": inputs,
        "fingerprint_seconds": fingerprint_seconds,
        "train_rows": metrics.get("train_rows"),
        "val_rows": metrics.get("val_rows"),
        "epochs": info.get("epochs_run"),
        "val_churn_auc": metrics.get("val_churn_auc"),
    }


def train_and_save(
    ctx: RunContext, frame, vocab, text, bg: Dict, inputs: str, earlier: Optional[tuple] = None
) -> Tuple[str, Dict, Dict]:
    """Train on ``frame`` (the training frame of T with its purchases) and save the
    artifact (not promoted); its directory, the training info and the metrics.
    ``earlier``: the lapsed users of the periods before T (:func:`earlier_lapsed`)."""
    spark, cfg = ctx.spark, ctx.cfg
    t_date, L = ctx.training_date, cfg.sequences.max_length
    frame = frame.withColumn("_val", holdout_flag(cfg.train.validation_fraction, cfg.train.seed))
    feeds = []
    with scratch.directory(cfg, f"train-{t_date}") as root:
        try:

            def feed(rows, mode: str, name: str, shuffle: bool):
                built = examples(rows, vocab, L, mode, btyd_params=bg)
                return example_feed(spark, cfg, built, name, shuffle, root)

            train_rows, val_rows = frame.where(~F.col("_val")), frame.where(F.col("_val"))
            train_f = feed(train_rows, "last", "train", True)
            val_f = feed(val_rows, "loo", "val", False)
            val_labels = feed(val_rows, "last", "val_labels", False)
            feeds = [train_f, val_f, val_labels]
            # without items there are no next-item targets: early stopping on the labels' loss
            model, info = fit(
                train_f,
                val_f if vocab.n_items > 2 else val_labels,
                vocab,
                text,
                cfg.model,
                cfg.train,
            )
            vectors: Dict[str, tuple] = {}
            info.update(
                fit_heads(
                    model,
                    train_f,
                    val_labels,
                    cfg.model.loss_weights,
                    steps=cfg.train.heads_steps,
                    lr=cfg.train.heads_lr,
                    seed=cfg.train.seed,
                    max_rows=cfg.train.heads_max_rows,
                    vectors=vectors if cfg.model.stacking else None,
                )
            )
            stack = (
                fit_stack(model, vectors, info, cfg.lifecycle.horizon_days)
                if cfg.model.stacking
                else {}
            )
            vectors.clear()
            tail = lapsed.TailCounts(cfg.lifecycle.churn_days) if cfg.model.lapsed_churn else None
            reference = feature_reference(train_f, tail)
            if tail is not None and earlier is not None:
                tail.add_groups(*earlier)
            lapsed_params = (
                lapsed.fit_tail(tail, cfg.lifecycle.churn_days, cfg.model.lapsed_periods)
                if tail is not None
                else None
            )
            held_auc, held_pairs = held_out_churn(model, val_labels)
            metrics = {"train_rows": train_f.rows, "val_rows": val_f.rows, **info, **held_auc}
            if (
                lapsed_params
            ):  # figures in the artifact's config.json with the parameters, not metrics
                lapsed_params["held_out"] = (
                    lapsed.held_out_check({**lapsed_params, "applied": True}, held_pairs)
                    if held_pairs
                    else {}
                )
                log.info("lapsed churn on the held-out lapsed users: %s", lapsed_params["held_out"])
            del held_pairs
        finally:
            for f in feeds:
                getattr(f, "close", lambda: None)()
    stats = item_stats(
        tables.read(spark, cfg, "user_sequences", t_date),
        tables.read(spark, cfg, "user_lifecycle", t_date),
        vocab,
        cfg.recommend.ltv_prior_users,
    )
    # is re-consumption expected? (score keeps seen items where it is: ml.recommend.seen_policy)
    repeats = repeat_share(frame) if vocab.n_items > 2 else None
    if repeats is not None:
        log.info(
            "%.1f%% of the items the users of %s touched in the next %d days were already in "
            "their sequences",
            100 * repeats,
            t_date,
            cfg.lifecycle.horizon_days,
        )
    d = artifacts.save(
        cfg.artifacts,
        model,
        vocab,
        L,
        metrics,
        stats,
        t_date,
        {
            "embedding_model": cfg.embedding.model_name,
            "feature_reference": reference,
            "btyd": bg,
            "stack": stack,
            "lapsed": lapsed_params or {},
            "inputs_fingerprint": inputs,
        },
        promote=False,
        measured={"repeat_share": repeats},
    )
    artifacts.record_inputs(cfg.artifacts, os.path.basename(d), inputs)
    return d, info, metrics
