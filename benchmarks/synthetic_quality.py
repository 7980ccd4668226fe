"""Quality on synthetic data through the nightly pipeline itself.

    python benchmarks/synthetic_quality.py [--users 6000]

Runs every stage of jobs/nightly.py on a larger synthetic log, then reads the
evaluate stage's rows of evaluation_metrics (held-out users of the training
snapshot T = D - 30): churn AUC against days-since-last-event, value against
'same as the last 30 days', long-horizon Recall/NDCG@10 of the written
recommendations against most-popular, and the at-risk strategy against the plain
ranking for the same users. Last line:
RESULT churn_auc=<a> recency_auc=<b> recall10=<c> popular_recall10=<d>
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))


def main():
    from pyspark.sql import functions as F

    from lifecycle_recs import tables
    from lifecycle_recs.config import config_from_dict
    from lifecycle_recs.pipeline import run_nightly
    from lifecycle_recs.spark import get_spark

    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=6000)
    p.add_argument("--work", default=os.path.join(ROOT, ".bench", "synthetic_quality"))
    args = p.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    cfg = config_from_dict({
        "lakehouse": os.path.join(args.work, "lake"), "artifacts": os.path.join(args.work, "artifacts"),
        "reports": os.path.join(args.work, "reports"),
        "spark": {"driver_memory": "8g"},
        "synthetic": {"seed": 21, "n_users": args.users, "n_items": 3000, "partitions": 8},
        "train": {"epochs": 15, "patience": 3, "validation_fraction": 0.3},
    }, base=ROOT)
    spark = get_spark(cfg.spark)
    ctx = run_nightly(spark, cfg)
    for r in ctx.results:
        print(f"{r.stage:<11} {r.seconds:7.1f}s  {str(r.info)[:160]}", flush=True)
    m = tables.read(spark, cfg, "evaluation_metrics").where(F.col("snapshot_date") == ctx.context.training_date)
    rows = m.orderBy("task", "metric", "model").collect()  # a few dozen metric rows
    print("\n| task | metric | model | value |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['metric']} | {r['model']} | {r['value']:.4f} |")
    v = {(r["model"], r["task"], r["metric"]): r["value"] for r in rows}
    print(f"RESULT churn_auc={v[('ours', 'churn', 'roc_auc')]:.4f} recency_auc={v[('recency', 'churn', 'roc_auc')]:.4f} "
          f"recall10={v[('ours', 'long_horizon', 'recall@10')]:.4f} "
          f"popular_recall10={v[('most_popular', 'long_horizon', 'recall@10')]:.4f}")


if __name__ == "__main__":
    main()
