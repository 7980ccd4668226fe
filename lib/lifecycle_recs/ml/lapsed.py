"""Churn of lapsed users from their silence and their old activity rate.

For a user silent longer than the lifecycle's churn threshold (``lifecycle.churn_days``),
the last sequence is stale: whether they come back within the horizon depends on how
long they have been gone (the longer, the less likely) and on how often they used to come
(a silence is longer for a frequent user than for a rare one), and the sequence model sees
too few returners in a training snapshot to order them (on the demo, about 20 of 600 lapsed
users; inside that band its churn ranking was below days-since-last-event, see
docs/quality.md). So past the threshold the churn logit is

    logit = intercept + slope * log1p(days since last event) + rate_slope * log rate,
    log rate = log1p(active days) - log1p(tenure days),            slope >= 0

a three-parameter logistic regression fitted on the lapsed labelled users of the training
snapshot and, with ``model.lapsed_periods`` > 1, on those of the periods of H days before it
(``adapters/lapsed.py``: a discrete-time hazard fit, each period asking "back within H days?"
of the users still away) (weighted maximum likelihood on their counts per distinct
(silence, rate), rounded;
the silence slope is bounded below by 0, so the probability never falls as the silence
grows). Below the threshold the model's logit passes through. It is **applied only where the
data it was fitted on supports its premise**: the silence slope at least ``MIN_SILENCE_Z``
standard errors above 0 (Wald, from the fit's Hessian); where coming back does not get rarer
with silence (MovieLens-100K: the slope sits at its bound 0) the sequence model, which orders
those users better there, keeps them (``applied: false``, figures kept for the record).
``params`` is stored in the artifact's ``config.json`` (``lapsed``); without it (older
artifacts, too few returners to fit) every user keeps the model's logit.

Spark-free: the fit takes numpy arrays (streamed from the training feed by the train
stage), :func:`churn_logit` works on tensors in scoring and explanations.
"""

from __future__ import annotations

import logging
import math
from typing import Dict, Iterable, Optional

import numpy as np
import torch

log = logging.getLogger(__name__)

# the silence slope must be this many standard errors above 0 for the model to apply
MIN_SILENCE_Z = 2.0
# user features (features.RFM_FEATURES, log1p): days_since_last_event, tenure_days, active_days
SILENCE_FEATURE, TENURE_FEATURE, ACTIVE_DAYS_FEATURE = 0, 2, 4


def _log_rate(feats):
    """log1p(active days) - log1p(tenure days) from the feature matrix (numpy or torch)."""
    return feats[:, ACTIVE_DAYS_FEATURE] - feats[:, TENURE_FEATURE]


class TailCounts:
    """Counts of labelled users past the threshold per distinct (log1p silence, log rate),
    rounded to 1e-3 and 1e-2 in log space: the sufficient statistics of the fit, built
    batch by batch from the feature matrix."""

    def __init__(self, min_silence_days: float):
        self.min_x = math.log1p(float(min_silence_days))
        self.n: Dict[tuple, float] = {}
        self.k: Dict[tuple, float] = {}

    def add(self, feats: np.ndarray, churned: np.ndarray, weight: np.ndarray) -> None:
        feats = np.asarray(feats, np.float64)
        x = feats[:, SILENCE_FEATURE]
        m = (x > self.min_x) & (np.asarray(weight) > 0)
        keys = zip(np.round(x[m], 3), np.round(_log_rate(feats)[m], 2))
        for key, y in zip(keys, np.asarray(churned, np.float64)[m]):
            self.n[key] = self.n.get(key, 0.0) + 1.0
            self.k[key] = self.k.get(key, 0.0) + float(y)

    def add_groups(self, x: np.ndarray, n: np.ndarray, k: np.ndarray) -> None:
        """Add counts already grouped by (log1p silence, log rate), rounded as above (the
        lapsed users of earlier periods, ``adapters.lapsed``)."""
        for (xs, xr), nn, kk in zip(np.asarray(x, np.float64).reshape(-1, 2), n, k):
            key = (round(float(xs), 3), round(float(xr), 2))
            self.n[key] = self.n.get(key, 0.0) + float(nn)
            self.k[key] = self.k.get(key, 0.0) + float(kk)

    def arrays(self):
        """(x [groups, 2]: log1p silence and log rate, n users, k churned)."""
        keys = sorted(self.n)
        return (
            np.array(keys, np.float64).reshape(-1, 2),
            np.array([self.n[v] for v in keys]),
            np.array([self.k[v] for v in keys]),
        )


