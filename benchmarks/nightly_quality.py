"""Quality through the nightly pipeline itself, one dataset per run:

    python benchmarks/nightly_quality.py --dataset demo        # conf/local.yaml's synthetic log
    python benchmarks/nightly_quality.py --dataset synthetic   # a larger synthetic log (--users 6000)
    python benchmarks/nightly_quality.py --dataset movielens   # conf/movielens.yaml (../shared/datasets)
    python benchmarks/nightly_quality.py --dataset orders      # a generated order-level log (--users 4000)
    python benchmarks/nightly_quality.py --dataset demo --set model.use_text=false   # any conf key, as jobs/nightly.py

Each run starts from an empty work directory, warms up (trains the model of
night T = D - H on T - H, as ``jobs/nightly.py --warm-up`` does), runs every
stage of the conf for D, then prints the evaluate stage's quality table for T
(ours vs every baseline on the same users, n and 95% bootstrap intervals, and
each paired difference with its verdict) and one line per comparison:

RESULT dataset=<d> task=<t> metric=<m> comparison=<ours-vs-x> n=<n> ours=<a> baseline=<b> diff=<d> low=<l> high=<h> verdict=<v>
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))


def conf_for(dataset: str, work: str, users: int, stacking=None, sets=()):
    from lifecycle_recs.config import load_config, merge_dicts, parse_overrides

    path, overrides = _conf_for(dataset, work, users, stacking)
    return load_config(path, merge_dicts(overrides, parse_overrides(sets)))


def _conf_for(dataset: str, work: str, users: int, stacking=None):
    """(conf path, overrides) of a dataset's run."""
    from lifecycle_recs.config import merge_dicts

    paths = {"lakehouse": os.path.join(work, "lake"), "artifacts": os.path.join(work, "artifacts"),
             "reports": os.path.join(work, "reports"), "mlflow": {"enabled": False}}
    if stacking is not None:  # the second stage of ml/stacking.py (on by default)
        paths["model"] = {"stacking": bool(stacking)}
    if dataset == "demo":
        return os.path.join(ROOT, "conf", "local.yaml"), paths
    if dataset == "synthetic":
        return os.path.join(ROOT, "conf", "local.yaml"), merge_dicts(paths, {
            "synthetic": {"n_users": users, "n_items": 3000, "partitions": 8}, "spark": {"driver_memory": "8g"}})
    if dataset == "movielens":
        return os.path.join(ROOT, "conf", "movielens.yaml"), paths
    if dataset == "orders":
        from lifecycle_recs.synthetic_orders import order_log

        raw = os.path.join(work, "raw")
        os.makedirs(raw, exist_ok=True)
        order_log(users, start_date="2025-01-01", days=365, seed=11).to_csv(os.path.join(raw, "orders.csv"),
                                                                            index=False)
        return os.path.join(ROOT, "conf", "local.yaml"), merge_dicts(paths, {
            "source": {"kind": "generic", "name": "shop-orders", "format": "csv", "path": raw,
                       "columns": {"user_id": "customer_id", "event_ts": "order_date", "value": "amount",
                                   "quantity": "quantity"},
                       "event_type": "purchase", "timestamp_kind": "date"}})
    raise SystemExit(f"unknown dataset {dataset!r}")


