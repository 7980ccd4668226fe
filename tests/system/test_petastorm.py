"""The optional petastorm feeder (``train.feeder: petastorm``). petastorm 0.13.1 imports
APIs removed in pyarrow 15, so these run only in the legacy environment that ``.ci/run``
builds (``constraints/legacy-petastorm.txt``); elsewhere they are skipped."""

import numpy as np
import pytest

petastorm = pytest.importorskip(
    "petastorm.spark", reason="petastorm runs only with pyarrow < 15 (legacy env)"
)

from lifecycle_recs.adapters.feeding import PetastormStream, examples
from lifecycle_recs.ml.features import encode_users
from lifecycle_recs.ml.feed import collect
from lifecycle_recs.ml.vocab import Vocab
from tests.helpers import repart, users_frame  # noqa: E402

pytestmark = pytest.mark.petastorm
VOCAB = Vocab([f"i{k}" for k in range(20)], ["view", "purchase"], [None] * 20)


def test_petastorm_streams_every_example_each_epoch(spark, tmp_path):
    df = users_frame(30, seed=1)
    s = PetastormStream(
        spark,
        examples(repart(spark.createDataFrame(df), 3), VOCAB, 6, "last"),
        str(tmp_path),
        batch_size=8,
        shuffle=True,
        seed=0,
    )
    try:
        want = encode_users(df, VOCAB, 6, "last")
        for epoch in range(2):
            s.set_epoch(epoch)
            got = collect(s)
            assert got.size == len(want) and max(b.size for b in s) <= 8
            assert sorted(got.feats[:, 0].tolist()) == pytest.approx(
                sorted(np.stack(want["feats"])[:, 0])
            )
    finally:
        s.close()


@pytest.mark.slow
def test_nightly_train_through_petastorm(spark, make_cfg):
    from lifecycle_recs.pipeline import run_nightly

    cfg = make_cfg(
        synthetic={"seed": 5, "n_users": 60, "n_items": 40, "days": 100, "partitions": 2},
        train={"epochs": 1, "patience": 1, "batch_size": 32, "feeder": "petastorm"},
        model={"hidden_dim": 8, "item_dim": 8, "use_text": False},
        recommend={"k": 3},
    )
    run = run_nightly(spark, cfg, stages=["ingest", "sequences", "lifecycle", "train", "score"])
    info = {r.stage: r.info for r in run.results}
    assert info["train"]["train_rows"] > 0 and info["score"]["users"] > 0
