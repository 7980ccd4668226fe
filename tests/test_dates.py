import datetime as dt

import pytest

from lifecycle_recs import dates


def test_day_arithmetic():
    assert dates.add_days("2026-03-01", -1) == "2026-02-28"
    assert dates.training_date("2026-03-31", 30) == "2026-03-01"
    assert dates.iso(dt.datetime(2026, 1, 2, 23, 0)) == "2026-01-02"
    with pytest.raises(
        ValueError, match="snapshot_date must be a date YYYY-MM-DD, got '2026-13-01'"
    ):
        dates.parse_date("2026-13-01", "snapshot_date")


def test_utc_now_is_aware_utc_and_whole_seconds():
    now = dates.utc_now()
    assert now.utcoffset() == dt.timedelta(0) and now.microsecond == 0
    assert abs((dt.datetime.now(dt.timezone.utc) - now).total_seconds()) < 5


def test_the_run_clock_lands_in_spark_as_utc_whatever_the_driver_time_zone(spark, monkeypatch):
    """A naive utc_now was read by Spark as the driver's local time: on a driver in
    Europe/Berlin every *_at column was an hour or two off."""
    import time

    from pyspark.sql import functions as F

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        now = dates.utc_now()
        stored = spark.range(1).select(F.lit(now).cast("string")).first()[0]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert stored == now.strftime("%Y-%m-%d %H:%M:%S")
