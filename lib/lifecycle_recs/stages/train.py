"""Stage ``train``: fit on the training snapshot T = D - H (labels (T, D]),
hold out a fraction of users for early stopping and the heads refit, and save an
immutable, versioned artifact (with the item statistics of T) under ``artifacts``."""
from __future__ import annotations

import os
from typing import Dict

import torch
from pyspark.sql import functions as F

from .. import tables
from ..context import RunContext
from ..feeding import build_vocab, examples, item_stats, tensors_via_petastorm, training_frame
from ..ml import artifacts
from ..ml.metrics import binary_metrics
from ..ml.trainer import fit, fit_heads
from ..splits import holdout_flag


def run(ctx: RunContext) -> Dict[str, object]:
    spark, cfg = ctx.spark, ctx.cfg
    t_date = ctx.training_date
    vocab, text = build_vocab(spark, cfg)
    frame = training_frame(spark, cfg, t_date).withColumn(
        "_val", holdout_flag(cfg.train.validation_fraction, cfg.train.seed))
    L = cfg.sequences.max_length
    cache = cfg.train.petastorm_cache_dir or os.path.join(cfg.artifacts, "_petastorm")
    train_b = tensors_via_petastorm(spark, examples(frame.where(~F.col("_val")), vocab, L, "last"), cache)
    val_b = tensors_via_petastorm(spark, examples(frame.where(F.col("_val")), vocab, L, "loo"), cache)
    val_labels = tensors_via_petastorm(spark, examples(frame.where(F.col("_val")), vocab, L, "last"), cache)
    model, info = fit(train_b, val_b, vocab, text, cfg.model, cfg.train)
    info.update(fit_heads(model, train_b, val_labels, cfg.model.loss_weights, steps=cfg.train.heads_steps,
                          lr=cfg.train.heads_lr, seed=cfg.train.seed))
    metrics = {"train_rows": train_b.size, "val_rows": val_b.size, **info}
    # churn quality on the held-out users, for the log and the artifact
    with torch.no_grad():
        dev = next(model.parameters()).device
        p = torch.sigmoid(model(val_labels.to(dev))["churn_logit"]).cpu().numpy()
    y, m = val_labels.churn.numpy(), val_labels.label_w.numpy() > 0
    if m.sum() and 0 < y[m].mean() < 1:
        metrics["val_churn_auc"] = binary_metrics(y[m], p[m])["roc_auc"]
    stats = item_stats(tables.read(spark, cfg, "user_sequences", t_date), tables.read(spark, cfg, "user_lifecycle", t_date),
                       vocab, cfg.recommend.ltv_prior_users)
    d = artifacts.save(cfg.artifacts, model, vocab, L, metrics, stats, t_date,
                       {"embedding_model": cfg.embedding.model_name})
    return {"artifact": os.path.basename(d), "train_rows": metrics["train_rows"], "val_rows": metrics["val_rows"],
            "epochs": info["epochs_run"], "val_churn_auc": metrics.get("val_churn_auc")}
