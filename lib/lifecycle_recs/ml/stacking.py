"""Second stage: the sequence model's churn and value stacked with the RFM/BTYD view of
the same history.

The sequence model ranks users by churn about as well as days-since-last-event and
its value head (fitted on log1p(value)) is not a least-squares fit of value, so
squared error is dominated by the few large spenders. Two small models repair that,
fitted in the train stage on the training snapshot (never on the night evaluated):

1. a *feature model* on the user features alone (``features.USER_FEATURES``, no
   model output): an L2 logistic regression on a quadratic basis of the features
   for churn, a ridge regression on spend-rate terms for value (raw scale: squared
   error is what it minimises); fitted on all labelled training users for scoring,
   and cross-fitted (K folds) for the blend's inputs;
2. a *blend* of the model's output and the feature model, 3 coefficients each
   (value: non-negative weights, the intercept set so that the clipped blend adds up
   to the actual total, plus a 4th for BG/NBD x Gamma-Gamma's own
   prediction where the rows carry it, ``features.STACK_FEATURES``), fitted on the
   users held out of the model's training (the sequence model's outputs there are
   out of sample); too few held-out labels (value: fewer than
   ``MIN_HELD_OUT_VALUE`` spenders) -> all labelled users;
3. a *check*: each part is kept only where its blend, fitted out of fold on the
   blend users, beats the model's own output there; otherwise scoring passes the
   model's output through (``kept: false``, the figures in ``out_of_fold``). Where
   BG/NBD x Gamma-Gamma is a blend input and alone beats both the model and the
   blend there, the value is the baseline's (weights 0, 0, 1; ``chosen: baseline``).

Everything is a small JSON dict in the artifact (``config.json`` key ``stack``) and
is applied in torch on the scoring device (:func:`churn_logit`, :func:`value`).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import torch

from lifecycle_recs.ml.features import STACK_FEATURES, USER_FEATURES

_F = {name: i for i, name in enumerate(USER_FEATURES)}
_GG = len(USER_FEATURES) + STACK_FEATURES.index("bgnbd_gg_value")  # the feats column of BG/NBD x GG
# the held-out users must hold this many of each churn class (and positive values)
# for the blend to be fitted on them alone
MIN_HELD_OUT = 20
# the value blend is fitted on the held-out users only where they hold this many users
# with a positive value: squared error is carried by the few largest spenders, and a
# 10% slice of a small snapshot holds too few of them to fit weights on (the demo's
# 126 held-out users: blend RMSE 120 vs the model's 111 out of fold); else on all
# labelled users (the model's outputs are then in sample for most of them)
MIN_HELD_OUT_VALUE = 1000
K_FOLDS = 5  # cross-fitting of the feature models and the out-of-fold check of the blends
BLEND_C = 10.0  # inverse L2 strength of the churn blend (two inputs on the logit scale)


def _padded(feats: torch.Tensor) -> torch.Tensor:
    """The features as float, cut or zero-padded to ``USER_FEATURES`` (older artifacts)."""
    f = feats.float()
    n = min(f.shape[1], len(USER_FEATURES))
    return torch.nn.functional.pad(f[:, :n], (0, len(USER_FEATURES) - n))


def churn_basis(feats: torch.Tensor) -> torch.Tensor:
    """[B, m]: the features (log1p scale), squares of the RFM ones, and recency
    crossed with activity, tenure and P(alive)."""
    f = _padded(feats)
    r = f[:, _F["days_since_last_event"]]
    cross = torch.stack(
        [r * f[:, _F["active_days"]], r * f[:, _F["tenure_days"]], r * f[:, _F["bgnbd_p_alive"]]],
        dim=1,
    )
    return torch.cat([f, f[:, :5] ** 2, cross], dim=1)


def value_basis(feats: torch.Tensor, horizon_days: float) -> torch.Tensor:
    """[B, m] on the value's own scale: spend per day of tenure x H, that x P(alive),
    spend per active day x expected active days in H, spend per active day x P(alive)."""
    f = _padded(feats)
    money = torch.expm1(f[:, _F["monetary_total"]])
    tenure = torch.expm1(f[:, _F["tenure_days"]])
    active = torch.expm1(f[:, _F["active_days"]]).clamp(min=1.0)
    alive = f[:, _F["bgnbd_p_alive"]]
    exp_days = torch.expm1(f[:, _F["bgnbd_expected_days"]])
    rate = money / (tenure + 1.0) * float(horizon_days)
    per_day = money / active
    return torch.stack([rate, rate * alive, per_day * exp_days, per_day * alive], dim=1)


def baseline_value(feats):
    """[B]: BG/NBD x Gamma-Gamma's expected spend (``features.spend_features``, the
    column after the model's features; 0 where the feats do not carry it)."""
    if isinstance(feats, torch.Tensor):
        f = feats.float()
        return (
            torch.expm1(f[:, _GG]) if f.shape[1] > _GG else torch.zeros(f.shape[0], device=f.device)
        )
    f = np.asarray(feats, np.float64)
    return np.expm1(f[:, _GG]) if f.shape[1] > _GG else np.zeros(len(f))


