"""The model: shapes, padding never attended, called with a typed batch, owns its loss."""
import numpy as np
import pytest
import torch

from lifecycle_recs.ml.features import Batch, encode_users
from lifecycle_recs.ml.model import ModelSpec, SequenceModel
from tests.helpers import users_frame
from tests.ml.test_features import VOCAB


def model_of(encoder="lstm"):
    return SequenceModel(ModelSpec(n_items=VOCAB.n_items, n_event_types=VOCAB.n_event_types, text_dim=4,
                                   encoder=encoder, hidden_dim=16, item_dim=8), np.random.rand(22, 4))


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
    assert m.heads_loss(u, b, {"churn": 1.0, "value": 0.0}).item() == pytest.approx(parts["churn"], rel=1e-5)


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="lstm, gru or transformer"):
        model_of("rnn")
