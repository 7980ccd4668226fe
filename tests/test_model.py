"""Model shapes, masking, a tiny overfit, metric functions, artifact round-trip."""
import numpy as np
import pandas as pd
import pytest
import torch

from lifecycle_recs import evaluation as E
from lifecycle_recs.config import ModelConf, TrainConf
from lifecycle_recs.model import ModelSpec, SequenceModel
from lifecycle_recs.training import (Vocab, encode_users, load_artifact, rank_targets, save_artifact,
                                     tensors_from_pandas, train_model)

VOCAB = Vocab([f"i{k}" for k in range(20)], ["view", "purchase"], [f"c{k % 3}" for k in range(20)])


def users_frame(n=8, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n):
        L = int(rng.integers(1, 12))
        # a deterministic cycle per user: the next item is predictable
        items = [f"i{(u + k) % 20}" for k in range(L)]
        rows.append({"user_id": f"u{u}", "item_ids": items, "event_types": ["view"] * L,
                     "time_gaps_hours": [0.0] + [float(rng.exponential(5)) for _ in range(L - 1)],
                     "values": [0.0] * L, "sequence_length": L, "days_since_last_event": float(u),
                     "n_events": L, "tenure_days": 10.0, "monetary_total": 0.0, "active_days": 2,
                     "has_labels": True, "churned_within_horizon": u % 2 == 0, "value_next_horizon": float(u % 3)})
    return pd.DataFrame(rows)


def test_encode_users_modes_and_bad_input():
    df = users_frame()
    df.loc[0, "item_ids"] = ["unknown-item"]
    df.loc[0, "values"] = [float("nan")]
    df.loc[1, ["item_ids", "event_types", "time_gaps_hours", "values"]] = [None, None, None, None]
    ex = encode_users(df, VOCAB, 5, "last")
    assert len(ex) == len(df)
    assert ex.loc[0, "items"][0] == 1 and ex.loc[0, "length"] == 1   # unknown item -> index 1
    assert ex.loc[1, "length"] == 0                                   # empty sequence encodes
    assert all(len(a) == 5 for a in ex["items"])
    assert not np.isnan(np.stack(ex["values"])).any()
    loo = encode_users(df, VOCAB, 5, "loo")
    assert (loo["eval_target"] > 1).all() and (loo["length"] >= 1).all()
    win = encode_users(df.iloc[[5]], VOCAB, 3, "windows", holdout=2)
    assert set(win["split"]) == {"train", "val", "test"}


def _model(encoder="lstm"):
    return SequenceModel(ModelSpec(n_items=VOCAB.n_items, n_event_types=VOCAB.n_event_types, text_dim=4,
                                   encoder=encoder, hidden_dim=16, item_dim=8), np.random.rand(22, 4))


@pytest.mark.parametrize("encoder", ["lstm", "gru", "transformer"])
def test_shapes_and_padding_never_attended(encoder):
    torch.manual_seed(0)
    m = _model(encoder).eval()
    t = tensors_from_pandas(encode_users(users_frame(), VOCAB, 6, "last"))
    t["length"] = t["length"].clamp(min=1)
    out = m(t["items"], t["events"], t["gaps"], t["values"], t["length"], t["feats"])
    B, L = t["items"].shape
    assert out["user_steps"].shape == (B, L, 8) and out["user"].shape == (B, 8)
    assert out["churn_logit"].shape == (B,)
    att = out["attention"]
    pad = torch.arange(L)[None] >= t["length"][:, None]
    assert torch.all(att[pad] < 1e-6) and torch.allclose(att.sum(1), torch.ones(B))
    # garbage in the padding does not change the result
    t2 = {k: v.clone() for k, v in t.items()}
    t2["items"][pad] = 5
    t2["gaps"][pad] = 99.0
    out2 = m(t2["items"], t2["events"], t2["gaps"], t2["values"], t2["length"], t2["feats"])
    assert torch.allclose(out["user"], out2["user"], atol=1e-5)


def test_tiny_overfit():
    torch.set_num_threads(1)
    t = tensors_from_pandas(encode_users(users_frame(6), VOCAB, 12, "last"))
    mc = ModelConf(hidden_dim=32, item_dim=16, dropout=0.0, use_text=False,
                   loss_weights={"next_item": 1.0, "churn": 1.0, "value": 0.0})
    tc = TrainConf(seed=1, epochs=300, patience=300, batch_size=64, lr=0.02, device="cpu")
    model, info = train_model(t, None, VOCAB, None, mc, tc, 12)
    first, last = info["history"][0]["train_loss"], info["history"][-1]["train_loss"]
    assert last < 0.05 * first and last < 0.1


def test_rank_targets_and_artifact_roundtrip(tmp_path):
    m = _model()
    t = tensors_from_pandas(encode_users(users_frame(), VOCAB, 6, "loo"))
    r = rank_targets(m, t, torch.device("cpu"))
    assert ((r >= 1) & (r <= VOCAB.n_items - 2)).all()
    d = save_artifact(str(tmp_path), m, VOCAB, 6, {"x": 1})
    art = load_artifact(str(tmp_path))
    assert art.version == open(tmp_path / "LATEST").read() and art.max_len == 6
    assert art.vocab.item_ids == VOCAB.item_ids
    assert np.array_equal(rank_targets(art.model, t, torch.device("cpu")), r)
    with pytest.raises(FileNotFoundError, match="train stage"):
        load_artifact(str(tmp_path / "nothing"))


def test_metric_functions_by_hand():
    m = E.rank_metrics(np.array([1, 3, 11]), 10)
    assert m["hit@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(4)) / 3)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3) / 3)
    s = E.set_metrics([["a", "b", "c"], ["x"], ["q"]], [{"b", "z"}, set(), {"q"}], 2)
    assert s["recall@2"] == pytest.approx((0.5 + 1.0) / 2) and s["users"] == 2
    assert s["ndcg@2"] == pytest.approx(((1 / np.log2(3)) / (1 + 1 / np.log2(3)) + 1.0) / 2)
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert E.roc_auc(y, p) == pytest.approx(0.75)
    assert E.roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert E.average_precision(y, p) == pytest.approx((1 + 2 / 3) / 2)
    assert E.binary_metrics(y, p)["brier"] == pytest.approx(np.mean((p - y) ** 2))
    r = E.regression_metrics(np.array([0, 1, 2.0]), np.array([0, 2, 4.0]))
    assert r["mae"] == pytest.approx(1.0) and r["rmse"] == pytest.approx(np.sqrt(5 / 3)) and r["spearman"] == 1.0
    c = E.catalog_metrics([[2, 3], [3, 4]], 10, np.ones(10), ["a", "a", "a", "b", "b"])
    assert c["coverage"] == 0.3 and c["category_diversity"] == pytest.approx(0.75)


def test_vectorised_encoder_matches_row_encoder():
    from lifecycle_recs.training import encode_last

    df = users_frame(10, seed=3)
    df.loc[2, "item_ids"] = ["nope"] + list(df.loc[2, "item_ids"])[1:]
    df.loc[4, ["item_ids", "event_types", "time_gaps_hours", "values"]] = [None, None, None, None]
    rows = encode_users(df, VOCAB, 5, "last")
    vec = encode_last(df, VOCAB, 5)
    for k in ("items", "events", "gaps", "values", "targets"):
        assert np.allclose(np.stack(rows[k].to_numpy()), vec[k]), k
    assert np.array_equal(rows["length"].to_numpy(), vec["length"])