def uses_baseline_value(params: Optional[Dict]) -> bool:
    """Whether the stack's value blend, as kept, reads BG/NBD x Gamma-Gamma (so the
    scoring rows need the purchase-days summary columns)."""
    v = (params or {}).get("value") or {}
    return bool(v.get("kept", True)) and len(v.get("blend", ())) > 2 and v["blend"][2] > 0


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


def _nonneg(x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, float]:
    """Least squares with non-negative slopes and a free intercept: a blend of two
    collinear predictions that cannot trade one against the other with opposite signs."""
    from scipy.optimize import lsq_linear

    a = np.column_stack([x, np.ones(len(y))])
    lo = np.r_[np.zeros(x.shape[1]), -np.inf]
    sol = lsq_linear(a, y, bounds=(lo, np.full(x.shape[1] + 1, np.inf))).x
    return sol[:-1], float(sol[-1])


def _nonneg_total(x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, float]:
    """``_nonneg``, then the intercept moved so that the blend as scored (clipped at 0)
    adds up to these users' actual total. The least-squares intercept is often
    negative (the demo's: -6.0), and the clip gives back the mass of every negative
    prediction: the demo's stacked total was 4% above the actual on its own training
    users (measured 2026-12-04)."""
    from scipy.optimize import brentq

    coef, intercept = _nonneg(x, y)
    z, total = x @ coef, float(y.sum())
    if total <= 0 or len(y) == 0:
        return coef, intercept
    # sum(max(a + z, 0)) is continuous and non-decreasing in a: 0 at -max(z), above the
    # total where every term exceeds the mean of y
    return coef, float(
        brentq(
            lambda a: float(np.maximum(a + z, 0.0).sum()) - total,
            -float(z.max()),
            -float(z.min()) + float(y.mean()) + 1.0,
            xtol=1e-9,
        )
    )


def _churn_features(x: np.ndarray, y: np.ndarray) -> Dict:
    mean, std = _standardise(x)
    coef, intercept = _logistic((x - mean) / std, y, 1.0)
    return {"mean": mean, "std": std, "coef": coef, "intercept": intercept}


def _value_features(x: np.ndarray, y: np.ndarray) -> Dict:
    mean, std = _standardise(x)
    coef, intercept = _ridge((x - mean) / std, y, 1.0)
    return {"mean": mean, "std": std, "coef": coef, "intercept": intercept}


def _np_linear(p: Dict, x: np.ndarray) -> np.ndarray:
    return ((x - p["mean"]) / p["std"]) @ p["coef"] + p["intercept"]


