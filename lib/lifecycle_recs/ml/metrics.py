"""Quality metrics over numpy arrays: a leaf module (imports nothing of the project).

Binary and regression metrics come from scikit-learn and scipy (both ship with
the Databricks ML runtime); only what they lack is written here: ranking
metrics over one target or a ragged set of relevant items per user, and
catalog coverage/diversity.

>>> rank_metrics(np.array([1, 3, 20]), k=10)["hit@10"]
0.6666666666666666
>>> round(binary_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])["roc_auc"], 2)
0.75
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats
from sklearn import metrics as skm

NAN = float("nan")


# -- ranking ------------------------------------------------------------------------
def rank_metrics(ranks: np.ndarray, k: int = 10) -> Dict[str, float]:
    """Hit@k, NDCG@k, MRR@k from 1-based ranks of a single target per user."""
    r = np.asarray(ranks, dtype=np.float64)
    if len(r) == 0:
        return {f"hit@{k}": NAN, f"ndcg@{k}": NAN, f"mrr@{k}": NAN}
    inside = r <= k
    return {
        f"hit@{k}": float(inside.mean()),
        f"ndcg@{k}": float(np.where(inside, 1.0 / np.log2(r + 1.0), 0.0).mean()),
        f"mrr@{k}": float(np.where(inside, 1.0 / r, 0.0).mean()),
    }


def set_metrics(
    recommended: Sequence[Sequence], truth: Sequence[Iterable], k: int
) -> Dict[str, float]:
    """Recall@k and NDCG@k against a set of relevant items per user (long horizon),
    averaged over users with a non-empty truth set. Recall@k = hits in the top k /
    |relevant| (as RecBole, RePlay and Microsoft Recommenders define it: a user with more
    relevant items than k cannot reach 1); NDCG@k's ideal list has min(|relevant|, k) hits.

    >>> set_metrics([["a", "b"]], [{"b", "c"}], k=2)["recall@2"]
    0.5
    """
    recalls, ndcgs = [], []
    for rec, rel in zip(recommended, truth):
        rel = set(rel or ())
        if not rel:
            continue
        top = list(rec)[:k]
        gains = [1.0 if x in rel else 0.0 for x in top]
        recalls.append(sum(gains) / len(rel))
        dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
        idcg = sum(1.0 / np.log2(i + 2) for i in range(min(len(rel), k)))
        ndcgs.append(dcg / idcg)
    n = len(recalls)
    return {
        f"recall@{k}": float(np.mean(recalls)) if n else NAN,
        f"ndcg@{k}": float(np.mean(ndcgs)) if n else NAN,
        "users": float(n),
    }


# -- binary (churn) -------------------------------------------------------------------
def binary_metrics(y: Sequence, p: Sequence) -> Dict[str, float]:
    """ROC AUC, PR AUC (average precision), Brier score and base rate; the AUCs
    are NaN when only one class is present."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if len(y) == 0:
        return {"roc_auc": NAN, "pr_auc": NAN, "brier": NAN, "base_rate": NAN}
    both = 0 < y.sum() < len(y)
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)) if both else NAN,
        "pr_auc": float(skm.average_precision_score(y, p)) if y.sum() > 0 else NAN,
        "brier": float(np.mean((p - y) ** 2)),
        "base_rate": float(y.mean()),
    }


def calibration(y: Sequence, p: Sequence, bins: int = 10) -> List[Tuple[float, float, int]]:
    """(mean predicted, observed rate, count) per equal-width probability bin
    (scikit-learn's ``calibration_curve`` bins, with the count of each)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    if len(y) == 0:
        return []
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.searchsorted(edges[1:-1], p)
    return [
        (float(p[idx == b].mean()), float(y[idx == b].mean()), int((idx == b).sum()))
        for b in range(bins)
        if (idx == b).any()
    ]


def lift_curve(y: Sequence, p: Sequence, points: int = 20) -> List[Tuple[float, float]]:
    """Cumulative gain: fraction of positives captured in the top x of users by score."""
    y = np.asarray(y, float)
    order = np.argsort(-np.asarray(p, float), kind="mergesort")
    cum = np.cumsum(y[order]) / max(1.0, y.sum())
    xs = np.linspace(0, 1, points + 1)[1:]
    return (
        [(float(x), float(cum[max(0, int(np.ceil(x * len(y))) - 1)])) for x in xs] if len(y) else []
    )


# -- regression (value) ----------------------------------------------------------------
def spearman(a: Sequence, b: Sequence) -> float:
    """Rank correlation (average ranks for ties); NaN when either side is constant."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(np.unique(a)) < 2 or len(np.unique(b)) < 2:
        return NAN
    return float(stats.spearmanr(a, b).statistic)


def regression_metrics(y: Sequence, yhat: Sequence) -> Dict[str, float]:
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    if len(y) == 0:
        return {"mae": NAN, "rmse": NAN, "spearman": NAN}
    return {
        "mae": float(skm.mean_absolute_error(y, yhat)),
        "rmse": float(np.sqrt(skm.mean_squared_error(y, yhat))),
        "spearman": spearman(y, yhat),
    }


# -- catalog -------------------------------------------------------------------------------
def catalog_metrics(
    recs: Sequence[Sequence[int]],
    n_catalog: int,
    popularity: np.ndarray,
    categories: Optional[Sequence] = None,
) -> Dict[str, float]:
    """Coverage (share of catalog recommended to anyone), intra-list diversity
    (share of distinct categories in a list), popularity bias (mean log popularity)."""
    flat = [i for r in recs for i in r]
    out = {
        "coverage": len(set(flat)) / max(1, n_catalog),
        "popularity_bias": float(np.mean(np.log1p(popularity[flat]))) if flat else NAN,
    }
    if categories is not None and recs:
        out["category_diversity"] = float(
            np.mean([len({categories[i] for i in r}) / max(1, len(r)) for r in recs if r])
        )
    return out