def on_a_run(description: str = None):
    """For the scripts that read what a run of this one left (``quality_ceiling.py``,
    ``value_totals.py``, ``churn_ceiling.py``): the arguments it was given (``--dataset``,
    ``--users``, ``--work``) plus any the caller adds, then ``finish()`` -> (args, the conf
    it ran with, a Spark session)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--dataset", default="demo", choices=["demo", "synthetic", "movielens", "orders"])
    p.add_argument("--users", type=int, default=None, help="as given to nightly_quality.py")
    p.add_argument("--work", default=None, help="as given to nightly_quality.py")

    def finish():
        from lifecycle_recs.spark import get_spark

        args = p.parse_args()
        work = args.work or os.path.join(ROOT, ".bench", f"quality_{args.dataset}")
        if not os.path.isdir(os.path.join(work, "lake", "pipeline_runs")):
            raise SystemExit(f"no lakehouse under {work}: run benchmarks/nightly_quality.py --dataset {args.dataset} first")
        # the conf the run used (orders: it rewrites the same seeded CSV)
        cfg = conf_for(args.dataset, work, args.users or {"synthetic": 6000, "orders": 4000}.get(args.dataset, 0))
        return args, cfg, get_spark(cfg.spark)

    return p, finish


def main():
    from pyspark.sql import functions as F

    from lifecycle_recs import tables
    from lifecycle_recs.evaluation import quality_table
    from lifecycle_recs.pipeline import run_nightly, warm_up
    from lifecycle_recs.spark import get_spark

    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True, choices=["demo", "synthetic", "movielens", "orders"])
    p.add_argument("--users", type=int, default=None, help="synthetic: 6000; orders: 4000")
    p.add_argument("--work", default=None)
    p.add_argument("--stacking", dest="stacking", action="store_true", default=None,
                   help="train with model.stacking (ml/stacking.py; the default)")
    p.add_argument("--no-stacking", dest="stacking", action="store_false", help="train without the second stage")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a conf key, as jobs/nightly.py --set (repeatable; after the dataset's own keys)")
    args = p.parse_args()
    users = args.users or {"synthetic": 6000, "orders": 4000}.get(args.dataset, 0)
    work = args.work or os.path.join(ROOT, ".bench", f"quality_{args.dataset}")
    shutil.rmtree(work, ignore_errors=True)
    cfg = conf_for(args.dataset, work, users, args.stacking, args.set)
    spark = get_spark(cfg.spark)
    t0 = time.perf_counter()
    stages, d = warm_up(spark, cfg, None, None)
    run = run_nightly(spark, cfg, d, stages)
    t = run.context.training_date
    rows = [r.asDict() for r in tables.read(spark, cfg, "evaluation_metrics", t)
            .where(F.col("dataset") == "nightly").orderBy("task", "metric", "model").collect()]
    ev = next(r.info for r in run.results if r.stage == "evaluate")
    sets = "".join(f" --set {x}" for x in args.set)
    print(f"\n{args.dataset}{sets}: D={d}, T={t}, model {ev['model']}, users: {ev['protocol']} ({ev['evaluated_users']}), "
          f"{time.perf_counter() - t0:.0f}s")
    print("\n".join(quality_table(rows)))
    print(stack_summary(cfg.artifacts, ev["model"]))
    print("\n".join(result_lines(rows, f"dataset={args.dataset}")))


def result_lines(rows, prefix: str):
    """One ``RESULT <prefix> task=... verdict=...`` line per ours-vs-baseline row of
    ``evaluation_metrics`` (``rows``: dicts)."""
    by = {(r["model"], r["task"], r["metric"]): r for r in rows}
    for r in rows:
        if not r["model"].startswith("ours-vs-"):
            continue
        base = by.get((r["model"][len("ours-vs-"):], r["task"], r["metric"]))
        ours = by.get(("ours", r["task"], r["metric"]))
        yield (f"RESULT {prefix} task={r['task']} metric={r['metric']} comparison={r['model']} "
               f"n={r['n_users']} ours={ours['value']:.4f} baseline={base['value']:.4f} diff={r['value']:.4f} "
               f"low={_f(r['ci_low'])} high={_f(r['ci_high'])} verdict={r['verdict'].replace(' ', '_')}")


def stack_summary(root: str, version: str) -> str:
    """Which parts of the evaluated model's second stage (ml/stacking.py) scoring applied,
    with the out-of-fold figures that decided it."""
    import json

    with open(os.path.join(root, version, "config.json")) as fh:
        stack = json.load(fh).get("stack") or {}
    if not stack:
        return "\nstack: none (model.stacking off)"
    parts = []
    for name in ("churn", "value"):
        p = stack[name]
        oof = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in p["out_of_fold"].items())
        parts.append(f"{name} {'applied' if p.get('kept', True) else 'not applied'} (blend users {p['blend_users']}; "
                     f"out of fold: {oof})")
    return "\nstack: " + "; ".join(parts)


def _f(x) -> str:
    return "nan" if x is None else f"{x:.4f}"


if __name__ == "__main__":
    main()
