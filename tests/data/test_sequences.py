import datetime as dt

import pytest

from lifecycle_recs.config import SequenceConf
from lifecycle_recs.data.sequences import build_sequences
from tests.helpers import events_df

ROWS = [
    # u1: a tie in time (view and purchase at the same second) and an event after D
    ("u1", "a", "view", "2026-03-01 10:00:00", 0),
    ("u1", "b", "purchase", "2026-03-02 12:00:00", 20),
    ("u1", "b", "view", "2026-03-02 12:00:00", 0),
    ("u1", "c", "view", "2026-03-03 23:59:59", 0),
    ("u1", "z", "purchase", "2026-03-04 00:00:00", 99),  # after D: excluded
    # u2: one event, no item
    ("u2", None, "purchase", "2026-02-01 00:00:00", 5),
    # u3: only after D -> absent
    ("u3", "a", "view", "2026-03-10 00:00:00", 0),
]
D = "2026-03-03"


def _by_user(df):
    return {r["user_id"]: r for r in df.collect()}


def test_sequence_order_ties_and_no_future(spark):
    out = _by_user(build_sequences(events_df(spark, ROWS), D, SequenceConf(max_length=50)))
    assert set(out) == {"u1", "u2"}
    u1 = out["u1"]
    assert u1["item_ids"] == ["a", "b", "b", "c"]
    assert u1["event_types"] == ["view", "view", "purchase", "view"]  # tie: funnel order
    assert u1["time_gaps_hours"][0] == 0.0
    assert u1["time_gaps_hours"][1] == pytest.approx(26.0)
    assert u1["time_gaps_hours"][2] == 0.0
    assert u1["n_events"] == 4 and u1["n_value_events"] == 1
    assert u1["monetary_total"] == 20.0
    assert u1["active_days"] == 3
    assert u1["days_since_last_event"] == pytest.approx(1 / 86400)
    assert u1["tenure_days"] == pytest.approx(3 - 10 / 24)


def test_one_event_user_and_null_item(spark):
    u2 = _by_user(build_sequences(events_df(spark, ROWS), D, SequenceConf()))["u2"]
    assert u2["item_ids"] == [None] and u2["sequence_length"] == 1
    assert u2["time_gaps_hours"] == [0.0] and u2["monetary_total"] == 5.0
    assert u2["days_since_last_event"] == pytest.approx(31.0)


def test_last_n_keeps_the_most_recent(spark):
    rows = [
        (
            "u",
            f"i{k:02d}",
            "view",
            (dt.datetime(2026, 1, 1) + dt.timedelta(hours=k)).isoformat(" "),
            0,
        )
        for k in range(30)
    ]
    u = _by_user(
        build_sequences(events_df(spark, rows, 4), "2026-02-01", SequenceConf(max_length=5))
    )["u"]
    assert u["item_ids"] == ["i25", "i26", "i27", "i28", "i29"]
    assert u["n_events"] == 30 and u["sequence_length"] == 5


def test_same_result_on_any_partitioning(spark):
    a = build_sequences(events_df(spark, ROWS, 1), D, SequenceConf()).orderBy("user_id").collect()
    b = build_sequences(events_df(spark, ROWS, 5), D, SequenceConf()).orderBy("user_id").collect()
    assert a == b


def test_a_hot_user_is_cut_to_the_last_n_before_the_shuffle(spark):
    """Item 15: the last N steps are kept by a per-task group limit before the
    shuffle (the plan has WindowGroupLimit), not by collecting the whole history."""
    from pyspark.sql import functions as F

    n_hot = 20000
    ev = (
        spark.range(n_hot, numPartitions=4)
        .select(
            F.when(F.col("id") < n_hot - 10, F.lit("hot"))
            .otherwise(F.concat(F.lit("u"), F.col("id")))
            .alias("user_id"),
            F.concat(F.lit("i"), (F.col("id") % 97).cast("string")).alias("item_id"),
            F.lit("view").alias("event_type"),
            F.timestamp_seconds(F.lit(1767225600) + F.col("id") * 60).alias("event_ts"),
            F.lit(0.0).alias("value"),
        )
        .withColumn("event_date", F.to_date("event_ts"))
    )
    out = build_sequences(ev, "2026-12-31", SequenceConf(max_length=7))
    plan = out._jdf.queryExecution().executedPlan().toString()
    assert "WindowGroupLimit" in plan, plan
    hot = _by_user(out.where(F.col("user_id") == "hot"))["hot"]
    assert hot["n_events"] == n_hot - 10 and hot["sequence_length"] == 7
    assert hot["item_ids"] == [f"i{k % 97}" for k in range(n_hot - 17, n_hot - 10)]
    assert out.count() == 11


def test_money_sums_do_not_depend_on_the_order_rows_are_added_in(spark):
    """Found by killing an executor (tests/system/test_cluster_faults.py): a double sum
    differs in its last bits with the partitioning, so a retried or rerun night
    was not identical (92.55 vs 92.55000000000001). Sums are exact now."""
    rows = [
        ("u", f"i{k}", "purchase", f"2026-01-0{k + 1} 00:00:00", v)
        for k, v in enumerate([0.1, 0.2, 0.3])
    ]
    for n in (1, 2, 3):
        u = _by_user(build_sequences(events_df(spark, rows, n), "2026-02-01", SequenceConf()))["u"]
        assert u["monetary_total"] == 0.6, n
