"""The evaluate stage's metric collection: one job per aggregate vs one job per metric.

    python benchmarks/evaluate_collect.py [--users 80] [--repeats 3]

Builds a small lakehouse once (synthetic users, ingest -> train, cached under
.bench/), then runs the evaluate stage's ``nightly_metrics`` on the training
snapshot T ``--repeats`` times with each way of collecting the per-replicate
metric aggregates and the churn curves, interleaved (per metric, per aggregate, ...):

* baseline ``per metric`` (the code before this benchmark's last change): each
  (model, metric) of each aggregate collected in its own job (45 jobs), Brier in
  its own aggregate, and the churn curves one job per model and curve (7 jobs);
* ``per aggregate`` (``quality.collect`` and ``evaluation.churn_curves``, the
  product): each aggregate's metrics exploded into rows and collected in one job
  (13 jobs), the churn curves in one.

(Before that, the parts were one ``unionByName`` union collected in one job; the
per-metric jobs were 2.03x faster than that union, ``evaluate_collect_union.out``.)

Both give the same metric rows (checked, to 1e-9 relative: Brier now sums the
calibration bins' sums). The time of the whole ``nightly_metrics`` call and of
its collect and curve calls alone are printed per run; the ratio of the medians
is printed with the range of the per-pair ratios. Last line:
RESULT per_metric_over_per_aggregate=<median> low=<min> high=<max> users=<n> repeats=<r>
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))


def per_metric_collect(parts):
    """The baseline: one job per (model, metric) of each part, as before."""
    from pyspark.sql import functions as F

    out = {}
    for part in parts:
        for model, metric in part.keys:
            one = part.df.where((F.col("model") == model) & (F.col("metric") == metric))
            for r in one.where(F.col("value").isNotNull() & ~F.isnan("value")).collect():
                out.setdefault((r["model"], r["metric"]), {})[r["rep"]] = (float(r["value"]), int(r["n"]))
    return out


def per_metric_curves(per_user, y, scores, probabilities):
    """The baseline churn curves: one job per model and curve, as before."""
    from pyspark.sql import functions as F

    out = {}
    for model, col in scores.items():
        g = per_user.where(F.col(col).isNotNull()).groupBy(F.col(f"{col}__bin").alias("b")).agg(
            F.sum(F.col(y)).alias("pos"), F.count("*").alias("n")).orderBy(F.desc("b")).collect()
        total_pos, total = sum(r["pos"] for r in g), sum(r["n"] for r in g)
        gain, cp, cn = [], 0.0, 0
        for r in g:
            cp, cn = cp + r["pos"], cn + r["n"]
            gain.append((cn / max(total, 1), cp / max(total_pos, 1.0)))
        cal = []
        if model in probabilities:
            cal = [(r["p"], r["o"], r["n"]) for r in per_user.where(F.col(col).isNotNull()).groupBy(
                F.least(F.floor(F.col(col) * 10), F.lit(9)).alias("b")).agg(
                F.avg(col).alias("p"), F.avg(y).alias("o"), F.count("*").alias("n")).orderBy("b").collect()]
        out[model] = {"calibration": cal, "gain": gain}
    return out


def small_lake(users: int):
    """The benchmark's lakehouse (built once under .bench/, ingest -> train): the
    session, config, training snapshot T and the artifact evaluated."""
    from lifecycle_recs import tracking
    from lifecycle_recs.config import config_from_dict
    from lifecycle_recs.ml import artifacts
    from lifecycle_recs.pipeline import run_nightly
    from lifecycle_recs.spark import get_spark

    work = os.path.join(ROOT, ".bench", f"evaluate_collect_{users}")
    cfg = config_from_dict({
        "lakehouse": os.path.join(work, "lake"), "artifacts": os.path.join(work, "artifacts"),
        "reports": os.path.join(work, "reports"), "mlflow": {"enabled": False},
        "validation": {"on_quarantine_excess": "warn"}, "evaluation": {"bootstrap": 20},
        "spark": {"master": "local[2]", "shuffle_partitions": 2, "driver_memory": "3g"},
        "source": {"kind": "synthetic", "raw_path": os.path.join(work, "raw")},
        "synthetic": {"seed": 5, "n_users": users, "n_items": 60, "days": 120, "partitions": 2},
        "train": {"epochs": 2, "patience": 2, "batch_size": 64}, "model": {"hidden_dim": 16, "item_dim": 16},
        "recommend": {"k": 5}}, base=ROOT)
    spark = get_spark(cfg.spark)
    stages = ["ingest", "sequences", "lifecycle", "embeddings", "train"]
    if not os.path.isdir(os.path.join(cfg.artifacts)):
        ctx = run_nightly(spark, cfg, stages=stages)
    else:
        ctx = run_nightly(spark, cfg, stages=["sequences"])  # resolves D and T; rewrites nothing new
    art = artifacts.load(tracking.artifact_for(cfg, ctx.context.snapshot_date))
    return spark, cfg, ctx.context.training_date, art


def same_rows(a, b):
    """The two runs' metric rows agree (to 1e-9 relative), with the same n."""
    ka = {(r["model"], r["task"], r["metric"]): r for r in a}
    kb = {(r["model"], r["task"], r["metric"]): r for r in b}
    assert set(ka) == set(kb), "the two ways gave different metric rows"
    for k, r in ka.items():
        for f in ("value", "ci_low", "ci_high"):
            x, y = r[f], kb[k][f]
            assert (x is None and y is None) or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12), (k, f, x, y)
        assert r["n_users"] == kb[k]["n_users"], k


