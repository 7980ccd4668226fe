"""Lapsed users' churn from their silence (ml/lapsed.py): the fit against sklearn, its
guards, and that scoring and explanations apply it past the threshold only."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from lifecycle_recs.config import RecommendConf
from lifecycle_recs.ml import lapsed
from lifecycle_recs.ml.features import USER_FEATURES
from lifecycle_recs.ml.scorer import load_scorer, score_batch
from tests.helpers import make_artifact, scoring_users


def lapsed_users(n, seed, a=-2.0, b=1.1, c=0.6, lo=60, hi=300):
    """Feature rows of lapsed users (silence, tenure, active days) and churn drawn from
    the silence model's own form."""
    rng = np.random.default_rng(seed)
    feats = np.zeros((n, len(USER_FEATURES)), np.float32)
    silence = rng.uniform(lo, hi, n)
    tenure = silence + rng.uniform(10, 300, n)
    feats[:, 0], feats[:, 2] = np.log1p(silence), np.log1p(tenure)
    feats[:, 4] = np.log1p(1 + rng.poisson(rng.lognormal(1.5, 0.8, n)))
    z = a + b * feats[:, 0] + c * (feats[:, 4] - feats[:, 2])
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    return feats, y


def test_fit_on_counts_equals_a_logistic_regression_on_the_users():
    f, y = lapsed_users(4000, 0)
    tail = lapsed.TailCounts(60)
    for i in range(0, 4000, 700):  # batch by batch, as the train stage streams the feed
        tail.add(f[i : i + 700], y[i : i + 700], np.ones(len(f[i : i + 700])))
    p = lapsed.fit(*tail.arrays(), 60)
    x = np.c_[
        np.round(f[:, 0].astype(np.float64), 3), np.round((f[:, 4] - f[:, 2]).astype(np.float64), 2)
    ]
    ref = LogisticRegression(C=1e9, max_iter=10000).fit(x, y)
    assert p["intercept"] == pytest.approx(float(ref.intercept_[0]), abs=5e-3)
    assert p["slope"] == pytest.approx(float(ref.coef_[0, 0]), abs=5e-3)
    assert p["rate_slope"] == pytest.approx(float(ref.coef_[0, 1]), abs=5e-3)
    assert p["slope"] > 0.5 and p["rate_slope"] > 0.2  # near the drawn 1.1 and 0.6
    assert p["silence_z"] > lapsed.MIN_SILENCE_Z and p["applied"]
    assert p["users"] == 4000 and p["returned"] == int((y == 0).sum())
    assert p["min_log_silence"] == pytest.approx(math.log1p(60))


def test_the_silence_slopes_standard_error_matches_its_spread_over_draws():
    """The Wald z gate: slope / se, with se from the Hessian; over 60 independent draws
    the slopes spread as that se says (within 25%)."""
    slopes, ses = [], []
    for seed in range(60):
        f, y = lapsed_users(1500, 100 + seed)
        tail = lapsed.TailCounts(60)
        tail.add(f, y, np.ones(len(f)))
        p = lapsed.fit(*tail.arrays(), 60)
        slopes.append(p["slope"])
        ses.append(p["slope"] / p["silence_z"])
    assert np.std(slopes, ddof=1) == pytest.approx(np.mean(ses), rel=0.25)


def test_only_labelled_users_past_the_threshold_are_counted():
    tail = lapsed.TailCounts(30)
    f = np.zeros((5, len(USER_FEATURES)), np.float32)
    f[:, 0] = np.log1p([10.0, 31.0, 31.0, 90.0, 90.0])
    tail.add(f, np.array([1.0, 1.0, 0.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0, 1.0, 0.0]))
    xs, n, k = tail.arrays()
    assert list(n) == [2.0, 1.0] and list(k) == [1.0, 1.0]
    assert np.allclose(xs[:, 0], np.round(np.log1p([31.0, 90.0]), 3)) and np.allclose(xs[:, 1], 0.0)


def test_the_churn_probability_never_falls_as_the_silence_grows():
    """Data where returners are the long-silent ones: the slope stays at its bound 0."""
    f, y = lapsed_users(3000, 1, a=4.0, b=-0.5, c=0.0)
    f[:, 4] = f[:, 2]  # every user the same rate: silence alone
    tail = lapsed.TailCounts(60)
    tail.add(f, y, np.ones(len(f)))
    p = lapsed.fit(*tail.arrays(), 60)
    assert p["slope"] == 0.0
    assert 1 / (1 + math.exp(-p["intercept"])) == pytest.approx(y.mean(), abs=1e-3)
    # and where silence does not predict coming back, the model is not applied: the logit passes
    # through
    assert p["silence_z"] == 0.0 and not p["applied"]
    feats = torch.as_tensor(f[:5])
    assert lapsed.churn_logit(p, torch.arange(5.0), feats).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("returned", [0, 4])
def test_too_few_returners_fit_nothing(returned):
    f = np.zeros((200, len(USER_FEATURES)), np.float32)
    f[:, 0] = np.log1p(np.linspace(61, 300, 200))
    y = np.ones(200)
    y[:returned] = 0
    tail = lapsed.TailCounts(60)
    tail.add(f, y, np.ones(200))
    assert lapsed.fit(*tail.arrays(), 60) is None
    assert lapsed.churn_logit(None, torch.zeros(3), torch.zeros(3, 4)).tolist() == [0.0, 0.0, 0.0]


