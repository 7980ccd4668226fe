"""The evaluate stage's metric collection: one job per metric part vs one union of the parts.

    python benchmarks/evaluate_collect.py [--users 80] [--repeats 3]

Builds a small lakehouse once (synthetic users, ingest -> train, cached under
.bench/), then runs the evaluate stage's ``nightly_metrics`` on the training
snapshot T ``--repeats`` times with each way of collecting the per-replicate
metric aggregates, interleaved (union, per part, union, per part, ...):

* baseline ``union``: the parts (one aggregate per model and metric family) joined
  by ``unionByName`` and collected in one job (the code before this benchmark);
* ``per part`` (``quality.collect``, the product): each part collected on its own.

Both give the same metric rows (checked). The time of the whole ``nightly_metrics``
call and of its collect calls alone are printed per run; the ratio of the medians
is printed with the range of the per-pair ratios. Last line:
RESULT union_over_per_part=<median> low=<min> high=<max> users=<n> repeats=<r>
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))


def union_collect(parts):
    """The baseline: the parts as one union, collected in one job."""
    from pyspark.sql import functions as F

    if not parts:
        return {}
    df = parts[0]
    for p in parts[1:]:
        df = df.unionByName(p)
    out = {}
    for r in df.where(F.col("value").isNotNull() & ~F.isnan("value")).collect():
        out.setdefault((r["model"], r["metric"]), {})[r["rep"]] = (float(r["value"]), int(r["n"]))
    return out


def main():
    from lifecycle_recs import quality, tracking
    from lifecycle_recs.config import config_from_dict
    from lifecycle_recs.evaluation import nightly_metrics
    from lifecycle_recs.ml import artifacts
    from lifecycle_recs.pipeline import run_nightly
    from lifecycle_recs.spark import get_spark

    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=80)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    work = os.path.join(ROOT, ".bench", f"evaluate_collect_{args.users}")
    cfg = config_from_dict({
        "lakehouse": os.path.join(work, "lake"), "artifacts": os.path.join(work, "artifacts"),
        "reports": os.path.join(work, "reports"), "mlflow": {"enabled": False},
        "validation": {"on_quarantine_excess": "warn"}, "evaluation": {"bootstrap": 20},
        "spark": {"master": "local[2]", "shuffle_partitions": 2, "driver_memory": "3g"},
        "source": {"kind": "synthetic", "raw_path": os.path.join(work, "raw")},
        "synthetic": {"seed": 5, "n_users": args.users, "n_items": 60, "days": 120, "partitions": 2},
        "train": {"epochs": 2, "patience": 2, "batch_size": 64}, "model": {"hidden_dim": 16, "item_dim": 16},
        "recommend": {"k": 5}}, base=ROOT)
    spark = get_spark(cfg.spark)
    stages = ["ingest", "sequences", "lifecycle", "embeddings", "train"]
    if not os.path.isdir(os.path.join(cfg.artifacts)):
        ctx = run_nightly(spark, cfg, stages=stages)
    else:
        ctx = run_nightly(spark, cfg, stages=["sequences"])  # resolves D and T; rewrites nothing new
    T = ctx.context.training_date
    art = artifacts.load(tracking.artifact_for(cfg, ctx.context.snapshot_date))

    product = quality.collect
    spent = {"collect": 0.0}

    def timed(fn):
        def run(parts):
            t = time.perf_counter()
            try:
                return fn(parts)
            finally:
                spent["collect"] += time.perf_counter() - t
        return run

    def one(fn):
        quality.collect, spent["collect"] = timed(fn), 0.0
        try:
            t = time.perf_counter()
            rows, _, info = nightly_metrics(spark, cfg, T, art)
            return time.perf_counter() - t, spent["collect"], rows, info["evaluated_users"]
        finally:
            quality.collect = product

    def key(rows):
        return sorted((r["model"], r["task"], r["metric"], r["value"], r["n_users"], r["ci_low"], r["ci_high"])
                      for r in rows)

    nightly_metrics(spark, cfg, T, art)  # warm-up: JIT, worker start, scorer cache
    union_s, part_s = [], []
    for i in range(args.repeats):
        u_total, u_collect, u_rows, n = one(union_collect)
        p_total, p_collect, p_rows, _ = one(product)
        assert key(u_rows) == key(p_rows), "the two ways of collecting gave different metric rows"
        union_s.append(u_total)
        part_s.append(p_total)
        print(f"run {i + 1}: union {u_total:.1f}s (collect {u_collect:.1f}s)  per part {p_total:.1f}s "
              f"(collect {p_collect:.1f}s)  {len(p_rows)} rows, {n} evaluated users", flush=True)
    ratios = [u / q for u, q in zip(union_s, part_s)]
    print(f"nightly_metrics median: union {statistics.median(union_s):.1f}s, per part {statistics.median(part_s):.1f}s")
    print(f"RESULT union_over_per_part={statistics.median(union_s) / statistics.median(part_s):.2f} "
          f"low={min(ratios):.2f} high={max(ratios):.2f} users={args.users} repeats={args.repeats}")


if __name__ == "__main__":
    main()
