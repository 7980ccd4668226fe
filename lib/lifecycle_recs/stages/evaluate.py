"""Stage ``evaluate``: measure the latest artifact on the training snapshot
T = D - H, whose future (T, D] is known, for the users held out of training.
It scores T in memory and writes only ``evaluation_metrics`` (its (T, dataset)
rows) and the report under ``reports/<T>/``: what was served to consumers on
night T is never rewritten."""
from __future__ import annotations

import os
from typing import Dict

from .. import tables, tracking
from ..context import RunContext
from ..evaluation import nightly_metrics, write_report
from ..ml import artifacts

DATASET = "nightly"


def run(ctx: RunContext) -> Dict[str, object]:
    spark, cfg = ctx.spark, ctx.cfg
    T, k = ctx.training_date, cfg.recommend.k
    art = artifacts.load(tracking.artifact_for(cfg, ctx.require_date()))
    rows, churn_plot = nightly_metrics(spark, cfg, T, art, DATASET)
    tables.replace_metric_rows(spark, cfg, rows, T, DATASET)
    tracking.log_evaluation(cfg, art.version, rows)
    report = write_report(os.path.join(cfg.reports, T), f"Nightly evaluation, snapshot {T} (held-out users)",
                          rows, churn_plot,
                          notes=f"Model {art.version}; K={k}; horizon {cfg.lifecycle.horizon_days} days.")
    key = {(r["model"], r["task"], r["metric"]): r["value"] for r in rows}
    nan = float("nan")
    return {"report": os.path.relpath(report), "metrics": len(rows),
            f"recall@{k}": round(key.get(("ours", "long_horizon", f"recall@{k}"), nan), 4),
            f"popular_recall@{k}": round(key.get(("most_popular", "long_horizon", f"recall@{k}"), nan), 4),
            "churn_auc": round(key.get(("ours", "churn", "roc_auc"), nan), 4),
            "recency_auc": round(key.get(("recency", "churn", "roc_auc"), nan), 4)}
