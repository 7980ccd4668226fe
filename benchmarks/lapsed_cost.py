"""What the earlier periods' lapsed users (``model.lapsed_periods``, ``lapsed_history``) add
to the train stage: their counts over ``events`` against the stack's purchase-day summaries
(``btyd.summaries``, a pass over ``events`` that train already makes), on a benchmark's lake,
interleaved, the first pair dropped as warm-up, median and range of 3:

    python benchmarks/nightly_quality.py --dataset demo --work /tmp/q_demo
    python benchmarks/lapsed_cost.py demo /tmp/q_demo

RESULT dataset=<d> lapsed_counts_s=<median> [min, max] btyd_summaries_s=... ratio=...
"""
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def main():
    from nightly_quality import conf_for
    from lifecycle_recs.spark import get_spark
    from lifecycle_recs import btyd, lapsed_history, runs, tables
    from lifecycle_recs.dates import add_days
    if len(sys.argv) != 3:
        raise SystemExit("usage: python benchmarks/lapsed_cost.py <dataset> <the benchmark's work directory>")
    ds, work = sys.argv[1], sys.argv[2]
    cfg = conf_for(ds, work, {"synthetic": 6000, "orders": 4000}.get(ds, 0))
    spark = get_spark(cfg.spark)
    ev = tables.read(spark, cfg, "events")
    T = add_days(runs.last_published_date(spark, cfg), -2 * cfg.lifecycle.horizon_days)  # the warm-up model's T
    H, churn, periods = cfg.lifecycle.horizon_days, cfg.lifecycle.churn_days, cfg.model.lapsed_periods
    a, b = [], []
    for _ in range(4):
        t0 = time.perf_counter(); lapsed_history.earlier_tail_counts(ev, T, H, churn, periods); a.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); btyd.summaries(ev, T, cfg.sequences.value_event_types).count(); b.append(time.perf_counter() - t0)
    a, b = a[1:], b[1:]  # the first pair warms up
    r = [x / y for x, y in zip(a, b)]
    print(f"RESULT dataset={ds} lapsed_counts_s={statistics.median(a):.2f} [{min(a):.2f}, {max(a):.2f}] "
          f"btyd_summaries_s={statistics.median(b):.2f} [{min(b):.2f}, {max(b):.2f}] ratio={statistics.median(r):.2f} [{min(r):.2f}, {max(r):.2f}]")


if __name__ == "__main__":
    main()
