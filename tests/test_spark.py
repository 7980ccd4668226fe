"""Platform invariants (item 12): an existing session is made UTC and ANSI."""

import datetime as dt

from pyspark.sql import functions as F

from lifecycle_recs.config import SparkSettings
from lifecycle_recs.spark import INVARIANTS, get_spark


def test_an_existing_session_is_put_in_utc_with_ansi(spark, caplog):
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    spark.conf.set("spark.sql.ansi.enabled", "false")
    try:
        got = get_spark(SparkSettings(use_existing_session=True))
        assert got is spark
        assert {k: spark.conf.get(k) for k in INVARIANTS} == INVARIANTS
        assert "was 'America/New_York'" in caplog.text
        # the same instant lands on its UTC date (New York would give the day before)
        row = (
            spark.createDataFrame(
                [(dt.datetime(2026, 3, 3, 2, 0, tzinfo=dt.timezone.utc),)], "ts timestamp"
            )
            .select(F.to_date("ts").alias("d"), F.date_format("ts", "HH").alias("h"))
            .first()
        )
        assert (row["d"], row["h"]) == (dt.date(2026, 3, 3), "02")
    finally:
        for k, v in INVARIANTS.items():
            spark.conf.set(k, v)