def setup():
    """The command line (--users, --repeats) and :func:`small_lake` of it."""
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=80)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    return (args, *small_lake(args.users))


def report(base: str, prod: str, base_s, prod_s, args) -> None:
    """The medians and the RESULT line: ratio of the medians, range of the per-pair ratios."""
    ratios = [b / q for b, q in zip(base_s, prod_s)]
    print(f"nightly_metrics median: {base} {statistics.median(base_s):.1f}s [{min(base_s):.1f}-{max(base_s):.1f}], "
          f"{prod} {statistics.median(prod_s):.1f}s [{min(prod_s):.1f}-{max(prod_s):.1f}]")
    print(f"RESULT {base.replace(' ', '_')}_over_{prod.replace(' ', '_')}="
          f"{statistics.median(base_s) / statistics.median(prod_s):.2f} low={min(ratios):.2f} high={max(ratios):.2f} "
          f"users={args.users} repeats={args.repeats}")


def main():
    from lifecycle_recs import evaluation, quality
    from lifecycle_recs.evaluation import nightly_metrics

    args, spark, cfg, T, art = setup()

    product = quality.collect, evaluation.churn_curves
    spent = {"collect": 0.0}

    def timed(fn):
        def run(*args):
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                spent["collect"] += time.perf_counter() - t
        return run

    def one(collect, curves):
        quality.collect, evaluation.churn_curves, spent["collect"] = timed(collect), timed(curves), 0.0
        try:
            t = time.perf_counter()
            rows, cur, info = nightly_metrics(spark, cfg, T, art)
            return time.perf_counter() - t, spent["collect"], rows, cur, info["evaluated_users"]
        finally:
            quality.collect, evaluation.churn_curves = product

    nightly_metrics(spark, cfg, T, art)  # warm-up: JIT, worker start, scorer cache
    base_s, prod_s = [], []
    for i in range(args.repeats):
        b_total, b_collect, b_rows, b_cur, n = one(per_metric_collect, per_metric_curves)
        p_total, p_collect, p_rows, p_cur, _ = one(*product)
        same_rows(b_rows, p_rows)
        assert b_cur == p_cur or all(
            all(math.isclose(u, v, rel_tol=1e-9) for x, y in zip(b_cur[m][c], p_cur[m][c]) for u, v in zip(x, y))
            for m in b_cur for c in ("gain", "calibration")), "the churn curves differ"
        base_s.append(b_total)
        prod_s.append(p_total)
        print(f"run {i + 1}: per metric {b_total:.1f}s (collect + curves {b_collect:.1f}s)  per aggregate "
              f"{p_total:.1f}s (collect + curves {p_collect:.1f}s)  {len(p_rows)} rows, {n} evaluated users", flush=True)
    report("per metric", "per aggregate", base_s, prod_s, args)


if __name__ == "__main__":
    main()
