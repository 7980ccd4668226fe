"""How far can any learner fitted on the training snapshot get above recency for churn?

    python benchmarks/nightly_quality.py --dataset demo      # first: leaves .bench/quality_demo
    python benchmarks/churn_ceiling.py --dataset demo

Fits, on the labelled users of T - H (the snapshot the model of night T trains on),
learners on the model's user features (RFM + BG/NBD, ``features.USER_FEATURES``): L2
logistic regressions on ``stacking.churn_basis`` (several C), on the raw features,
and gradient-boosted trees; scores the labelled users of T and prints ROC/PR AUC next
to days-since-last-event on the same users. A small report: it collects the two
snapshots' per-user features (a few thousand rows) to the driver.

RESULT dataset=<d> learner=<name> n=<users at T> roc_auc=<a> pr_auc=<p> recency_roc_auc=<r> recency_pr_auc=<rp>
"""
from __future__ import annotations

import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def main():
    import torch
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score

    from lifecycle_recs.dates import add_days
    from lifecycle_recs.feeding import training_frame
    from lifecycle_recs.ml import stacking
    from lifecycle_recs.ml.features import RFM_FEATURES, user_features
    from nightly_quality import on_a_run

    args, cfg, spark = on_a_run()[1]()
    H = cfg.lifecycle.horizon_days
    warm = sorted(glob.glob(os.path.join(cfg.artifacts, "*-*-*-*-*")))
    if not warm:
        raise SystemExit(f"no artifacts under {cfg.artifacts}: run benchmarks/nightly_quality.py --dataset "
                         f"{args.dataset} first")
    with open(os.path.join(warm[0], "config.json")) as fh:  # the warm-up model: trained on T - H
        conf = json.load(fh)
    t_train = conf["training_date"]
    T = add_days(t_train, H)
    cols = ["user_id", *RFM_FEATURES, "sequence_length", "churned_within_horizon"]

    def frame(d):
        return training_frame(spark, cfg, d).where("has_labels").select(*cols).toPandas()

    tr, te = frame(t_train), frame(T)
    ftr, fte = user_features(tr, cfg.sequences.max_length, conf.get("btyd")), \
        user_features(te, cfg.sequences.max_length, conf.get("btyd"))
    ytr, yte = tr.churned_within_horizon.astype(float).to_numpy(), te.churned_within_horizon.astype(float).to_numpy()
    rec = te.days_since_last_event.to_numpy()
    r_roc, r_pr = roc_auc_score(yte, rec), average_precision_score(yte, rec)
    xb = stacking.churn_basis(torch.tensor(ftr)).double().numpy()
    xt = stacking.churn_basis(torch.tensor(fte)).double().numpy()
    m, s = xb.mean(0), xb.std(0) + 1e-9
    scores = {}
    for c in (0.01, 0.1, 1.0, 10.0):
        lr = LogisticRegression(C=c, max_iter=3000).fit((xb - m) / s, ytr)
        scores[f"logistic_basis_C{c:g}"] = lr.decision_function((xt - m) / s)
    scores["logistic_raw"] = LogisticRegression(C=1.0, max_iter=3000).fit(ftr, ytr).decision_function(fte)
    for depth in (2, 3):
        g = HistGradientBoostingClassifier(max_depth=depth, max_iter=200, learning_rate=0.05, random_state=0)
        scores[f"gbdt_depth{depth}"] = g.fit(ftr, ytr).predict_proba(fte)[:, 1]
    print(f"training snapshot {t_train}: {len(tr)} labelled users; evaluated at {T}: {len(te)}")
    for name, sc in scores.items():
        print(f"RESULT dataset={args.dataset} learner={name} n={len(te)} roc_auc={roc_auc_score(yte, sc):.4f} "
              f"pr_auc={average_precision_score(yte, sc):.4f} recency_roc_auc={r_roc:.4f} recency_pr_auc={r_pr:.4f}")


if __name__ == "__main__":
    main()
