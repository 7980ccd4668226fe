from lifecycle_recs.config import SyntheticConf
from lifecycle_recs.synthetic import generate_events, item_catalog
from tests.helpers import sorted_rows

CONF = SyntheticConf(seed=11, n_users=12, n_items=40, days=60, partitions=2, bad_row_fraction=0.05,
                     duplicate_fraction=0.05)


def test_catalog_is_seeded_and_complete():
    a, b = item_catalog(CONF), item_catalog(CONF)
    assert a.equals(b) and len(a) == 40 and a["item_id"].is_unique
    assert a["title"].notna().all() and (a["price"] > 0).all()


def test_events_are_seeded_with_bad_rows_and_duplicates(spark):
    a = generate_events(spark, CONF)
    rows = sorted_rows(a)
    assert rows == sorted_rows(generate_events(spark, CONF))
    users = {r["event_user"] for r in rows if r["event_user"] and r["event_user"].startswith("U")}
    assert len(rows) > 12 and 1 < len(users) <= 12
    assert a.count() > a.distinct().count(), "exact duplicates are part of the data"
    assert {r["action"] for r in rows} >= {"view", "purchase"}
