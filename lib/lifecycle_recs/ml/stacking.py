"""Second stage: the sequence model's churn and value stacked with the RFM/BTYD view of
the same history.

The sequence model ranks users by churn about as well as days-since-last-event and
its value head (fitted on log1p(value)) is not a least-squares fit of value, so
squared error is dominated by the few large spenders. Two small models repair that,
fitted in the train stage on the training snapshot (never on the night evaluated):

1. a *feature model* on the user features alone (``features.USER_FEATURES``, no
   model output, so an in-sample fit over all labelled training users is honest):
   an L2 logistic regression on a quadratic basis of the features for churn, a
   ridge regression on spend-rate terms for value (raw scale: squared error is
   what it minimises);
2. a *blend* of the model's output and the feature model, 3 coefficients each,
   fitted on the users held out of the model's training (the sequence model's
   outputs there are out of sample); too few held-out labels -> all users.

Everything is a small JSON dict in the artifact (``config.json`` key ``stack``) and
is applied in torch on the scoring device (:func:`apply`).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import torch

from .features import USER_FEATURES

_F = {name: i for i, name in enumerate(USER_FEATURES)}
# the held-out users must hold this many of each churn class (and positive values)
# for the blend to be fitted on them alone
MIN_HELD_OUT = 20


def churn_basis(feats: torch.Tensor) -> torch.Tensor:
    """[B, m]: the features (log1p scale), squares of the RFM ones, and recency
    crossed with activity, tenure and P(alive)."""
    f = feats.float()
    n = min(f.shape[1], len(USER_FEATURES))
    f = torch.nn.functional.pad(f[:, :n], (0, len(USER_FEATURES) - n))
    r = f[:, _F["days_since_last_event"]]
    cross = torch.stack([r * f[:, _F["active_days"]], r * f[:, _F["tenure_days"]],
                         r * f[:, _F["bgnbd_p_alive"]]], dim=1)
    return torch.cat([f, f[:, :5] ** 2, cross], dim=1)


def value_basis(feats: torch.Tensor, horizon_days: float) -> torch.Tensor:
    """[B, m] on the value's own scale: spend per day of tenure x H, that x P(alive),
    spend per active day x expected active days in H, spend per active day x P(alive)."""
    f = feats.float()
    n = min(f.shape[1], len(USER_FEATURES))
    f = torch.nn.functional.pad(f[:, :n], (0, len(USER_FEATURES) - n))
    money = torch.expm1(f[:, _F["monetary_total"]])
    tenure = torch.expm1(f[:, _F["tenure_days"]])
    active = torch.expm1(f[:, _F["active_days"]]).clamp(min=1.0)
    alive = f[:, _F["bgnbd_p_alive"]]
    exp_days = torch.expm1(f[:, _F["bgnbd_expected_days"]])
    rate = money / (tenure + 1.0) * float(horizon_days)
    per_day = money / active
    return torch.stack([rate, rate * alive, per_day * exp_days, per_day * alive], dim=1)


def _standardise(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    std = x.std(0)
    return mean, np.where(std > 1e-9, std, 1.0)


def _logistic(x: np.ndarray, y: np.ndarray, c: float) -> Tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:  # one class: a constant at its (clipped) rate
        p = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
        return np.zeros(x.shape[1]), float(np.log(p / (1 - p)))
    m = LogisticRegression(C=c, max_iter=2000).fit(x, y)
    return m.coef_[0].astype(np.float64), float(m.intercept_[0])


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> Tuple[np.ndarray, float]:
    """Least squares with an L2 penalty on the (standardised) slopes, not the intercept."""
    xm, ym = x.mean(0), y.mean()
    xc = x - xm
    coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
    return coef, float(ym - xm @ coef)


def fit(churn_logit: np.ndarray, value: np.ndarray, feats: np.ndarray, y_churn: np.ndarray,
        y_value: np.ndarray, held_out: np.ndarray, horizon_days: float) -> Dict:
    """The stack's parameters from per-user arrays of the labelled training users:
    the model's churn logit and predicted value, the user features, the labels, and
    whether the user was held out of the model's training. ``{}`` without users."""
    n = len(y_churn)
    if n == 0:
        return {}
    y_churn = np.asarray(y_churn, np.float64)
    y_value = np.nan_to_num(np.asarray(y_value, np.float64))
    held_out = np.asarray(held_out, bool)
    ft = torch.as_tensor(np.asarray(feats, np.float32))
    # 1. feature models on every labelled user
    xc = churn_basis(ft).double().numpy()
    c_mean, c_std = _standardise(xc)
    c_coef, c_int = _logistic((xc - c_mean) / c_std, y_churn, 1.0)
    xv = value_basis(ft, horizon_days).double().numpy()
    v_mean, v_std = _standardise(xv)
    v_coef, v_int = _ridge((xv - v_mean) / v_std, y_value, 1.0)
    g = ((xc - c_mean) / c_std) @ c_coef + c_int
    h = ((xv - v_mean) / v_std) @ v_coef + v_int
    # 2. blends on the held-out users (their model outputs are out of sample)
    pos = int((y_churn[held_out] > 0.5).sum())
    neg = int(held_out.sum()) - pos
    on = held_out if min(pos, neg) >= MIN_HELD_OUT else np.ones(n, bool)
    b_coef, b_int = _logistic(np.stack([churn_logit, g], 1)[on], y_churn[on], 100.0)
    von = held_out if int((y_value[held_out] > 0).sum()) >= MIN_HELD_OUT else np.ones(n, bool)
    w_coef, w_int = _ridge(np.stack([value, h], 1)[von], y_value[von], 1e-6)
    return {"horizon_days": float(horizon_days),
            "churn": {"mean": c_mean.tolist(), "std": c_std.tolist(), "coef": c_coef.tolist(), "intercept": c_int,
                      "blend": b_coef.tolist(), "blend_intercept": b_int, "blend_users": int(on.sum())},
            "value": {"mean": v_mean.tolist(), "std": v_std.tolist(), "coef": v_coef.tolist(), "intercept": v_int,
                      "blend": w_coef.tolist(), "blend_intercept": w_int, "blend_users": int(von.sum())}}


def _linear(p: Dict, x: torch.Tensor) -> torch.Tensor:
    t = lambda k: torch.tensor(p[k], dtype=torch.float32, device=x.device)  # noqa: E731
    return ((x - t("mean")) / t("std")) @ t("coef") + float(p["intercept"])


def churn_logit(params: Optional[Dict], model_logit: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """The stacked churn logit (the model's own without a stack)."""
    if not params or "churn" not in params:
        return model_logit.float()
    p = params["churn"]
    g = _linear(p, churn_basis(feats))
    return float(p["blend_intercept"]) + p["blend"][0] * model_logit.float() + p["blend"][1] * g


def value(params: Optional[Dict], model_value: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """The stacked value prediction, >= 0 (the model's own without a stack)."""
    if not params or "value" not in params:
        return model_value.float().clamp(min=0)
    p = params["value"]
    h = _linear(p, value_basis(feats, params["horizon_days"]))
    return (float(p["blend_intercept"]) + p["blend"][0] * model_value.float() + p["blend"][1] * h).clamp(min=0)
