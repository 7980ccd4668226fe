"""Encoders from user rows to model inputs, and the typed Batch."""

import numpy as np
import torch

from lifecycle_recs.ml.features import (
    STACK_FEATURES,
    USER_FEATURES,
    Batch,
    encode_last,
    encode_users,
    user_features,
)
from lifecycle_recs.ml.vocab import UNK, Vocab
from tests.helpers import users_frame

VOCAB = Vocab([f"i{k}" for k in range(20)], ["view", "purchase"], [f"c{k % 3}" for k in range(20)])


def test_encode_users_modes_and_bad_input():
    df = users_frame()
    df.loc[0, "item_ids"] = ["unknown-item"]
    df.loc[0, "values"] = [float("nan")]
    df.loc[1, ["item_ids", "event_types", "time_gaps_hours", "values"]] = [None, None, None, None]
    ex = encode_users(df, VOCAB, 5, "last")
    assert len(ex) == len(df)
    assert ex.loc[0, "items"][0] == UNK and ex.loc[0, "length"] == 1
    assert ex.loc[1, "length"] == 0  # empty sequence encodes
    assert all(len(a) == 5 for a in ex["items"])
    assert not np.isnan(np.stack(ex["values"])).any()
    loo = encode_users(df, VOCAB, 5, "loo")
    assert (loo["eval_target"] > 1).all() and (loo["length"] >= 1).all()
    win = encode_users(df.iloc[[5]], VOCAB, 3, "windows", holdout=2)
    assert set(win["split"]) == {"train", "val", "test"}


def test_vectorised_encoder_matches_row_encoder():
    df = users_frame(10, seed=3)
    df.loc[2, "item_ids"] = ["nope"] + list(df.loc[2, "item_ids"])[1:]
    df.loc[4, ["item_ids", "event_types", "time_gaps_hours", "values"]] = [None, None, None, None]
    rows = encode_users(df, VOCAB, 5, "last")
    vec = encode_last(df, VOCAB, 5)
    for k in ("items", "events", "gaps", "values", "targets"):
        assert np.allclose(np.stack(rows[k].to_numpy()), vec[k]), k
    assert np.array_equal(rows["length"].to_numpy(), vec["length"])


def test_user_features_are_the_one_ordered_list():
    df = users_frame(3)
    f = user_features(df, 50)
    assert (
        f.shape == (3, len(USER_FEATURES) + len(STACK_FEATURES))
        and USER_FEATURES[5] == "sequence_length"
    )
    assert np.allclose(f[:, 0], np.log1p(df["days_since_last_event"]))
    assert np.allclose(f[:, 5], df["sequence_length"] / 50)
    assert (
        f[:, 6:] == 0
    ).all()  # no BG/NBD fit: its features (and the stack's baseline value) are 0


def test_spend_feature_is_bgnbd_times_gamma_gamma_of_the_purchase_summary():
    """The stack's input after the model's features: log1p(E[spend in H]) from the
    purchase-days columns joined to the rows; 0 for a user who never bought, and 0
    for everyone without the columns or the purchase fit."""
    from lifecycle_recs.ml import btyd

    df = users_frame(4).assign(
        x_purchase=[2.0, 0.0, 5.0, 0.0],
        t_purchase=[20.0, 0.0, 40.0, 0.0],
        age_purchase=[30.0, 10.0, 50.0, np.nan],
        m_purchase=[12.5, np.nan, 40.0, np.nan],
    )
    prm = {
        "purchase": {"r": 0.5, "alpha": 8.0, "a": 0.7, "b": 2.5},
        "spend": {"p": 6.0, "q": 4.0, "v": 15.0},
        "horizon_days": 30,
    }
    f = user_features(df, 50, prm)[:, len(USER_FEATURES)]
    pur, gg = btyd.BGNBD(**prm["purchase"]), btyd.GammaGamma(**prm["spend"])
    want = btyd.expected_transactions(
        pur, 30, df.x_purchase[:3], df.t_purchase[:3], df.age_purchase[:3]
    ) * btyd.expected_spend(gg, df.x_purchase[:3], df.m_purchase[:3].fillna(0))
    assert np.allclose(f[:3], np.log1p(want), atol=1e-5) and f[3] == 0 and (f[:3] > 0).all()
    assert (
        user_features(df.drop(columns="age_purchase"), 50, prm)[:, len(USER_FEATURES)] == 0
    ).all()
    assert (user_features(df, 50, {"horizon_days": 30})[:, len(USER_FEATURES)] == 0).all()


def test_btyd_features_are_the_bgnbd_predictions_of_the_rounded_history():
    from lifecycle_recs.ml import btyd

    df = users_frame(4)
    prm = {"active": {"r": 0.8, "alpha": 10.0, "a": 0.9, "b": 3.0}, "horizon_days": 30}
    f = user_features(df, 50, prm)
    x, t_x, age = (
        np.maximum(df["active_days"] - 1, 0),
        np.floor(df["tenure_days"] - df["days_since_last_event"] + 0.5),
        np.floor(df["tenure_days"] + 0.5),
    )
    m = btyd.BGNBD(**prm["active"])
    assert np.allclose(f[:, 6], btyd.p_alive(m, x, np.minimum(t_x, age), age), atol=1e-6)
    assert np.allclose(
        f[:, 7],
        np.log1p(btyd.expected_transactions(m, 30, x, np.minimum(t_x, age), age)),
        atol=1e-5,
    )


def test_batch_from_frame_types_rows_and_device():
    b = Batch.from_frame(encode_users(users_frame(6), VOCAB, 4, "last"))
    assert b.size == 6 and b.items.dtype == torch.long and b.gaps.dtype == torch.float32
    assert b.churn.dtype == torch.float32 and b.eval_target.dtype == torch.long
    sub = b.rows(slice(1, 3)).to("cpu")
    assert sub.size == 2 and torch.equal(sub.items, b.items[1:3])
    assert (
        Batch.from_arrays({k: v for k, v in encode_last(users_frame(2), VOCAB, 4).items()}).churn
        is None
    )


def test_vocab_lookup_is_vectorised_and_null_safe():
    got = VOCAB.item_index(["i0", None, "zz", "i19"])
    assert got.tolist() == [2, UNK, UNK, 21]
    assert VOCAB.event_index(["purchase", None]).tolist() == [3, UNK]
    assert (
        VOCAB.item_id_array()[2] == "i0"
        and Vocab.from_json(VOCAB.to_json()).item_ids == VOCAB.item_ids
    )
