"""The model: shapes, padding never attended, called with a typed batch, owns its loss."""

import numpy as np
import pytest
import torch

from lifecycle_recs.ml.features import Batch, encode_users
from lifecycle_recs.ml.model import ModelSpec, SequenceModel
from tests.helpers import users_frame
from tests.ml.test_features import VOCAB


def model_of(encoder="lstm"):
    return SequenceModel(
        ModelSpec(
            n_items=VOCAB.n_items,
            n_event_types=VOCAB.n_event_types,
            text_dim=4,
            encoder=encoder,
            hidden_dim=16,
            item_dim=8,
        ),
        np.random.rand(22, 4),
    )


@pytest.mark.parametrize("encoder", ["lstm", "gru", "transformer"])
def test_shapes_and_padding_never_attended(encoder):
    torch.manual_seed(0)
    m = model_of(encoder).eval()
    b = Batch.from_frame(encode_users(users_frame(), VOCAB, 6, "last"))
    b = b._replace(length=b.length.clamp(min=1))
    out = m(b)
    B, L = b.items.shape
    assert out["user_steps"].shape == (B, L, 8) and out["user"].shape == (B, 8)
    assert out["churn_logit"].shape == (B,)
    att = out["attention"]
    pad = torch.arange(L)[None] >= b.length[:, None]
    assert torch.all(att[pad] < 1e-6) and torch.allclose(att.sum(1), torch.ones(B))
    # garbage in the padding does not change the result
    items, gaps = b.items.clone(), b.gaps.clone()
    items[pad], gaps[pad] = 5, 99.0
    out2 = m(b._replace(items=items, gaps=gaps))
    assert torch.allclose(out["user"], out2["user"], atol=1e-5)


def test_loss_weights_and_parts():
    torch.manual_seed(0)
    m = model_of().eval()  # no dropout: the same forward every call
    b = Batch.from_frame(encode_users(users_frame(), VOCAB, 6, "last"))
    total, parts = m.loss(b, {"next_item": 1.0, "churn": 0.0, "value": 0.0})
    assert total.item() == pytest.approx(parts["next_item"], rel=1e-5)
    total2, parts2 = m.loss(b, {"next_item": 0.0, "churn": 2.0, "value": 0.0})
    assert total2.item() == pytest.approx(2 * parts2["churn"], rel=1e-5)
    with torch.no_grad():
        u = m(b)["user"]
    assert m.heads_loss(u, b, {"churn": 1.0, "value": 0.0}).item() == pytest.approx(
        parts["churn"], rel=1e-5
    )


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="lstm, gru or transformer"):
        model_of("rnn")


@pytest.mark.parametrize("encoder", ["lstm", "transformer"])
def test_step_relevance_splits_the_pooled_part_of_the_score_exactly(encoder):
    """because_items weigh each step by its term a_s (W_pool h_s) . v of the user vector's
    score for v: the terms add up to the pooled part of that score, and the weights are
    the shares of the positive terms."""
    from lifecycle_recs.ml import explain

    torch.manual_seed(0)
    m = model_of(encoder).eval()
    b = Batch.from_frame(encode_users(users_frame(), VOCAB, 6, "last"))
    b = b._replace(length=b.length.clamp(min=1))
    with torch.no_grad():
        out = m.infer(b)
        v = torch.randn(out["user"].shape)
        w = explain.step_relevance(m, out["steps"], out["attention"], v)
        H = out["steps"].shape[-1]
        last = out["steps"][torch.arange(len(b.length)), b.length - 1]
        pooled_part = (
            (out["user"] - m.out(torch.cat([last, torch.zeros_like(last)], -1))) * v
        ).sum(1)
        terms = out["attention"] * (out["steps"] @ m.out.weight[:, H:].T * v[:, None, :]).sum(-1)
    assert torch.allclose(terms.sum(1), pooled_part, atol=1e-5)
    pos = terms.clamp(min=0)
    has = pos.sum(1) > 0
    assert has.any() and torch.allclose(w[has], pos[has] / pos[has].sum(1, keepdim=True), atol=1e-6)
    assert torch.all(w >= 0) and torch.allclose(w.sum(1), torch.ones(len(w)), atol=1e-5)


def test_step_relevance_names_the_step_that_raises_the_recommendations():
    """Uniform attention over three steps; only the first step's state points towards the
    recommended items: it gets all the weight. No direction: the attention itself."""
    from lifecycle_recs.ml import explain

    class Out:  # the output layer [W_last | W_pool], with W_pool the identity
        out = torch.nn.Linear(4, 2)

    with torch.no_grad():
        Out.out.weight.copy_(torch.tensor([[9.0, 9.0, 1.0, 0.0], [9.0, 9.0, 0.0, 1.0]]))
    steps = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    att = torch.full((1, 3), 1 / 3)
    assert explain.step_relevance(Out, steps, att, torch.tensor([[1.0, 0.0]])).tolist() == [
        [1.0, 0.0, 0.0]
    ]
    assert torch.equal(explain.step_relevance(Out, steps, att, torch.zeros(1, 2)), att)


def test_recommended_direction_is_the_mean_of_the_shown_items():
    from lifecycle_recs.ml import explain

    vectors = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [6.0, 6.0]])
    rec_i = torch.tensor([[1, 2, 3], [3, 0, 0], [0, 0, 0]])
    rec_s = torch.tensor(
        [[0.9, 0.5, 0.1], [0.7, -float("inf"), -float("inf")], [-float("inf")] * 3]
    )
    got = explain.recommended_direction(vectors, rec_i, rec_s)
    assert torch.allclose(got, torch.tensor([[8 / 3, 10 / 3], [6.0, 6.0], [0.0, 0.0]]))