def fit(
    x: np.ndarray,
    n: np.ndarray,
    k: np.ndarray,
    min_silence_days: float,
    min_each: int = 5,
    l2: float = 1e-4,
) -> Optional[Dict]:
    """(intercept, slope, rate_slope) of P(churned) = sigmoid(a + b x0 + c x1) from
    grouped counts: ``n`` users at (log1p silence, log rate) ``x`` [groups, 2] of whom
    ``k`` churned; ``b >= 0``. None when fewer than ``min_each`` users churned or came back
    (nothing to order them by)."""
    from scipy.optimize import minimize

    x, n, k = (np.asarray(a, np.float64) for a in (x, n, k))
    if not len(n):  # no user silent long enough (a short history)
        return None
    x = x.reshape(len(n), -1)
    churned, returned = float(k.sum()), float((n - k).sum())
    if churned < min_each or returned < min_each:
        return None
    xc = (n[:, None] * x).sum(0) / n.sum()  # centred for a well-conditioned fit
    d = np.c_[np.ones(len(n)), x - xc]

    def loss(p):
        z = d @ p
        # -log-likelihood: n log(1 + e^z) - k z, in a stable form
        nll = float((n * np.logaddexp(0.0, z) - k * z).sum())
        g = n / (1.0 + np.exp(-z)) - k
        return nll + l2 * (p @ p), d.T @ g + 2 * l2 * p

    p0 = np.zeros(d.shape[1])
    p0[0] = math.log((churned + 0.5) / (returned + 0.5))
    bounds = [(None, None), (0.0, None)] + [(None, None)] * (d.shape[1] - 2)
    res = minimize(loss, p0, jac=True, method="L-BFGS-B", bounds=bounds)
    coef = res.x[1:]
    # Wald z of the silence slope from the Hessian of the log-likelihood (the l2 term is negligible)
    r = 1.0 / (1.0 + np.exp(-(d @ res.x)))
    hess = (d * (n * r * (1 - r))[:, None]).T @ d + 2 * l2 * np.eye(d.shape[1])
    se = float(np.sqrt(max(np.linalg.pinv(hess)[1, 1], 1e-300)))
    z = float(coef[0] / se)
    return {
        "min_silence_days": float(min_silence_days),
        "min_log_silence": math.log1p(float(min_silence_days)),
        "intercept": float(res.x[0] - coef @ xc),
        "slope": float(coef[0]),
        "rate_slope": float(coef[1]) if len(coef) > 1 else 0.0,
        "silence_z": z,
        "applied": bool(z >= MIN_SILENCE_Z),
        "users": int(n.sum()),
        "returned": int(returned),
    }