def _folds(n: int, k: int, seed: int) -> np.ndarray:
    """A fold id per row, balanced and seeded."""
    return np.random.default_rng(seed).permutation(n) % k


def _out_of_fold(fit_one, predict, x: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each row predicted by a model fitted without its fold."""
    out = np.zeros(len(y), np.float64)
    for k in np.unique(folds):
        te = folds == k
        out[te] = predict(fit_one(x[~te], y[~te]), x[te])
    return out


def _log_loss(y: np.ndarray, logit: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0.0, logit) - y * logit))


def _auc(y: np.ndarray, s: np.ndarray) -> Optional[float]:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.mean() < 1 else None


def fit(
    churn_logit: np.ndarray,
    value: np.ndarray,
    feats: np.ndarray,
    y_churn: np.ndarray,
    y_value: np.ndarray,
    held_out: np.ndarray,
    horizon_days: float,
    seed: int = 0,
) -> Dict:
    """The stack's parameters from per-user arrays of the labelled training users:
    the model's churn logit and predicted value, the user features, the labels, and
    whether the user was held out of the model's training. ``{}`` without users.

    The feature models' inputs to the blends are cross-fitted (each user's from a
    feature model fitted without its fold), so the blend does not over-trust an
    in-sample fit; the feature models kept for scoring are fitted on all users.
    Each part (churn, value) is then *kept* only where its blend beats the model's
    own output out of fold on the blend users (churn: lower log loss and ROC AUC not
    below; value: lower squared error); a part not kept passes the model through."""
    n = len(y_churn)
    if n == 0:
        return {}
    churn_logit = np.asarray(churn_logit, np.float64)
    value = np.asarray(value, np.float64)
    y_churn = np.asarray(y_churn, np.float64)
    y_value = np.nan_to_num(np.asarray(y_value, np.float64))
    held_out = np.asarray(held_out, bool)
    ft = torch.as_tensor(np.asarray(feats, np.float32))
    xc = churn_basis(ft).double().numpy()
    xv = value_basis(ft, horizon_days).double().numpy()
    folds = _folds(n, min(K_FOLDS, n), seed)
    # 1. feature models: cross-fitted for the blends, on every labelled user for scoring
    churn_p, value_p = _churn_features(xc, y_churn), _value_features(xv, y_value)
    one_class = len(np.unique(y_churn)) < 2
    g = (
        np.full(n, churn_p["intercept"])
        if one_class or n < 2 * K_FOLDS
        else _out_of_fold(_churn_features, _np_linear, xc, y_churn, folds)
    )
    h = (
        _np_linear(value_p, xv)
        if n < 2 * K_FOLDS
        else _out_of_fold(_value_features, _np_linear, xv, y_value, folds)
    )
    # 2. blends on the held-out users (their model outputs are out of sample)
    pos = int((y_churn[held_out] > 0.5).sum())
    neg = int(held_out.sum()) - pos
    on = held_out if min(pos, neg) >= MIN_HELD_OUT else np.ones(n, bool)
    bx, by = np.stack([churn_logit, g], 1)[on], y_churn[on]
    b_fit = lambda x, y: _logistic(x, y, BLEND_C)  # noqa: E731
    b_coef, b_int = b_fit(bx, by)
    von = held_out if int((y_value[held_out] > 0).sum()) >= MIN_HELD_OUT_VALUE else np.ones(n, bool)
    gg = baseline_value(feats)
    # the standard baseline's own prediction joins the blend where the rows carry it
    vx, vy = np.stack([value, h, gg] if (gg > 0).any() else [value, h], 1)[von], y_value[von]
    w_coef, w_int = _nonneg_total(vx, vy)
    # 3. keep a part only where its blend beats the model out of fold on the blend users
    k_on = _folds(len(by), min(K_FOLDS, len(by)), seed + 1)
    lin = lambda p, x: x @ p[0] + p[1]  # noqa: E731
    oof_c = (
        _out_of_fold(b_fit, lin, bx, by, k_on)
        if len(by) >= 2 * K_FOLDS and len(np.unique(by)) == 2
        else None
    )
    churn_oof = {
        "users": int(len(by)),
        "model_log_loss": _log_loss(by, bx[:, 0]),
        "model_auc": _auc(by, bx[:, 0]),
    }
    if oof_c is not None:
        churn_oof.update(stack_log_loss=_log_loss(by, oof_c), stack_auc=_auc(by, oof_c))
    keep_churn = (
        oof_c is not None
        and churn_oof["stack_log_loss"] < churn_oof["model_log_loss"]
        and not churn_oof["stack_auc"] < churn_oof["model_auc"]
    )
    k_von = _folds(len(vy), min(K_FOLDS, len(vy)), seed + 2)
    oof_v = _out_of_fold(_nonneg_total, lin, vx, vy, k_von) if len(vy) >= 2 * K_FOLDS else None
    value_oof = {"users": int(len(vy)), "model_rmse": float(np.sqrt(np.mean((vx[:, 0] - vy) ** 2)))}
    if oof_v is not None:
        value_oof["stack_rmse"] = float(np.sqrt(np.mean((np.maximum(oof_v, 0) - vy) ** 2)))
    keep_value = oof_v is not None and value_oof["stack_rmse"] < value_oof["model_rmse"]
    if vx.shape[1] > 2:  # the baseline alone is a candidate too: the blend must beat it out of fold
        value_oof["baseline_rmse"] = float(np.sqrt(np.mean((vx[:, 2] - vy) ** 2)))
        if value_oof["baseline_rmse"] < min(
            value_oof["model_rmse"], value_oof.get("stack_rmse", np.inf)
        ):
            w_coef, w_int, keep_value = np.array([0.0, 0.0, 1.0]), 0.0, True
            value_oof["chosen"] = "baseline"
    js = lambda p: {
        k: (v.tolist() if isinstance(v, np.ndarray) else float(v)) for k, v in p.items()
    }  # noqa: E731
    return {
        "horizon_days": float(horizon_days),
        "churn": {
            **js(churn_p),
            "blend": b_coef.tolist(),
            "blend_intercept": b_int,
            "blend_users": int(on.sum()),
            "kept": bool(keep_churn),
            "out_of_fold": churn_oof,
        },
        "value": {
            **js(value_p),
            "blend": w_coef.tolist(),
            "blend_intercept": w_int,
            "blend_users": int(von.sum()),
            "kept": bool(keep_value),
            "out_of_fold": value_oof,
        },
    }


def _linear(p: Dict, x: torch.Tensor) -> torch.Tensor:
    t = lambda k: torch.tensor(p[k], dtype=torch.float32, device=x.device)  # noqa: E731
    return ((x - t("mean")) / t("std")) @ t("coef") + float(p["intercept"])


def churn_logit(
    params: Optional[Dict], model_logit: torch.Tensor, feats: torch.Tensor
) -> torch.Tensor:
    """The stacked churn logit (the model's own without a stack)."""
    if not params or "churn" not in params or not params["churn"].get("kept", True):
        return model_logit.float()
    p = params["churn"]
    g = _linear(p, churn_basis(feats))
    return float(p["blend_intercept"]) + p["blend"][0] * model_logit.float() + p["blend"][1] * g


def value(params: Optional[Dict], model_value: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """The stacked value prediction, >= 0 (the model's own without a stack)."""
    if not params or "value" not in params or not params["value"].get("kept", True):
        return model_value.float().clamp(min=0)
    p = params["value"]
    h = _linear(p, value_basis(feats, params["horizon_days"]))
    out = float(p["blend_intercept"]) + p["blend"][0] * model_value.float() + p["blend"][1] * h
    if len(p["blend"]) > 2:
        out = out + p["blend"][2] * baseline_value(feats)
    return out.clamp(min=0)
