"""The evaluate stage with the evaluated users' rows written once (``scratch.materialised``)
vs planned through their whole lineage.

    python benchmarks/evaluate_lineage.py [--users 80] [--repeats 3]

On the small lakehouse of ``evaluate_collect.py`` (built once under .bench/), runs the
evaluate stage's ``nightly_metrics`` on the training snapshot T ``--repeats`` times
each way, interleaved:

* baseline ``lineage`` (the code before this benchmark's change): the per-user frame
  (scoring, the BG/NBD prediction, the ranking joins) stays a lazy plan; every
  metric aggregate, bin and curve is planned through it, and Spark re-analyses it
  and matches it against every cached plan at each step;
* ``written`` (the product): the per-user frame is written once as Parquet to the
  run's scratch directory and read back, so what follows plans against a file scan.

Both give the same metric rows (checked, to 1e-9 relative, with the same n). The time
of the whole ``nightly_metrics`` call is printed per run; the ratio of the medians
with the range of the per-pair ratios. Last line:
RESULT lineage_over_written=<median> low=<min> high=<max> users=<n> repeats=<r>
"""
from __future__ import annotations

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    from evaluate_collect import report, same_rows, setup
    from lifecycle_recs import scratch
    from lifecycle_recs.evaluation import nightly_metrics

    args, spark, cfg, T, art = setup()
    product = scratch.materialised

    def one(materialise):
        scratch.materialised = materialise
        try:
            t = time.perf_counter()
            rows, _, info = nightly_metrics(spark, cfg, T, art)
            return time.perf_counter() - t, rows, info["evaluated_users"]
        finally:
            scratch.materialised = product

    def lineage(df, path):
        return df

    nightly_metrics(spark, cfg, T, art)  # warm-up: JIT, worker start, scorer cache
    base_s, prod_s = [], []
    for i in range(args.repeats):
        b_total, b_rows, n = one(lineage)
        p_total, p_rows, _ = one(product)
        same_rows(b_rows, p_rows)
        base_s.append(b_total)
        prod_s.append(p_total)
        print(f"run {i + 1}: lineage {b_total:.1f}s  written {p_total:.1f}s  {len(p_rows)} rows, {n} evaluated users",
              flush=True)
    report("lineage", "written", base_s, prod_s, args)


if __name__ == "__main__":
    main()
