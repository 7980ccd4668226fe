"""Promotion gating (item 9): an artifact whose heads were never trained, or whose
held-out churn AUC fell by more than train.max_metric_drop, is saved but not promoted."""

import json
import os

from lifecycle_recs.ml import artifacts
from lifecycle_recs.stages.train import promotion_refusal
from tests.helpers import make_artifact


def _promoted_with_auc(root, auc):
    d = make_artifact(root)  # promoted for 2026-01-01
    with open(os.path.join(d, "metrics.json"), "w") as fh:
        json.dump({"heads_best_loss": 0.3, "val_churn_auc": auc}, fh)
    return os.path.basename(d)


def test_untrained_heads_are_never_promoted(tmp_path):
    why = promotion_refusal(str(tmp_path), "2026-02-01", {"train_rows": 10}, 0.02)
    assert why and "heads were never trained" in why


def test_a_drop_in_churn_auc_beyond_the_threshold_is_not_promoted(tmp_path):
    prev = _promoted_with_auc(tmp_path, 0.90)
    ok = {"heads_best_loss": 0.2, "val_churn_auc": 0.89}
    assert promotion_refusal(str(tmp_path), "2026-02-01", ok, 0.02) is None
    worse = {"heads_best_loss": 0.2, "val_churn_auc": 0.85}
    why = promotion_refusal(str(tmp_path), "2026-02-01", worse, 0.02)
    assert why and "0.85" in why and prev in why
    # no AUC at all (e.g. one class held out) while the promoted model had one: not promoted either
    assert promotion_refusal(str(tmp_path), "2026-02-01", {"heads_best_loss": 0.2}, 0.02)
    # a backfill of a night before any promotion compares with nothing
    assert promotion_refusal(str(tmp_path), "2025-12-01", worse, 0.02) is None
    assert artifacts.promoted_version(str(tmp_path), as_of="2026-02-01") == prev
