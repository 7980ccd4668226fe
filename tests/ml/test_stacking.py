"""The second stage (ml/stacking.py): what it learns, where its blend is fitted, and
that scoring applies it."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from lifecycle_recs.config import RecommendConf
from lifecycle_recs.ml import stacking
from lifecycle_recs.ml.features import USER_FEATURES
from lifecycle_recs.ml.scorer import load_scorer, score_batch
from tests.helpers import make_artifact, scoring_users

F = {n: i for i, n in enumerate(USER_FEATURES)}


def users(n, seed, baseline=False):
    """Generated users whose churn depends on recency *and* activity jointly (a rate
    story: a frequent user silent for 20 days is more likely gone than a rare one),
    a noisy 'model' logit that knows only half of it, and a value driven by spend rate.
    With ``baseline``, the feats carry a BG/NBD x Gamma-Gamma value column
    (``STACK_FEATURES``): ``"sharp"`` knows the spend of the users who stay, else it
    sees some of what the features miss, not who stays, off by a factor."""
    rng = np.random.default_rng(seed)
    rec = rng.exponential(20, n)
    active = 1 + rng.poisson(rng.lognormal(1.5, 0.8, n))
    tenure = rec + rng.uniform(10, 200, n)
    money = active * rng.lognormal(3, 0.5, n) * (rng.random(n) < 0.7)
    feats = np.zeros((n, len(USER_FEATURES)), np.float32)
    feats[:, F["days_since_last_event"]] = np.log1p(rec)
    feats[:, F["active_days"]] = np.log1p(active)
    feats[:, F["n_events"]] = np.log1p(active * 3)
    feats[:, F["tenure_days"]] = np.log1p(tenure)
    feats[:, F["monetary_total"]] = np.log1p(money)
    feats[:, F["sequence_length"]] = 1.0
    rate = active / tenure
    alive = np.exp(-rec * rate)
    feats[:, F["bgnbd_p_alive"]] = alive
    feats[:, F["bgnbd_expected_days"]] = np.log1p(alive * rate * 30)
    true = 2.5 * np.log1p(rec) - 1.5 * np.log1p(rec) * np.log1p(active) / 2 - 2
    y = (rng.random(n) < 1 / (1 + np.exp(-true))).astype(np.float32)
    logit = (0.5 * true + rng.normal(0, 1.0, n)).astype(np.float32)
    spend_rate = money / tenure * 30
    luck = rng.lognormal(0, 0.3, n)  # the part of future spend the features do not show
    y_value = ((1 - y) * spend_rate * luck).astype(np.float32)
    value = (0.3 * spend_rate + rng.exponential(5, n)).astype(
        np.float32
    )  # a biased, noisy model value
    if baseline == "sharp":  # knows who stays and how much they spend
        gg = (1 - y) * spend_rate * luck * rng.lognormal(0, 0.1, n) + y * spend_rate * rng.uniform(
            0, 0.3, n
        )
    elif baseline:  # sees some of the luck, not who stays, and is off by a factor
        gg = 0.5 * spend_rate * luck * rng.lognormal(0, 0.2, n)
    if baseline:
        feats = np.concatenate([feats, np.log1p(gg)[:, None].astype(np.float32)], axis=1)
    return logit, value, feats, y, y_value


def test_stack_beats_its_inputs_on_new_users_and_is_json():
    logit, value, feats, y, yv = users(4000, 0)
    held = np.random.default_rng(1).random(4000) < 0.25
    p = stacking.fit(logit, value, feats, y, yv, held, 30)
    json.dumps(p)  # stored in the artifact's config.json
    # churn blends on the held-out users; value on all: they hold fewer than MIN_HELD_OUT_VALUE
    # spenders
    assert int((yv[held] > 0).sum()) < stacking.MIN_HELD_OUT_VALUE
    assert p["churn"]["blend_users"] == int(held.sum()) and p["value"]["blend_users"] == 4000
    assert p["churn"]["kept"] and p["value"]["kept"]  # its blends beat the model out of fold
    assert p["churn"]["out_of_fold"]["stack_auc"] > p["churn"]["out_of_fold"]["model_auc"]
    assert min(p["value"]["blend"]) >= 0  # non-negative blend weights
    t_logit, t_value, t_feats, t_y, t_yv = users(4000, 2)  # users the stack never saw
    stacked = stacking.churn_logit(p, torch.tensor(t_logit), torch.tensor(t_feats)).numpy()
    recency = t_feats[:, F["days_since_last_event"]]
    assert roc_auc_score(t_y, stacked) > roc_auc_score(t_y, t_logit) + 0.02
    assert roc_auc_score(t_y, stacked) > roc_auc_score(t_y, recency) + 0.005
    v = stacking.value(p, torch.tensor(t_value), torch.tensor(t_feats)).numpy()
    assert (v >= 0).all()
    rmse = lambda a: float(np.sqrt(np.mean((a - t_yv) ** 2)))  # noqa: E731
    assert rmse(v) < 0.9 * rmse(t_value)


def test_value_blend_takes_the_btyd_baseline_where_the_rows_carry_it():
    """The BG/NBD x Gamma-Gamma prediction (the column after the model's features)
    joins the value blend with a non-negative weight, and on new users the stack
    with it beats the stack without it and the baseline alone."""
    logit, value, feats, y, yv = users(4000, 5, baseline=True)
    held = np.random.default_rng(6).random(4000) < 0.25
    with_b = stacking.fit(logit, value, feats, y, yv, held, 30)
    without = stacking.fit(logit, value, feats[:, : len(USER_FEATURES)], y, yv, held, 30)
    assert len(with_b["value"]["blend"]) == 3 and with_b["value"]["blend"][2] > 0
    assert min(with_b["value"]["blend"]) >= 0 and with_b["value"]["kept"]
    assert len(without["value"]["blend"]) == 2
    assert stacking.uses_baseline_value(with_b) and not stacking.uses_baseline_value(without)
    assert not stacking.uses_baseline_value({**with_b, "value": {**with_b["value"], "kept": False}})
    t_logit, t_value, t_feats, t_y, t_yv = users(4000, 7, baseline=True)
    rmse = lambda a: float(np.sqrt(np.mean((np.asarray(a) - t_yv) ** 2)))  # noqa: E731
    v_with = stacking.value(with_b, torch.tensor(t_value), torch.tensor(t_feats)).numpy()
    v_without = stacking.value(without, torch.tensor(t_value), torch.tensor(t_feats)).numpy()
    baseline = np.expm1(t_feats[:, -1])
    assert np.allclose(stacking.baseline_value(torch.tensor(t_feats)).numpy(), baseline, rtol=1e-5)
    assert rmse(v_with) < 0.97 * rmse(v_without) and rmse(v_with) < rmse(baseline)
    # an artifact fitted without the column scores rows that carry it as before
    assert np.allclose(
        stacking.value(without, torch.tensor(t_value), torch.tensor(t_feats)).numpy(),
        stacking.value(
            without, torch.tensor(t_value), torch.tensor(t_feats[:, : len(USER_FEATURES)])
        ).numpy(),
    )


def test_a_baseline_better_than_any_blend_is_chosen_alone():
    """Where BG/NBD x Gamma-Gamma alone beats the model and the blend out of fold (here
    it is the value up to 10% noise, and the model and the features know nothing), the
    value is the baseline's own: the blend's fitted weights would only add noise."""
    rng, n = np.random.default_rng(3), 300
    yv = rng.lognormal(3, 1, n) * (rng.random(n) < 0.7)
    feats = np.zeros((n, len(USER_FEATURES) + 1), np.float32)
    feats[:, -1] = np.log1p(yv * rng.lognormal(0, 0.1, n))
    p = stacking.fit(
        rng.normal(size=n),
        rng.exponential(10, n),
        feats,
        (yv == 0).astype(float),
        yv,
        np.ones(n, bool),
        30,
    )
    oof = p["value"]["out_of_fold"]
    assert oof["chosen"] == "baseline" and oof["baseline_rmse"] < min(
        oof["model_rmse"], oof["stack_rmse"]
    )
    assert p["value"]["kept"] and stacking.uses_baseline_value(p)
    t = torch.tensor(feats)
    assert np.allclose(
        stacking.value(p, torch.tensor(rng.exponential(10, n)), t).numpy(),
        np.expm1(feats[:, -1]),
        rtol=1e-5,
    )


def test_the_value_blend_as_scored_adds_up_to_its_users_actual_total():
    """The blend is clipped at 0 when scored; its intercept is set so that the clipped
    predictions add up to the blend users' actual total (the least-squares intercept
    alone left the clip's mass on top: above the actual total)."""
    logit, value, feats, y, yv = users(4000, 0)
    p = stacking.fit(logit, value, feats, y, yv, np.zeros(4000, bool), 30)
    assert p["value"]["kept"] and p["value"]["blend_users"] == 4000
    v = stacking.value(p, torch.tensor(value), torch.tensor(feats)).double().numpy()
    raw = p["value"]["blend_intercept"] + np.c_[
        value,
        stacking._np_linear(
            {k: np.asarray(p["value"][k]) for k in ("mean", "std", "coef")}
            | {"intercept": p["value"]["intercept"]},
            stacking.value_basis(torch.tensor(feats), 30).double().numpy(),
        ),
    ] @ np.asarray(p["value"]["blend"])
    assert (raw < 0).any()  # the clip matters on these users
    # exact on the blend's own (cross-fitted) inputs; scoring reads the feature model fitted
    # on all users, hence 1%, where the least-squares intercept alone gave 1.15x the total
    assert np.isclose(v.sum(), float(yv.astype(np.float64).sum()), rtol=0.01)


def test_value_blend_on_the_held_out_users_where_they_hold_enough_spenders():
    logit, value, feats, y, yv = users(10000, 9)
    held = np.arange(10000) % 2 == 0
    assert int((yv[held] > 0).sum()) >= stacking.MIN_HELD_OUT_VALUE
    p = stacking.fit(logit, value, feats, y, yv, held, 30)
    assert p["value"]["blend_users"] == 5000 == p["value"]["out_of_fold"]["users"]


def test_blend_falls_back_to_all_users_when_few_are_held_out():
    logit, value, feats, y, yv = users(600, 3)
    held = np.zeros(600, bool)
    held[:10] = True
    p = stacking.fit(logit, value, feats, y, yv, held, 30)
    assert p["churn"]["blend_users"] == 600 and p["value"]["blend_users"] == 600
    assert stacking.fit(logit[:0], value[:0], feats[:0], y[:0], yv[:0], held[:0], 30) == {}


def test_without_a_stack_the_model_outputs_pass_through():
    z, v, f, _, _ = users(50, 4)
    assert torch.equal(stacking.churn_logit({}, torch.tensor(z), torch.tensor(f)), torch.tensor(z))
    assert torch.equal(
        stacking.value(None, torch.tensor(v), torch.tensor(f)), torch.tensor(v).clamp(min=0)
    )


def test_one_class_labels_keep_the_models_churn():
    z, v, f, y, yv = users(300, 5)
    p = stacking.fit(z, v, f, np.zeros_like(y), yv, np.ones(300, bool), 30)
    json.dumps(p, allow_nan=False)
    assert not p["churn"]["kept"]  # nothing to check a blend against
    out = stacking.churn_logit(p, torch.tensor(z), torch.tensor(f))
    assert torch.equal(out, torch.tensor(z))


def test_a_blend_that_does_not_beat_the_model_out_of_fold_is_not_kept():
    """A calibrated model and features that are noise: the blends cannot help, the
    check drops both parts and the model's outputs pass through."""
    rng = np.random.default_rng(8)
    n = 3000
    _, _, feats, _, _ = users(n, 9)
    feats = feats[rng.permutation(n)]  # features unrelated to the labels below
    z = rng.normal(0, 2, n).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float32)
    v = rng.lognormal(3, 0.5, n).astype(np.float32)
    yv = (v * rng.lognormal(-0.125, 0.5, n)).astype(np.float32)  # E[yv | v] = v
    p = stacking.fit(z, v, feats, y, yv, rng.random(n) < 0.3, 30)
    assert not p["churn"]["kept"] and not p["value"]["kept"], (
        p["churn"]["out_of_fold"],
        p["value"]["out_of_fold"],
    )
    assert torch.equal(
        stacking.churn_logit(p, torch.tensor(z), torch.tensor(feats)), torch.tensor(z)
    )
    assert torch.equal(stacking.value(p, torch.tensor(v), torch.tensor(feats)), torch.tensor(v))


