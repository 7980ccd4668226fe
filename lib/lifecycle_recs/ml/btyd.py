"""The standard "buy till you die" baselines, on numpy arrays (no Spark):
BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way") for
the number of future transactions and P(alive), and Gamma-Gamma (Fader, Hardie
& Lee 2005, "RFM and CLV") for the spend per transaction.

Why written here: the library these come from, ``lifetimes`` 0.11.3, is
archived (its authors point to PyMC-Marketing, which brings PyMC and PyTensor:
far too heavy for a nightly job's wheel), and none of the Databricks runtime's
libraries has them. The likelihoods are the papers' closed forms, maximised with
scipy; ``tests/ml/test_btyd.py`` checks the fitted parameters and predictions
against ``lifetimes`` on generated data.

Inputs are per-customer summaries in days, as ``lifetimes`` defines them:
``x`` repeat transactions (transaction days after the first), ``t_x`` the age
at the last one, ``T`` the age at the end of the history, ``m`` the mean spend
of the repeat transactions. Fits take a ``weight`` per row, so the caller can
pass distinct summaries with their counts (sufficient statistics) instead of
one row per customer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional

import numpy as np
from scipy import optimize, special


@dataclass(frozen=True)
class BGNBD:
    r: float
    alpha: float
    a: float
    b: float

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    v: float

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)


def _arrays(*xs):
    return [np.asarray(x, dtype=np.float64) for x in xs]


def bgnbd_loglik(params, x, t_x, T) -> np.ndarray:
    """Per-customer log-likelihood of BG/NBD at ``params`` = (r, alpha, a, b)."""
    r, alpha, a, b = params
    x, t_x, T = _arrays(x, t_x, T)
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = (
        special.gammaln(a + b)
        + special.gammaln(b + x)
        - special.gammaln(b)
        - special.gammaln(a + b + x)
    )
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return a1 + a2 + np.logaddexp(a3, a4)


def _fit(negll, n_params: int, x0: Optional[np.ndarray] = None) -> np.ndarray:
    """Minimise over log-parameters (all parameters are positive); best of a few starts."""
    starts = [np.zeros(n_params)] if x0 is None else [np.log(x0)]
    starts += [np.full(n_params, v) for v in (-1.0, 1.0)]
    best = None
    for s in starts:
        res = optimize.minimize(negll, s, method="L-BFGS-B", bounds=[(-12, 12)] * n_params)
        if best is None or (np.isfinite(res.fun) and res.fun < best.fun):
            best = res
    return np.exp(best.x)


def fit_bgnbd(x, t_x, T, weight=None, penalizer: float = 0.0) -> BGNBD:
    """Maximum-likelihood BG/NBD parameters (weighted rows: distinct summaries and
    their counts). ``penalizer``: an L2 penalty on the parameters, as ``lifetimes``'."""
    x, t_x, T = _arrays(x, t_x, T)
    w = np.ones_like(x) if weight is None else np.asarray(weight, np.float64)
    if len(x) == 0 or w.sum() <= 0:
        raise ValueError("BG/NBD needs at least one customer")
    n = w.sum()

    def negll(logp):
        p = np.exp(logp)
        ll = bgnbd_loglik(p, x, t_x, T)
        return -(w * ll).sum() / n + penalizer * (p**2).sum()

    return BGNBD(*(float(v) for v in _fit(negll, 4)))


def p_alive(m: BGNBD, x, t_x, T) -> np.ndarray:
    """P(the customer is still active at T | x, t_x, T)."""
    x, t_x, T = _arrays(x, t_x, T)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_ratio = (
            np.log(m.a)
            - np.log(np.maximum(m.b + x - 1, 1e-300))
            + (m.r + x) * (np.log(m.alpha + T) - np.log(m.alpha + t_x))
        )
        return np.where(x > 0, 1.0 / (1.0 + np.exp(np.minimum(log_ratio, 700))), 1.0)


