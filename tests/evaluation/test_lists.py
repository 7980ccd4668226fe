"""Metrics of the recommended lists: the Spark ranking metrics equal the numpy ones on
the same data; popularity bias and the explanations' peakedness."""

import numpy as np
import pytest

from lifecycle_recs.evaluation.lists import set_metrics_spark
from lifecycle_recs.ml.metrics import set_metrics
from tests.helpers import repart


def test_spark_set_metrics_equal_numpy_metrics(spark):
    rng = np.random.default_rng(0)
    recs, truth = {}, {}
    for u in range(60):
        recs[f"u{u}"] = list(rng.choice(40, size=int(rng.integers(1, 12)), replace=False))
        truth[f"u{u}"] = set(rng.choice(40, size=int(rng.integers(0, 6)), replace=False))
    rec_rows = [(u, r + 1, f"i{x}") for u, xs in recs.items() for r, x in enumerate(xs)]
    truth_rows = [(u, [f"i{x}" for x in sorted(t)]) for u, t in truth.items()]
    rdf = repart(spark.createDataFrame(rec_rows, "user_id string, rank int, item_id string"))
    tdf = repart(spark.createDataFrame(truth_rows, "user_id string, items array<string>"))
    for k in (1, 5, 10):
        got = set_metrics_spark(rdf, tdf, k)
        want = set_metrics(
            [[f"i{x}" for x in recs[u]] for u in recs],
            [{f"i{x}" for x in truth[u]} for u in recs],
            k,
        )
        assert got["users"] == want["users"]
        assert got[f"recall@{k}"] == pytest.approx(want[f"recall@{k}"], abs=1e-12)
        assert got[f"ndcg@{k}"] == pytest.approx(want[f"ndcg@{k}"], abs=1e-12)


def test_spark_set_metrics_without_users_is_nan_not_an_error(spark):
    rdf = spark.createDataFrame([("u", 1, "a")], "user_id string, rank int, item_id string")
    tdf = spark.createDataFrame([("u", [])], "user_id string, items array<string>")
    got = set_metrics_spark(rdf, tdf, 5)
    assert got["users"] == 0 and np.isnan(got["recall@5"])


def test_explanation_metrics_measure_entropy_and_peak_attention(spark):
    """Interests and explanations reported against uniform, from known weights."""
    from lifecycle_recs.evaluation.lists import explanation_metrics

    scored = spark.createDataFrame(
        [
            (
                "a",
                [0.5, 0.5],
                [0.2, 0.1],
            ),  # uniform over 2: entropy log 2; 30 steps (window 24): 0.2 x 24
            (
                "b",
                [0.9, 0.0, 0.0],
                [0.04],
            ),  # one category: entropy 0; 25 steps (window 24): 0.04 x 24
            ("c", [0.3], [0.5]),  # one weight: no entropy; 5 steps: too short
        ],
        "user_id string, top_category_weights array<double>, because_weights array<double>",
    )
    seq = spark.createDataFrame(
        [("a", 30), ("b", 25), ("c", 5)], "user_id string, sequence_length int"
    )
    got = explanation_metrics(scored, seq, max_len=24, min_steps=20)
    ours, uniform, n = got["top_category_entropy"]
    assert (
        n == 2
        and ours == pytest.approx(np.log(2) / 2)
        and uniform == pytest.approx((np.log(2) + np.log(3)) / 2)
    )
    ours, uniform, n = got["because_top_weight_x_steps[steps>=20]"]
    assert n == 2 and uniform == 1.0 and ours == pytest.approx((0.2 * 24 + 0.04 * 24) / 2)


def test_popularity_metrics_rank_items_by_events_and_split_head_from_tail(spark):
    from lifecycle_recs.evaluation.lists import popularity_metrics

    # events: a 4, b 2, c 2, d 1, z 1 (not in the catalog), e 0 -> ranks e, d=z, b=c, a over 6 items
    seqs = spark.createDataFrame(
        [("s1", ["a", "a", "b", "c", None]), ("s2", ["a", "a", "b", "c", "d", "z"])],
        "user_id string, item_ids array<string>",
    )
    catalog = spark.createDataFrame([(i,) for i in "abcde"], "item_id string")
    lists = {
        "one": spark.createDataFrame(
            [("u1", "a"), ("u1", "c"), ("u2", "e"), ("u2", "new")], "user_id string, item_id string"
        ),
        "two": spark.createDataFrame([("u1", "b")], "user_id string, item_id string"),
    }
    # the head is ceil(0.3 x 6) = 2 items: a, then b before c (same events, by item id)
    got = popularity_metrics(lists, repart(seqs), catalog, 0.3)
    pct, tail, n = got["one"]
    # percentiles a 1.0, c 0.6, e 0.0, and 0.0 for an item never seen; only a is in the head
    assert (
        n == 2
        and pct == pytest.approx((1.0 + 0.6 + 0.0 + 0.0) / 4)
        and tail == pytest.approx(3 / 4)
    )
    assert got["two"] == (pytest.approx(0.6), 0.0, 1)
    assert popularity_metrics({}, seqs, catalog, 0.3) == {}


def test_spark_recall_at_k_divides_by_every_relevant_item(spark):
    recs = spark.createDataFrame(
        [("u", 1, "a"), ("u", 2, "b")], "user_id string, rank int, item_id string"
    )
    truth = spark.createDataFrame([("u", ["a", "b", "c"])], "user_id string, items array<string>")
    got = set_metrics_spark(recs, truth, 2)
    assert got["recall@2"] == pytest.approx(2 / 3) and got["ndcg@2"] == pytest.approx(1.0)