def churn_logit(params: Optional[Dict], logit: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """The churn logit with lapsed users' replaced by the silence model (``logit``
    unchanged without ``params`` or where they were not ``applied``)."""
    if not params or not params.get("applied", True):
        return logit
    x = feats[:, SILENCE_FEATURE].to(logit.dtype)
    tail = (
        float(params["intercept"])
        + float(params["slope"]) * x
        + float(params.get("rate_slope", 0.0)) * _log_rate(feats).to(logit.dtype)
    )
    return torch.where(x > float(params["min_log_silence"]), tail, logit)


def describe(params: Optional[Dict]) -> str:
    """One line on an artifact's lapsed users' model (its ``config.json`` ``lapsed``): what
    it does to whom, what it rests on, and the held-out check (notebooks, reports)."""
    if not params:
        return (
            "not fitted (too few lapsed users churned or came back, or model.lapsed_churn off): "
            "the model's churn applies to every user"
        )
    applied = params.get("applied", True)
    head = (
        f"users silent > {params['min_silence_days']:g} days get the silence model"
        if applied
        else f"not applied (silence slope z {params['silence_z']:.2f} < {MIN_SILENCE_Z:g}): "
        "the model's churn applies to every user"
    )
    out = (
        f"{head}; fitted on {params['users']} lapsed user-periods over {params.get('periods', 1)} "
        f"period(s), {params['returned']} came back; silence slope {params['slope']:.3f} (z "
        f"{params['silence_z']:.2f}), rate slope {params.get('rate_slope', 0.0):.3f}"
    )
    held = params.get("held_out") or {}
    if "model_roc_auc" in held and "lapsed_roc_auc" in held:
        out += (
            f"; held-out lapsed users ({held['users']}, {held['returned']} back): ROC AUC model "
            f"{held['model_roc_auc']:.3f} vs silence model {held['lapsed_roc_auc']:.3f}"
        )
    return out


def held_out_check(params: Optional[Dict], pairs: Iterable) -> Dict:
    """Informational figures on the held-out lapsed users: log loss and ROC AUC inside
    the band of the model's own probabilities and of the silence model's. ``pairs``
    yields (model churn logits, feats, churn labels, label weights) per batch."""
    if not params:
        return {}
    from lifecycle_recs.ml.metrics import binary_metrics

    ys, zm, zl = [], [], []
    for logit, feats, y, w in pairs:
        lapsed = churn_logit(params, logit, feats)
        m = (feats[:, SILENCE_FEATURE] > params["min_log_silence"]) & (w > 0)
        ys.append(y[m].double().numpy())
        zm.append(logit[m].double().numpy())
        zl.append(lapsed[m].double().numpy())
    y = np.concatenate(ys) if ys else np.zeros(0)
    out: Dict = {"users": int(len(y)), "returned": int((y == 0).sum())}
    if not len(y):
        return out
    for name, z in (("model", np.concatenate(zm)), ("lapsed", np.concatenate(zl))):
        out[f"{name}_log_loss"] = float(np.mean(np.logaddexp(0.0, z) - y * z))
        if 0 < y.mean() < 1:
            out[f"{name}_roc_auc"] = float(binary_metrics(y, 1 / (1 + np.exp(-z)))["roc_auc"])
    return out


def fit_tail(tail: TailCounts, min_silence_days: float, periods: int = 1) -> Optional[Dict]:
    """``ml.lapsed`` on the lapsed labelled training users, with those of the earlier
    periods ``tail`` holds (None: too few to fit)."""
    x, n, k = tail.arrays()
    params = fit(x, n, k, min_silence_days)
    if params is not None:
        params["periods"] = int(periods)
    if params is None:
        log.info(
            "lapsed churn: not fitted (%d users silent > %g days, %d came back): the model's "
            "churn applies to every user",
            int(n.sum()),
            min_silence_days,
            int((n - k).sum()),
        )
    elif not params["applied"]:
        log.info(
            "lapsed churn: not applied, coming back does not get rarer with silence here "
            "(silence slope %.3f, z %.2f < %g; %d users silent > %g days, %d came back): the "
            "model's churn applies to every user",
            params["slope"],
            params["silence_z"],
            MIN_SILENCE_Z,
            params["users"],
            min_silence_days,
            params["returned"],
        )
    else:
        log.info(
            "lapsed churn: users silent > %g days get sigmoid(%.3f + %.3f log1p(days) + %.3f log "
            "rate) (fitted on %d lapsed user-periods, %d came back; silence slope z %.2f)",
            min_silence_days,
            params["intercept"],
            params["slope"],
            params["rate_slope"],
            params["users"],
            params["returned"],
            params["silence_z"],
        )
    return params
