"""Quality through the nightly pipeline itself, one dataset per run:

    python benchmarks/nightly_quality.py --dataset demo        # conf/local.yaml's log
    python benchmarks/nightly_quality.py --dataset synthetic   # larger (--users 6000)
    python benchmarks/nightly_quality.py --dataset movielens   # conf/movielens.yaml
    python benchmarks/nightly_quality.py --dataset orders      # an order log (--users 4000)
    python benchmarks/nightly_quality.py --dataset demo --set model.use_text=false  # any key

Each run starts from an empty work directory, warms up (trains the model of
night T = D - H on T - H, as ``jobs/nightly.py --warm-up`` does), runs every
stage of the conf for D, then prints the evaluate stage's quality table for T
(ours vs every baseline on the same users, n and 95% bootstrap intervals, and
each paired difference with its verdict) and one line per comparison:

RESULT dataset=<d> task=<t> metric=<m> comparison=<ours-vs-x> n=<n> ours=<a> baseline=<b>
       diff=<d> low=<l> high=<h> verdict=<v>   (one line)
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

from harness import ROOT, conf_for, nightly_rows, result_lines


def main():

    from lifecycle_recs.evaluation.report import quality_table
    from lifecycle_recs.pipeline import run_nightly, warm_up
    from lifecycle_recs.spark import get_spark

    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True, choices=["demo", "synthetic", "movielens", "orders"])
    p.add_argument("--users", type=int, default=None, help="synthetic: 6000; orders: 4000")
    p.add_argument("--work", default=None)
    p.add_argument(
        "--stacking",
        dest="stacking",
        action="store_true",
        default=None,
        help="train with model.stacking (ml/stacking.py; the default)",
    )
    p.add_argument(
        "--no-stacking",
        dest="stacking",
        action="store_false",
        help="train without the second stage",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a conf key, as jobs/nightly.py --set (repeatable; after the dataset's own "
        "keys)",
    )
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
    rows = nightly_rows(spark, cfg, t)
    ev = next(r.info for r in run.results if r.stage == "evaluate")
    sets = "".join(f" --set {x}" for x in args.set)
    print(
        f"\n{args.dataset}{sets}: D={d}, T={t}, model {ev['model']}, users: {ev['protocol']} "
        f"({ev['evaluated_users']}), {time.perf_counter() - t0:.0f}s"
    )
    print("\n".join(quality_table(rows)))
    print(stack_summary(cfg.artifacts, ev["model"]))
    print("\n".join(result_lines(rows, f"dataset={args.dataset}")))


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
        oof = ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in p["out_of_fold"].items()
        )
        parts.append(
            f"{name} {'applied' if p.get('kept', True) else 'not applied'} (blend users "
            f"{p['blend_users']}; out of fold: {oof})"
        )
    return "\nstack: " + "; ".join(parts)


if __name__ == "__main__":
    main()
