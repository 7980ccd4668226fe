"""Metrics by hand, and the library-backed ones against direct formulas."""

import doctest

import numpy as np
import pytest

from lifecycle_recs.ml import metrics as M


def test_docstring_examples():
    assert doctest.testmod(M).failed == 0


def test_ranking_metrics_by_hand():
    m = M.rank_metrics(np.array([1, 3, 11]), 10)
    assert m["hit@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(4)) / 3)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3) / 3)
    s = M.set_metrics([["a", "b", "c"], ["x"], ["q"]], [{"b", "z"}, set(), {"q"}], 2)
    assert s["recall@2"] == pytest.approx((0.5 + 1.0) / 2) and s["users"] == 2
    assert s["ndcg@2"] == pytest.approx(((1 / np.log2(3)) / (1 + 1 / np.log2(3)) + 1.0) / 2)
    assert np.isnan(M.rank_metrics(np.array([]), 10)["hit@10"])


def test_binary_metrics():
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    b = M.binary_metrics(y, p)
    assert b["roc_auc"] == pytest.approx(0.75)
    assert M.binary_metrics(y, np.full(4, 0.5))["roc_auc"] == pytest.approx(
        0.5
    )  # ties: half credit
    assert b["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    assert b["brier"] == pytest.approx(np.mean((p - y) ** 2)) and b["base_rate"] == 0.5
    assert np.isnan(M.binary_metrics([1, 1], [0.2, 0.3])["roc_auc"])


def test_roc_auc_is_the_pairwise_probability():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    p = np.round(rng.random(300), 1)  # many ties
    pos, neg = p[y], p[~y]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert M.binary_metrics(y, p)["roc_auc"] == pytest.approx(pairs)


def test_regression_and_calibration_and_catalog():
    r = M.regression_metrics(np.array([0, 1, 2.0]), np.array([0, 2, 4.0]))
    assert (
        r["mae"] == pytest.approx(1.0)
        and r["rmse"] == pytest.approx(np.sqrt(5 / 3))
        and r["spearman"] == 1.0
    )
    assert np.isnan(M.spearman([1, 1, 1], [1, 2, 3]))
    cal = M.calibration(np.array([0, 1, 1, 0]), np.array([0.05, 0.95, 0.9, 0.15]), bins=2)
    assert cal == [(pytest.approx(0.1), 0.0, 2), (pytest.approx(0.925), 1.0, 2)]
    c = M.catalog_metrics([[2, 3], [3, 4]], 10, np.ones(10), ["a", "a", "a", "b", "b"])
    assert c["coverage"] == 0.3 and c["category_diversity"] == pytest.approx(0.75)
    lc = M.lift_curve(np.array([1, 0, 0, 1]), np.array([0.9, 0.8, 0.1, 0.7]), points=4)
    assert lc[-1] == (1.0, 1.0) and lc[0] == (0.25, 0.5)


def test_recall_at_k_divides_by_every_relevant_item_as_recbole_does():
    """Recall@k = hits / |relevant| (RecBole, RePlay, Microsoft Recommenders), not
    hits / min(|relevant|, k): two hits of three relevant items in a list of two is 2/3."""
    got = M.set_metrics([["a", "b"]], [{"a", "b", "c"}], k=2)
    assert got["recall@2"] == pytest.approx(2 / 3)
    assert got["ndcg@2"] == pytest.approx(1.0)  # the ideal list of two holds two hits
