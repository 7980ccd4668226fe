"""BG/NBD and Gamma-Gamma against the reference implementation (lifetimes 0.11.3,
the dev extras) on generated data: fitted parameters and every prediction."""

import numpy as np
import pandas as pd
import pytest

from lifecycle_recs.ml import btyd

lifetimes = pytest.importorskip(
    "lifetimes", reason="the reference implementation comes with the dev extras"
)
from lifetimes import BetaGeoFitter, GammaGammaFitter  # noqa: E402
from lifetimes.generate_data import beta_geometric_nbd_model  # noqa: E402


@pytest.fixture(scope="module")
def customers():
    np.random.seed(3)  # lifetimes' generator draws from numpy's global state
    return beta_geometric_nbd_model(T=120, r=0.5, alpha=10, a=0.8, b=2.5, size=2500)


def test_bgnbd_fit_and_predictions_match_lifetimes(customers):
    d = customers
    ref = BetaGeoFitter().fit(d.frequency, d.recency, d["T"])
    ours = btyd.fit_bgnbd(d.frequency, d.recency, d["T"])
    for k, v in ours.to_dict().items():
        assert v == pytest.approx(ref.params_[k], rel=1e-3), k
    ours = btyd.BGNBD(**ref.params_.to_dict())  # the predictions at the same parameters
    args = (d.frequency.to_numpy(), d.recency.to_numpy(), d["T"].to_numpy())
    np.testing.assert_allclose(
        btyd.p_alive(ours, *args), ref.conditional_probability_alive(*args), atol=1e-4
    )
    np.testing.assert_allclose(
        btyd.expected_transactions(ours, 30, *args),
        ref.conditional_expected_number_of_purchases_up_to_time(30, *args),
        rtol=1e-3,
        atol=1e-5,
    )
    # a new customer: P(no transaction in t) is lifetimes' unconditional P(X(t) = 0)
    assert btyd.p_no_transaction(ours, 30, [0], [0], [0])[0] == pytest.approx(
        ref.probability_of_n_purchases_up_to_time(30, 0), rel=1e-6
    )
    # the true parameters are recovered (2,500 customers)
    assert ours.r == pytest.approx(0.5, rel=0.25) and ours.a == pytest.approx(0.8, rel=0.4)


def test_bgnbd_fit_on_counts_of_distinct_summaries_equals_fit_on_customers(customers):
    d = customers
    g = d.groupby(["frequency", "recency", "T"]).size().reset_index(name="n")
    assert len(g) < len(d)
    a = btyd.fit_bgnbd(d.frequency, d.recency, d["T"])
    b = btyd.fit_bgnbd(g.frequency, g.recency, g["T"], g.n)
    for k in a.to_dict():
        assert getattr(a, k) == pytest.approx(getattr(b, k), rel=1e-4)


def test_gamma_gamma_fit_and_spend_match_lifetimes():
    rng = np.random.default_rng(1)
    x = rng.integers(1, 12, 2000)
    nu = rng.gamma(5.0, 1 / 20.0, len(x))  # q = 5, v = 20
    m = np.array([rng.gamma(3.0, 1 / n, int(k)).mean() for n, k in zip(nu, x)])  # p = 3
    ref = GammaGammaFitter().fit(pd.Series(x), pd.Series(m))
    ours = btyd.fit_gamma_gamma(x, m)
    for k, v in ours.to_dict().items():
        assert v == pytest.approx(ref.params_[k], rel=1e-3), k
    np.testing.assert_allclose(
        btyd.expected_spend(ours, x, m),
        ref.conditional_expected_average_profit(pd.Series(x), pd.Series(m)),
        rtol=1e-4,
    )
    assert btyd.expected_spend(ours, np.array([0]), np.array([0.0]))[0] == pytest.approx(
        ours.p * ours.v / (ours.q - 1)
    )


def test_fits_name_what_is_missing():
    with pytest.raises(ValueError, match="at least one customer"):
        btyd.fit_bgnbd([], [], [])
    with pytest.raises(ValueError, match="repeat transaction"):
        btyd.fit_gamma_gamma([0, 0], [0.0, 0.0])


def _simulate(n, r, alpha, a, b, T, H, seed):
    """BG/NBD customers: a first purchase at a uniform time in (0, T) (the model's
    time 0), repeat purchases at rate lambda, dropout with probability p after each
    repeat purchase. Observed on (0, T]; whether they buy in (T, T + H]."""
    rng = np.random.default_rng(seed)
    lam, p, birth = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n), rng.uniform(0, T, n)
    out = []
    for li, pi, b0 in zip(lam, p, birth):
        t, times = b0, []
        while True:
            t += rng.exponential(1 / li)
            if t > T + H:
                break
            times.append(t)
            if rng.random() < pi:
                break
        seen = [s for s in times if s <= T]
        out.append(
            (
                len(seen),
                (seen[-1] - b0) if seen else 0.0,
                T - b0,
                not any(T < s <= T + H for s in times),
            )
        )
    return pd.DataFrame(out, columns=["x", "t_x", "T", "silent"])


def test_p_no_transaction_is_calibrated_on_simulated_customers():
    """Against the truth of the generating process: by decile of the predicted
    probability (true parameters), the observed share of silent customers agrees."""
    prm = btyd.BGNBD(r=0.8, alpha=12.0, a=0.9, b=3.0)
    d = _simulate(6000, prm.r, prm.alpha, prm.a, prm.b, 120.0, 30.0, seed=5)
    pred = btyd.p_no_transaction(prm, 30.0, d.x, d.t_x, d["T"])
    assert pred.mean() == pytest.approx(d.silent.mean(), abs=0.02)
    bins = pd.qcut(pred, 5, labels=False, duplicates="drop")
    for _, g in pd.DataFrame({"p": pred, "y": d.silent.to_numpy(), "b": bins}).groupby("b"):
        assert g.p.mean() == pytest.approx(g.y.mean(), abs=0.06)
