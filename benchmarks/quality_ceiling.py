"""Can any combination of our outputs and the baselines win the rows that do not win,
on the very users the evaluate stage measures? An in-sample upper bound.

    python benchmarks/nightly_quality.py --dataset demo      # first: leaves .bench/quality_demo
    python benchmarks/quality_ceiling.py --dataset demo

Scores the labelled users of T with the model the evaluate stage used (the one promoted
for night T, trained on T - H), joins the baselines as the evaluate stage computes them
(days since last event; BG/NBD and Gamma-Gamma fitted on the history up to T; the value of
the last H days), and fits **on those same users** (in sample, so optimistic by
construction: no model fitted elsewhere can do better in expectation):

* churn: a logistic regression on (our logit, log1p days since last event, BG/NBD logit)
  (its probability also for Brier and calibration, against BG/NBD's),
  and ours with every user silent longer than a cut ranked above by silence (the cut that
  maximises PR AUC on these users);
* value: least squares on (our prediction, BG/NBD x Gamma-Gamma, value of the last H days);
  for the total predicted / actual, also ours rescaled so that its total is exact on these
  users (``ours_exact_total``): where even that candidate's interval reaches 0, a better
  total alone cannot win the row at this n (the resampled users' spread decides it); only
  per-user predictions far closer to the actual values could.

Each candidate (ours, the in-sample blend) is compared with every baseline of each
metric (the best first) with a paired bootstrap over users (``--reps`` replicates, numpy). When even the
in-sample blend's interval reaches 0 or below, no stack of these signals can win that row
on these users: the row is bounded by the data at this n, not by the model. Also printed:
the share of the squared value error carried by the top 1% of users by actual value, and
churn ROC AUC inside bands of days since last event. A small report: it collects one row
per labelled user of T (a few thousand) to the driver.

RESULT dataset=<d> task=<t> metric=<m> candidate=<c> n=<n> value=<v> against=<b> baseline=<bv> diff=<d> low=<l> high=<h>
"""
from __future__ import annotations

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

LOWER_IS_BETTER = {"rmse", "total_ratio_error", "brier", "calibration_error"}


def per_user_frame(spark, cfg, T: str, path: str = None):
    """One row per labelled user of T: label, value, our outputs and the baselines' inputs;
    scored by the artifact at ``path`` (default: the one promoted for night T)."""
    from pyspark.sql import functions as F

    from lifecycle_recs import btyd, tables
    from lifecycle_recs.lifecycle import users_with_stage
    from lifecycle_recs.ml import artifacts
    from lifecycle_recs.udfs import score_users

    path = path or artifacts.resolve(cfg.artifacts, T)
    seq_t = tables.read(spark, cfg, "user_sequences", T)
    life_t = tables.read(spark, cfg, "user_lifecycle", T)
    summ = btyd.summaries(tables.read(spark, cfg, "events"), T, cfg.sequences.value_event_types)
    users = btyd.scoring_rows(users_with_stage(seq_t, life_t), artifacts.load(path).config.get("stack"), lambda: summ)
    scored = score_users(users, path, cfg.recommend, cfg.train.device) \
        .select("user_id", "churn_probability", "predicted_value")
    params = btyd.fit(summ, cfg.evaluation.btyd_max_rows, cfg.evaluation.seed)
    labelled = life_t.where(F.col("churned_within_horizon").isNotNull()).select(
        "user_id", F.col("churned_within_horizon").cast("double").alias("y_churn"),
        F.col("value_next_horizon").alias("y_value"), "value_last_horizon", "days_since_last_event")
    bg = btyd.predict(summ.join(labelled.select("user_id"), "user_id", "inner"), params, cfg.lifecycle.horizon_days)
    out = labelled.join(scored, "user_id", "inner").join(bg.select("user_id", "bgnbd_p_churn", "bgnbd_gg_value"),
                                                       "user_id", "left")
    return os.path.basename(path), out.toPandas().sort_values("user_id").reset_index(drop=True)


