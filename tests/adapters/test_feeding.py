"""Spark -> trainer: examples built on the workers equal the pandas encoder; item statistics."""

import numpy as np
import pytest

from lifecycle_recs.adapters.feeding import examples, item_stats
from lifecycle_recs.ml.features import encode_users
from lifecycle_recs.ml.vocab import Vocab
from tests.helpers import repart, users_frame

VOCAB = Vocab([f"i{k}" for k in range(20)], ["view", "purchase"], [None] * 20)


@pytest.mark.slow
def test_spark_examples_equal_the_pandas_encoder(spark):
    df = users_frame(12, seed=5)
    sdf = repart(spark.createDataFrame(df), 3)
    got = examples(sdf, VOCAB, 6, "last").toPandas().set_index("user_id").sort_index()
    want = encode_users(df, VOCAB, 6, "last").set_index("user_id").sort_index()
    for col in ("items", "targets", "gaps", "feats"):
        assert np.allclose(np.stack(got[col].to_numpy()), np.stack(want[col].to_numpy())), col
    assert (got["length"] == want["length"]).all()


@pytest.mark.slow
def test_item_stats_popularity_and_shrunk_retention(spark):
    seq = spark.createDataFrame(
        [("u1", ["i0", "i0", "i1"]), ("u2", ["i0", None]), ("u3", ["i2"])],
        "user_id string, item_ids array<string>",
    )
    lab = spark.createDataFrame(
        [("u1", True), ("u2", False), ("u3", None)],
        "user_id string, churned_within_horizon boolean",
    )
    st = item_stats(repart(seq, 2), lab, VOCAB, prior_users=2.0)
    assert (
        st.popularity[2:5].tolist() == [3, 1, 1]
        and st.popularity[5:].sum() == 0
        and st.popularity[:2].sum() == 0
    )
    # labelled users per item: i0 {u1 churned, u2 retained}, i1 {u1 churned}, i2 none; prior = 1 / 3
    prior = 1 / 3
    assert st.ltv[2] == pytest.approx((1 + 2 * prior) / (2 + 2))
    assert st.ltv[3] == pytest.approx((0 + 2 * prior) / (1 + 2))
    assert st.ltv[4] == pytest.approx(prior) and st.ltv[10] == pytest.approx(prior)


def test_examples_written_by_spark_stream_back_whole(spark, tmp_path):
    from lifecycle_recs.adapters.feeding import write_examples
    from lifecycle_recs.ml.feed import ParquetExampleStream, collect

    df = users_frame(30, seed=2)
    path = write_examples(
        examples(repart(spark.createDataFrame(df), 3), VOCAB, 6, "last"), str(tmp_path / "f"), 2
    )
    got = collect(ParquetExampleStream(path, 7, shuffle=True, seed=0, buffer_rows=8))
    want = encode_users(df, VOCAB, 6, "last")
    assert got.size == len(want)
    key = lambda items, feats: sorted(
        map(tuple, np.concatenate([items, feats], 1).round(5).tolist())
    )  # noqa: E731
    assert key(got.items.numpy(), got.feats.numpy()) == key(
        np.stack(want["items"]), np.stack(want["feats"])
    )


def test_repeat_share_counts_next_items_already_in_the_sequence(spark):
    from lifecycle_recs.adapters.feeding import repeat_share

    frame = spark.createDataFrame(
        [
            ("u1", ["a", "b"], ["a", "c"]),  # a was seen: 1 of 2
            ("u2", ["c"], ["d"]),  # 0 of 1
            ("u3", ["a"], None),  # no labels
            ("u4", None, ["a"]),  # no sequence: 0 of 1
        ],
        "user_id string, item_ids array<string>, items_next_horizon array<string>",
    )
    assert repeat_share(frame) == pytest.approx(1 / 4)
    assert repeat_share(frame.where("user_id = 'u3'")) is None


@pytest.mark.slow
def test_an_artifact_saved_without_a_repeat_share_is_measured_once_on_its_snapshot(
    spark, reference, tmp_path
):
    # a lake from before train measured the share: score and evaluate measure it on the artifact's
    # own training snapshot and record it beside the artifact, instead of filtering seen items for
    # good
    from lifecycle_recs.adapters.feeding import artifact_repeat_share, repeat_share, training_frame
    from lifecycle_recs.dates import add_days
    from lifecycle_recs.ml import artifacts
    from tests.helpers import make_artifact

    cfg = reference.cfg
    t = add_days(reference.date, -cfg.lifecycle.horizon_days)
    want = repeat_share(training_frame(spark, cfg, t))
    assert want is not None and 0 < want < 1
    art = artifacts.load(make_artifact(tmp_path / "a"))
    assert "repeat_share" not in art.config
    art.config["training_date"] = t  # the reference lake's training snapshot
    assert artifact_repeat_share(spark, cfg, art) == pytest.approx(want)
    assert artifacts.load(art.path).config["repeat_share"] == pytest.approx(
        want
    )  # recorded: measured once
    # its snapshot is no longer in the lake: seen items are filtered, and nothing is recorded
    gone = artifacts.load(make_artifact(tmp_path / "b", seed=1))
    gone.config["training_date"] = "1999-01-01"
    assert artifact_repeat_share(spark, cfg, gone) is None
    assert "repeat_share" not in artifacts.load(gone.path).config
    # an artifact that has one is not measured again
    art.config["repeat_share"] = 0.5
    assert artifact_repeat_share(spark, cfg, art) == 0.5