def test_no_user_silent_long_enough_fits_nothing():
    # a short history: no training user is past the threshold (train crashed on this before)
    tail = lapsed.TailCounts(60)
    tail.add(np.zeros((5, len(USER_FEATURES)), np.float32), np.ones(5), np.ones(5))
    assert tail.arrays()[1].size == 0
    assert lapsed.fit(*tail.arrays(), 60) is None


def test_only_users_past_the_threshold_get_the_silence_model():
    params = {"min_log_silence": math.log1p(60), "intercept": -1.0, "slope": 1.0, "rate_slope": 0.5}
    feats = torch.zeros(4, len(USER_FEATURES))
    feats[:, 0] = torch.log1p(torch.tensor([5.0, 59.0, 61.0, 200.0]))
    feats[:, 2], feats[:, 4] = math.log1p(300.0), math.log1p(20.0)
    logit = torch.tensor([0.3, -0.2, 0.7, 0.1])
    got = lapsed.churn_logit(params, logit, feats)
    rate = 0.5 * (math.log1p(20.0) - math.log1p(300.0))
    assert got[:2].tolist() == pytest.approx([0.3, -0.2])
    assert got[2:].tolist() == pytest.approx(
        [-1 + math.log1p(61.0) + rate, -1 + math.log1p(200.0) + rate], abs=1e-5
    )
    older = {k: v for k, v in params.items() if k != "rate_slope"}  # silence only
    assert lapsed.churn_logit(older, logit, feats)[3].item() == pytest.approx(
        -1 + math.log1p(200.0), abs=1e-5
    )


def test_held_out_check_compares_both_on_the_lapsed_users_only():
    params = {"min_log_silence": math.log1p(60), "intercept": -3.0, "slope": 1.5}
    feats = torch.zeros(6, len(USER_FEATURES))
    feats[:, 0] = torch.log1p(torch.tensor([5.0, 70.0, 80.0, 150.0, 250.0, 300.0]))
    y = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    model_logit = torch.tensor([5.0, 3.0, 0.0, 0.0, -1.0, 0.0])
    out = lapsed.held_out_check(params, [(model_logit, feats, y, torch.ones(6))])
    assert out["users"] == 5 and out["returned"] == 1
    assert out["lapsed_roc_auc"] == 1.0 and out["model_roc_auc"] < 0.5
    assert out["lapsed_log_loss"] < out["model_log_loss"]


def test_scoring_and_explanations_apply_the_silence_model(tmp_path):
    params = {
        "min_silence_days": 60.0,
        "min_log_silence": math.log1p(60),
        "intercept": -2.0,
        "slope": 1.0,
        "rate_slope": 0.5,
    }
    plain = load_scorer(make_artifact(tmp_path / "a"), "cpu")
    with_lapsed = load_scorer(make_artifact(tmp_path / "b", config={"lapsed": params}), "cpu")
    users = scoring_users(20, seed=2)
    users["days_since_last_event"] = np.linspace(0.0, 150.0, 20)
    conf = RecommendConf(k=5)
    a, b = score_batch(users, plain, conf), score_batch(users, with_lapsed, conf)
    past = users["days_since_last_event"].to_numpy() > 60
    assert past.sum() > 5 and (~past).sum() > 5
    rate = 0.5 * (
        np.log1p(np.float32(users["active_days"][0]))
        - np.log1p(np.float32(users["tenure_days"][0]))
    )
    want = 1 / (
        1 + np.exp(-(-2.0 + np.log1p(users["days_since_last_event"].to_numpy(np.float32)) + rate))
    )
    assert np.allclose(b["churn_probability"][past], want[past], atol=1e-6)
    assert np.allclose(b["churn_probability"][~past], a["churn_probability"][~past], atol=1e-7)
    assert (np.diff(b["churn_probability"][past]) > 0).all()  # ordered by silence
    # past the threshold only silence, tenure and active days move churn: one of them leads every
    # explanation
    moving = {"days_since_last_event", "tenure_days", "active_days"}
    assert all(names[0] in moving for names in b["feature_names"][past])
    assert any(names[0] not in moving for names in a["feature_names"][past])
    assert list(a["rec_items"].map(list)) == list(
        b["rec_items"].map(list)
    )  # recommendations untouched


def test_an_artifact_without_the_silence_model_scores_as_before(tmp_path):
    users = scoring_users(12, seed=3).assign(days_since_last_event=150.0)
    a = score_batch(users, load_scorer(make_artifact(tmp_path / "a"), "cpu"), RecommendConf())
    b = score_batch(
        users,
        load_scorer(make_artifact(tmp_path / "b", config={"lapsed": {}}), "cpu"),
        RecommendConf(),
    )
    pd.testing.assert_series_equal(a["churn_probability"], b["churn_probability"])


def test_describe_says_what_the_model_does_and_what_it_rests_on():
    assert "the model's churn applies to every user" in lapsed.describe({})
    p = {
        "min_silence_days": 30.0,
        "slope": 0.0,
        "rate_slope": -1.4,
        "silence_z": 0.0,
        "applied": False,
        "users": 1330,
        "returned": 83,
        "periods": 6,
    }
    assert lapsed.describe(p).startswith(
        "not applied (silence slope z 0.00 < 2): the model's churn applies"
    )
    assert "1330 lapsed user-periods over 6 period(s), 83 came back" in lapsed.describe(p)
    del p["periods"]  # an artifact from before model.lapsed_periods: the training snapshot alone
    assert "over 1 period(s)" in lapsed.describe(p)
