"""The nightly evaluation's baselines."""

import numpy as np

from lifecycle_recs.evaluation.nightly import most_popular_recs, popular_ranks


def test_most_popular_filters_seen_items(spark):
    seqs = spark.createDataFrame(
        [("u1", ["a", "a", "b"]), ("u2", ["a", "c"]), ("u3", ["b"])],
        "user_id string, item_ids array<string>",
    )
    users = spark.createDataFrame([("u1",), ("u3",)], "user_id string")
    got = {
        (r["user_id"], r["rank"]): r["item_id"]
        for r in most_popular_recs(seqs, users, 2, True).collect()
    }
    assert got == {("u1", 1): "c", ("u3", 1): "a", ("u3", 2): "c"}
    kept = (
        most_popular_recs(seqs, users, 2, False).where("user_id = 'u1'").orderBy("rank").collect()
    )
    assert [r["item_id"] for r in kept] == ["a", "b"]
    assert popular_ranks(np.array([-1, -1, 5.0, 3.0, 5.0]), np.array([2, 3])).tolist() == [1, 3]