@pytest.mark.parametrize("n_items", [30, 0])
def test_scoring_applies_the_artifacts_stack(tmp_path, n_items):
    """The churn and value that land are the stack's (and the explanations perturb
    through it): an artifact with a stack scores differently from the same weights
    without one, and as ``stacking`` says."""
    z, v, f, y, yv = users(800, 6)
    stack = stacking.fit(z, v, f, y, yv, np.random.default_rng(0).random(800) < 0.3, 30)
    stack["value"]["blend_intercept"] += (
        50.0  # the random model's values are ~0: keep the stack's above its clamp
    )
    stack["churn"]["kept"] = stack["value"]["kept"] = (
        True  # (the check is tested above; here: scoring applies it)
    )
    plain = load_scorer(make_artifact(tmp_path / "a", max_len=12, n_items=n_items), "cpu")
    stacked = load_scorer(
        make_artifact(tmp_path / "b", max_len=12, n_items=n_items, config={"stack": stack}), "cpu"
    )
    df = scoring_users(20, seed=7)
    conf = RecommendConf(k=5)
    a, b = score_batch(df, plain, conf), score_batch(df, stacked, conf)
    assert not np.allclose(a["churn_probability"], b["churn_probability"])
    assert not np.allclose(a["predicted_value"], b["predicted_value"])
    from lifecycle_recs.ml.features import encode_last

    enc = encode_last(df, plain.art.vocab, 12, None)
    feats = torch.tensor(enc["feats"])
    base_logit = torch.logit(
        torch.tensor(a["churn_probability"].to_numpy(), dtype=torch.float32), eps=1e-7
    )
    want = torch.sigmoid(stacking.churn_logit(stack, base_logit, feats)).numpy()
    assert np.allclose(b["churn_probability"], want, atol=1e-4)
    want_v = stacking.value(
        stack, torch.tensor(a["predicted_value"].to_numpy(), dtype=torch.float32), feats
    ).numpy()
    assert np.allclose(b["predicted_value"], want_v, rtol=1e-4, atol=1e-3)
    assert (
        pd.Series([tuple(x) for x in a["feature_effects"]])
        .ne(pd.Series([tuple(x) for x in b["feature_effects"]]))
        .any()
    )