def _logit(p):
    p = np.clip(np.asarray(p, float), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def churn_candidates(d):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    y = d.y_churn.to_numpy()
    x = np.c_[_logit(d.churn_probability), np.log1p(d.days_since_last_event), _logit(d.bgnbd_p_churn.fillna(0.5))]
    blend = LogisticRegression(C=1e4, max_iter=5000).fit(x, y).decision_function(x)
    blend = 1.0 / (1.0 + np.exp(-blend))  # a probability: Brier and calibration apply to it
    # ours up to a silence of `cut` days, every longer-silent user above them in order of silence
    # (the cut chosen on these users by PR AUC)
    rec, ours = d.days_since_last_event.to_numpy(float), d.churn_probability.to_numpy()
    tails = {cut: np.where(rec > cut, 2.0 + rec, ours) for cut in (14, 21, 30, 45, 60, 90)}
    best = max(tails, key=lambda c: average_precision_score(y, tails[c]))
    return y, {"ours": ours, "in_sample_blend": blend, f"in_sample_recency_beyond_{best}d": tails[best]}, \
        {"recency": d.days_since_last_event.to_numpy(float), "bgnbd": d.bgnbd_p_churn.to_numpy(float)}


def value_candidates(d):
    y = d.y_value.fillna(0.0).to_numpy()
    x = np.c_[np.ones(len(d)), d.predicted_value, d.bgnbd_gg_value.fillna(0.0), d.value_last_horizon.fillna(0.0)]
    blend = x @ np.linalg.lstsq(x, y, rcond=None)[0]
    ours = d.predicted_value.to_numpy()
    exact = ours * (y.sum() / ours.sum()) if ours.sum() > 0 else ours
    return y, {"ours": ours, "in_sample_blend": blend, "ours_exact_total": exact}, \
        {"bgnbd_gamma_gamma": d.bgnbd_gg_value.fillna(0.0).to_numpy(),
         "same_as_last_h": d.value_last_horizon.fillna(0.0).to_numpy()}


# the candidates and baselines whose scores are probabilities (Brier and calibration apply)
PROBABILITIES = {"ours", "in_sample_blend", "bgnbd"}
PROBABILITY_METRICS = {"brier", "calibration_error"}


def calibration_error(y, p):
    """Expected calibration error over 10 equal-width bins, as ``quality`` computes it."""
    b = np.minimum(np.floor(np.asarray(p) * 10), 9).astype(int)
    return float(np.abs(np.bincount(b, p, 10) - np.bincount(b, y, 10)).sum() / len(y))


def metric_fns():
    from scipy.stats import spearmanr
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {"churn": {"roc_auc": roc_auc_score, "pr_auc": average_precision_score,
                      "brier": lambda y, p: float(np.mean((p - y) ** 2)), "calibration_error": calibration_error},
            "value": {"rmse": lambda y, p: float(np.sqrt(np.mean((y - p) ** 2))),
                      "total_ratio_error": lambda y, p: float(abs(p.sum() / y.sum() - 1)) if y.sum() > 0 else np.nan,
                      "spearman": lambda y, p: float(spearmanr(y, p)[0])}}


def compare(task, metric, fn, y, candidates, baselines, reps, seed):
    """RESULT lines: each candidate against each baseline, best baseline (point estimate)
    first, with a paired bootstrap interval of the difference (the same resampled users
    for both)."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    base_vals = {b: fn(y, s) for b, s in baselines.items()}
    order = sorted(base_vals, key=lambda b: -sign * base_vals[b])
    rng = np.random.default_rng(seed)
    idx = [rng.integers(0, len(y), len(y)) for _ in range(reps)]
    idx = [i for i in idx if len(np.unique(y[i])) > 1 or task != "churn"]
    lines = []
    for b in order:
        for c, s in candidates.items():
            diffs = np.array([fn(y[i], s[i]) - fn(y[i], baselines[b][i]) for i in idx])
            low, high = np.nanpercentile(diffs, [2.5, 97.5])
            lines.append(f"RESULT task={task} metric={metric} candidate={c} n={len(y)} value={fn(y, s):.4f} "
                         f"against={b} baseline={base_vals[b]:.4f} diff={fn(y, s) - base_vals[b]:.4f} "
                         f"low={low:.4f} high={high:.4f}")
    return lines


def main():
    from sklearn.metrics import roc_auc_score

    from lifecycle_recs.dates import add_days
    from nightly_quality import on_a_run

    p, finish = on_a_run()
    p.add_argument("--reps", type=int, default=500)
    args, cfg, spark = finish()
    from lifecycle_recs.runs import last_published_date

    T = add_days(last_published_date(spark, cfg), -cfg.lifecycle.horizon_days)
    version, d = per_user_frame(spark, cfg, T)
    print(f"{args.dataset}: T={T}, model {version}, {len(d)} labelled users")
    fns = metric_fns()
    for task, make in (("churn", churn_candidates), ("value", value_candidates)):
        y, cands, bases = make(d)
        if task == "churn" and len(np.unique(y)) < 2:
            print("churn: one class only, no AUC")
            continue
        for metric, fn in fns[task].items():
            keep = (lambda names: {k: v for k, v in names.items() if k in PROBABILITIES}) \
                if metric in PROBABILITY_METRICS else (lambda names: names)
            for line in compare(task, metric, fn, y, keep(cands), keep(bases), args.reps, cfg.evaluation.seed):
                print(line.replace("RESULT ", f"RESULT dataset={args.dataset} "))
    y = d.y_value.fillna(0.0).to_numpy()
    err = (y - d.predicted_value.to_numpy()) ** 2
    top = np.argsort(-y)[:max(1, len(y) // 100)]
    print(f"value: the top 1% of users by actual value ({len(top)}) carry {err[top].sum() / err.sum():.1%} of "
          f"our squared error")
    rec, yc = d.days_since_last_event.to_numpy(float), d.y_churn.to_numpy()
    for lo, hi in ((-1, 14), (14, 30), (30, 60), (60, 1e9)):
        m = (rec > lo) & (rec <= hi)
        if m.sum() and len(np.unique(yc[m])) > 1:
            print(f"churn, days since last event in ({max(lo, 0):g}, {hi:g}]: {m.sum()} users, "
                  f"{int((1 - yc[m]).sum())} not churned; ROC AUC ours {roc_auc_score(yc[m], d.churn_probability[m]):.3f}"
                  f" recency {roc_auc_score(yc[m], rec[m]):.3f} BG/NBD {roc_auc_score(yc[m], d.bgnbd_p_churn[m]):.3f}")


if __name__ == "__main__":
    main()
