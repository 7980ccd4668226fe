"""Stage ``evaluate``: measure a model on the training snapshot T = D - H, whose
future (T, D] is known. When a model was promoted for night T (trained at or
before T - H, so it never saw (T, D]), every labelled user of T is evaluated
with it; otherwise the latest artifact is evaluated on the users held out of
its training. It scores T in memory and writes only ``evaluation_metrics`` (its
(T, dataset) rows) and the report under ``reports/<T>/``: what was served to
consumers on night T is never rewritten."""

from __future__ import annotations

import logging
import os
from typing import Dict

from lifecycle_recs.context import RunContext
from lifecycle_recs.evaluation.nightly import nightly_metrics
from lifecycle_recs.evaluation.report import write_report
from lifecycle_recs.io import tables
from lifecycle_recs.ml import artifacts, registry

DATASET = "nightly"
log = logging.getLogger(__name__)


def run(ctx: RunContext) -> Dict[str, object]:
    spark, cfg = ctx.spark, ctx.cfg
    T, k = ctx.training_date, cfg.recommend.k
    earlier = None if cfg.mlflow.score_alias else artifacts.promoted_version(cfg.artifacts, as_of=T)
    if earlier is not None:
        art = artifacts.load(os.path.join(cfg.artifacts, earlier))
    else:
        art = artifacts.load(registry.artifact_for(cfg, ctx.require_date()))
    log.info(
        "evaluate %s with %s on %s",
        T,
        art.version,
        "every labelled user (a model promoted for night T)"
        if earlier
        else "the users held out of its training",
    )
    rows, curves, info = nightly_metrics(
        spark, cfg, T, art, DATASET, all_labelled=earlier is not None
    )
    tables.replace_metric_rows(spark, cfg, rows, T, DATASET)
    registry.log_evaluation(cfg, art.version, rows)
    report = write_report(
        os.path.join(cfg.reports, T),
        f"Nightly evaluation, snapshot {T}",
        rows,
        curves,
        notes=f"Model {art.version}; users: {info['protocol']} ({info['evaluated_users']}); "
        f"K={k} (seen items {'filtered' if info['seen_items_filtered'] else 'kept'}); "
        f"horizon {cfg.lifecycle.horizon_days} days; 95% intervals from "
        f"{cfg.evaluation.bootstrap} bootstrap replicates over users.",
    )
    key = {(r["model"], r["task"], r["metric"]): r for r in rows}
    out = {"report": os.path.relpath(report), "metrics": len(rows), "model": art.version, **info}
    for label, (model, task, metric) in {
        f"recall@{k}": ("ours", "long_horizon", f"recall@{k}"),
        f"popular_recall@{k}": ("most_popular", "long_horizon", f"recall@{k}"),
        "churn_auc": ("ours", "churn", "roc_auc"),
        "bgnbd_auc": ("bgnbd", "churn", "roc_auc"),
        "recency_auc": ("recency", "churn", "roc_auc"),
        "value_rmse": ("ours", "value", "rmse"),
        "bgnbd_gg_rmse": ("bgnbd_gamma_gamma", "value", "rmse"),
    }.items():
        if (model, task, metric) in key:
            out[label] = round(key[(model, task, metric)]["value"], 4)
    return out