def expected_transactions(m: BGNBD, t: float, x, t_x, T) -> np.ndarray:
    """E[transactions in (T, T + t] | x, t_x, T] (the paper's equation 10)."""
    x, t_x, T = _arrays(x, t_x, T)
    r, alpha, a, b = m.r, m.alpha, m.a, m.b
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
        num = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
        first = (a + b + x - 1) / (a - 1)
        out = first * num * p_alive(m, x, t_x, T)
    # where the closed form breaks down (a <= 1, or hyp2f1 overflows), the first-order
    # approximation: alive x posterior mean rate x t
    approx = p_alive(m, x, t_x, T) * (r + x) / (alpha + T) * t
    return np.where(np.isfinite(out) & (out >= 0), out, approx)


def p_no_transaction(m: BGNBD, t: float, x, t_x, T) -> np.ndarray:
    """P(no transaction in (T, T + t] | x, t_x, T): dead, or alive and silent (a
    customer can only drop out right after a transaction, and the posterior rate of
    an alive customer is Gamma(r + x, alpha + T))."""
    x, t_x, T = _arrays(x, t_x, T)
    pa = p_alive(m, x, t_x, T)
    silent = ((m.alpha + T) / (m.alpha + T + t)) ** (m.r + x)
    return (1.0 - pa) + pa * silent


def gamma_gamma_loglik(params, x, m) -> np.ndarray:
    """Per-customer log-likelihood of the mean spend ``m`` over ``x`` >= 1 transactions."""
    p, q, v = params
    x, m = _arrays(x, m)
    return (
        special.gammaln(p * x + q)
        - special.gammaln(p * x)
        - special.gammaln(q)
        + q * np.log(v)
        + (p * x - 1) * np.log(m)
        + (p * x) * np.log(x)
        - (p * x + q) * np.log(x * m + v)
    )


def fit_gamma_gamma(x, m, weight=None, penalizer: float = 0.0) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma parameters from customers with x >= 1 and m > 0."""
    x, m = _arrays(x, m)
    w = np.ones_like(x) if weight is None else np.asarray(weight, np.float64)
    ok = (x >= 1) & (m > 0) & (w > 0)
    x, m, w = x[ok], m[ok], w[ok]
    if len(x) == 0:
        raise ValueError(
            "Gamma-Gamma needs at least one customer with a repeat transaction of positive value"
        )
    n = w.sum()

    def negll(logp):
        prm = np.exp(logp)
        return -(w * gamma_gamma_loglik(prm, x, m)).sum() / n + penalizer * (prm**2).sum()

    return GammaGamma(*(float(v) for v in _fit(negll, 3)))


def expected_spend(g: GammaGamma, x, m) -> np.ndarray:
    """E[spend per transaction | x, m]: a weighted mean of the population mean
    p v / (q - 1) and the customer's own mean (population mean where x = 0)."""
    x, m = _arrays(x, m)
    pop = g.p * g.v / max(g.q - 1.0, 1e-6)
    m = np.where(x > 0, m, 0.0)
    w = (g.q - 1.0) / (g.p * x + g.q - 1.0)
    return np.where(x > 0, w * pop + (1 - w) * m, pop)


def expected_value(
    purchase: Optional[BGNBD], spend: Optional[GammaGamma], t: float, x, t_x, T, m
) -> np.ndarray:
    """E[spend in (T, T + t]]: the purchase-days BG/NBD's expected purchase days times
    Gamma-Gamma's spend per purchase day (the customer's own mean ``m`` without a
    Gamma-Gamma fit). ``T`` NaN (never bought) or no purchase fit: 0."""
    x, t_x, T = _arrays(x, t_x, T)
    m = np.nan_to_num(np.asarray(m, np.float64))
    out = np.zeros(len(x), np.float64)
    bought = np.isfinite(T)
    if purchase is None or not bought.any():
        return out
    xb = np.nan_to_num(x[bought])
    n_next = expected_transactions(purchase, t, xb, np.nan_to_num(t_x[bought]), T[bought])
    per = expected_spend(spend, xb, m[bought]) if spend is not None else m[bought]
    out[bought] = n_next * per
    return out
