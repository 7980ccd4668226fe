"""Total predicted value / actual, on the evaluated model's own training snapshot and on
the night it is evaluated: is a total's error ours, or the data's drift between periods?

    python benchmarks/nightly_quality.py --dataset demo      # first: leaves .bench/quality_demo
    python benchmarks/value_totals.py --dataset demo

The evaluate stage scores the labelled users of T with the model trained on T - H. This
scores the labelled users of T - H with that same model (its training snapshot: in sample
for the users it trained on) and those of T, and prints for each the total of our predicted
value, of BG/NBD x Gamma-Gamma's (fitted on the history up to that date, as the evaluate
stage fits it) and of "same as the last H days", each over the actual total of the next H
days. A shift common to all three from T - H to T is the data's (spend per user changed
between the periods); a ratio off at T - H is the predictor's own bias. A small report:
it collects one row per labelled user (a few thousand) to the driver.

RESULT dataset=<d> snapshot=<date> role=<training|evaluated> n=<users> ours=<r> bgnbd_gamma_gamma=<r> same_as_last_h=<r>
"""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def main():
    from lifecycle_recs.dates import add_days
    from lifecycle_recs.ml import artifacts
    from lifecycle_recs.runs import last_published_date
    from nightly_quality import on_a_run
    from quality_ceiling import per_user_frame

    args, cfg, spark = on_a_run()[1]()
    H = cfg.lifecycle.horizon_days
    T = add_days(last_published_date(spark, cfg), -H)
    path = artifacts.resolve(cfg.artifacts, T)  # the model the evaluate stage scored T with
    trained = artifacts.load(path).config["training_date"]
    print(f"{args.dataset}: model {os.path.basename(path)}, trained on {trained}, evaluated at {T}")
    for when, role in ((trained, "training"), (T, "evaluated")):
        _, d = per_user_frame(spark, cfg, when, path)
        y = d.y_value.fillna(0.0).to_numpy().sum()
        r = {"ours": d.predicted_value.sum() / y, "bgnbd_gamma_gamma": d.bgnbd_gg_value.fillna(0.0).sum() / y,
             "same_as_last_h": d.value_last_horizon.fillna(0.0).sum() / y}
        print(f"RESULT dataset={args.dataset} snapshot={when} role={role} n={len(d)} "
              + " ".join(f"{k}={v:.4f}" for k, v in r.items()))


if __name__ == "__main__":
    main()
