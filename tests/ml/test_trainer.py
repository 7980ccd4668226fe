"""One trainer: a tiny overfit, early stopping, the heads refit, full ranking."""

import numpy as np
import torch

from lifecycle_recs.config import ModelConf, TrainConf
from lifecycle_recs.ml.features import Batch, encode_users
from lifecycle_recs.ml.trainer import EarlyStopping, fit, fit_heads, rank_targets
from tests.helpers import users_frame
from tests.ml.test_features import VOCAB
from tests.ml.test_model import model_of

MC = ModelConf(
    hidden_dim=32,
    item_dim=16,
    dropout=0.0,
    use_text=False,
    loss_weights={"next_item": 1.0, "churn": 1.0, "value": 0.0},
)


def test_tiny_overfit():
    # one thread for this test only: the count is process-wide, and a later test that trains
    # with a different count than alone would train (bit-)different weights
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        b = Batch.from_frame(encode_users(users_frame(6), VOCAB, 12, "last"))
        tc = TrainConf(seed=1, epochs=300, patience=300, batch_size=64, lr=0.02, device="cpu")
        model, info = fit(b, None, VOCAB, None, MC, tc)
    finally:
        torch.set_num_threads(threads)
    assert info["torch_threads"] == 1
    first, last = info["history"][0]["train_loss"], info["history"][-1]["train_loss"]
    assert last < 0.05 * first and last < 0.1


def test_same_seed_same_model():
    b = Batch.from_frame(encode_users(users_frame(8), VOCAB, 8, "last"))
    tc = TrainConf(seed=3, epochs=3, patience=3, batch_size=4, device="cpu")
    m1, _ = fit(b, None, VOCAB, None, MC, tc)
    m2, _ = fit(b, None, VOCAB, None, MC, tc)
    assert all(
        torch.equal(x, y) for x, y in zip(m1.state_dict().values(), m2.state_dict().values())
    )


def test_early_stopping_keeps_the_best_state():
    m = torch.nn.Linear(1, 1)
    stop = EarlyStopping(patience=2)
    with torch.no_grad():
        m.weight.fill_(1.0)
    assert not stop.step(0.5, m)
    with torch.no_grad():
        m.weight.fill_(2.0)
    assert not stop.step(0.4, m)  # worse: 1 bad
    assert stop.step(0.3, m)  # worse again: stop
    stop.restore(m)
    assert m.weight.item() == 1.0 and stop.best == 0.5


def test_fit_stops_early_on_validation():
    b = Batch.from_frame(encode_users(users_frame(8), VOCAB, 8, "last"))
    val = Batch.from_frame(encode_users(users_frame(8, seed=1), VOCAB, 8, "loo"))
    tc = TrainConf(
        seed=1, epochs=50, patience=1, batch_size=8, lr=0.0, device="cpu"
    )  # lr 0: never improves
    _, info = fit(b, val, VOCAB, None, MC, tc)
    assert info["epochs_run"] == 2 and "val_ndcg10" in info["history"][0]


def test_fit_heads_improves_the_heads_and_skips_unlabelled_data():
    torch.manual_seed(0)
    m = model_of()
    b = Batch.from_frame(encode_users(users_frame(16), VOCAB, 6, "last"))
    w = {"churn": 1.0, "value": 1.0}
    from lifecycle_recs.ml.trainer import user_vectors

    before = m.heads_loss(user_vectors(m, b), b, w).item()
    info = fit_heads(m, b, b, w, steps=60, lr=0.05)
    assert info["heads_best_loss"] < before
    unlabelled = b._replace(label_w=torch.zeros_like(b.label_w))
    state = {k: v.clone() for k, v in m.state_dict().items()}
    assert fit_heads(m, unlabelled, None, w) == {}
    assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())


def test_the_heads_refit_hands_the_second_stage_what_the_model_scores():
    """stack_inputs from fit_heads' frozen vectors equals a forward pass of the refitted
    model over the labelled rows (no second pass over the feed is needed)."""
    from lifecycle_recs.ml.trainer import stack_inputs

    torch.manual_seed(1)
    m = model_of()
    b = Batch.from_frame(encode_users(users_frame(16), VOCAB, 6, "last"))
    b = b._replace(label_w=(torch.arange(b.size) % 3 != 0).float())  # a third unlabelled
    vec = {}
    fit_heads(m, b, b, {"churn": 1.0, "value": 1.0}, steps=20, lr=0.05, vectors=vec)
    assert set(vec) == {"train", "val"}
    got = stack_inputs(m, *vec["train"], 0.1)
    keep = b.label_w > 0
    m.eval()
    with torch.no_grad():
        out = m(b.rows(keep)._replace(length=b.rows(keep).length.clamp(min=1)))
    assert len(got["y_churn"]) == int(keep.sum())
    assert np.allclose(got["churn_logit"], out["churn_logit"].numpy(), atol=1e-5)
    want_v = m.predicted_value(out["value_logit"], out["value_mu"], 0.1).clamp(min=0).numpy()
    assert np.allclose(got["value"], want_v, rtol=1e-4, atol=1e-5)
    assert np.array_equal(got["y_churn"], b.churn[keep].numpy())


