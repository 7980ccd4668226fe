"""The shared column expressions: day bounds, fractional days, an order-independent sum."""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from lifecycle_recs.data.expressions import days_between, end_of_day, exact_sum, shift_days


def test_day_bounds_and_fractional_days(spark):
    row = (
        spark.createDataFrame([(dt.datetime(2026, 3, 1, 18, 0),)], "ts timestamp")
        .select(
            end_of_day("2026-03-01").alias("end"),
            days_between(end_of_day("2026-03-01"), F.col("ts")).alias("days"),
            shift_days(F.col("ts"), -1.5).alias("earlier"),
        )
        .first()
    )
    assert row["end"] == dt.datetime(2026, 3, 2)  # exclusive upper bound: the next midnight
    assert row["days"] == pytest.approx(0.25)
    assert row["earlier"] == dt.datetime(2026, 2, 28, 6, 0)


def test_exact_sum_is_the_same_in_any_order_and_zero_when_empty(spark):
    values = [0.1] * 10 + [1e9, -1e9, 0.3]
    forward = spark.createDataFrame([(v,) for v in values], "v double")
    backward = spark.createDataFrame([(v,) for v in reversed(values)], "v double").repartition(3)
    a = forward.agg(exact_sum(F.col("v"))).first()[0]
    b = backward.agg(exact_sum(F.col("v"))).first()[0]
    assert a == b == pytest.approx(1.3)
    assert forward.where("v > 1e10").agg(exact_sum(F.col("v"))).first()[0] == 0.0
