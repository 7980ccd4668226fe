import datetime as dt

from pyspark.sql import functions as F

from conftest import repart


def events_df(spark, rows, n_partitions=3):
    """rows: (user_id, item_id, event_type, 'YYYY-mm-dd HH:MM:SS', value) -> events shape."""
    df = spark.createDataFrame(
        [(u, i, t, dt.datetime.fromisoformat(ts), float(v)) for u, i, t, ts, v in rows],
        "user_id string, item_id string, event_type string, event_ts timestamp, value double")
    df = df.withColumn("event_date", F.to_date("event_ts"))
    return repart(df, n_partitions)