def test_rank_targets_full_ranking():
    m = model_of()
    b = Batch.from_frame(encode_users(users_frame(), VOCAB, 6, "loo"))
    r = rank_targets(m, b, torch.device("cpu"))
    assert ((r >= 1) & (r <= VOCAB.n_items - 2)).all()
    # the target itself can never rank worse once seen items are excluded
    assert (rank_targets(m, b, torch.device("cpu"), exclude_seen=True) <= r).all()


def test_fit_from_a_stream_is_seeded(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lifecycle_recs.ml.feed import ParquetExampleStream

    ex = encode_users(users_frame(40, seed=2), VOCAB, 8, "last")
    cols = {
        c: [np.asarray(x).tolist() for x in ex[c]] if ex[c].dtype == object else ex[c].tolist()
        for c in (
            "items",
            "events",
            "gaps",
            "values",
            "targets",
            "length",
            "feats",
            "churn",
            "value",
            "label_w",
            "eval_target",
        )
    }
    (tmp_path / "f").mkdir()
    pq.write_table(pa.table(cols), tmp_path / "f" / "part-0.parquet", row_group_size=8)
    tc = TrainConf(seed=5, epochs=2, patience=2, batch_size=8, device="cpu")
    models = [
        fit(
            ParquetExampleStream(str(tmp_path / "f"), 8, seed=5, buffer_rows=16),
            None,
            VOCAB,
            None,
            MC,
            tc,
        )[0]
        for _ in range(2)
    ]
    assert all(
        torch.equal(x, y)
        for x, y in zip(models[0].state_dict().values(), models[1].state_dict().values())
    )
    info = fit_heads(
        models[0],
        ParquetExampleStream(str(tmp_path / "f"), 8, shuffle=False),
        None,
        {"churn": 1.0, "value": 1.0},
        steps=20,
        max_rows=24,
    )
    assert info["heads_best_loss"] > 0


def test_the_heads_predicted_value_adds_up_to_the_training_users_actual_total():
    """The retransformation term is fitted so that the labelled training users' predicted
    value, as scored (clipped at 0), sums to their actual value; the log-normal mean it
    replaces (s = residual variance of log1p(value)) is off on skewed residuals."""
    from lifecycle_recs.ml.trainer import retransformation, stack_inputs

    torch.manual_seed(2)
    m = model_of()
    b = Batch.from_frame(encode_users(users_frame(24), VOCAB, 6, "last"))
    rng = np.random.default_rng(0)
    spend = rng.lognormal(3.0, 1.5, b.size) * (rng.random(b.size) < 0.6)  # skewed, many zeros
    b = b._replace(
        value=torch.as_tensor(spend, dtype=torch.float32),
        label_w=(torch.arange(b.size) % 4 != 0).float(),
    )  # a quarter unlabelled
    vec = {}
    info = fit_heads(m, b, None, {"churn": 1.0, "value": 1.0}, steps=30, lr=0.05, vectors=vec)
    got = stack_inputs(m, *vec["train"], info["value_log_residual_var"])
    keep = (b.label_w > 0).numpy()
    assert np.isclose(got["value"].sum(), spend[keep].sum(), rtol=1e-5)
    # the same on heads that overshoot, so that s < 0 and some predictions fall below 0
    # before the clip (expm1 of a negative exponent)
    m.eval()
    with torch.no_grad():
        heads = m.heads(vec["train"][1], b.feats)
    spread = torch.linspace(-1.0, 1.0, b.size)
    high = dict(heads, value_mu=heads["value_mu"] * 0 + 6.0 + 4.0 * spread)
    s = retransformation(high, b)
    raw = m.predicted_value(high["value_logit"], high["value_mu"], s).numpy()
    assert s < 0 and (raw[keep] < 0).any()
    assert np.isclose(np.maximum(raw, 0)[keep].sum(), spend[keep].sum(), rtol=1e-5)
