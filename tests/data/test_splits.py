import datetime as dt

from lifecycle_recs.config import LifecycleConf
from lifecycle_recs.data.splits import holdout_flag, labels_known


def test_holdout_is_stable_and_near_the_fraction(spark):
    users = spark.range(4000).selectExpr("CAST(id AS STRING) AS user_id")
    a = {r[0] for r in users.where(holdout_flag(0.1, 7)).collect()}
    b = {r[0] for r in users.repartition(3).where(holdout_flag(0.1, 7)).collect()}
    c = {r[0] for r in users.where(holdout_flag(0.1, 8)).collect()}
    assert a == b and a != c and 300 < len(a) < 500


def test_labels_known_only_when_events_reach_past_the_horizon(spark):
    conf = LifecycleConf(horizon_days=30)
    assert labels_known(None, "2026-01-01", conf, last_date=dt.date(2026, 1, 31))
    assert not labels_known(None, "2026-01-01", conf, last_date=dt.date(2026, 1, 30))
    ev = spark.createDataFrame([(dt.date(2026, 2, 1),)], "event_date date")
    assert labels_known(ev, "2026-01-01", conf) and not labels_known(ev, "2026-01-05", conf)
