import pytest

from lifecycle_recs.config import SyntheticConf
from lifecycle_recs.data.synthetic.shop import generate_events, item_catalog
from tests.helpers import sorted_rows

CONF = SyntheticConf(
    seed=11,
    n_users=12,
    n_items=40,
    days=60,
    partitions=2,
    bad_row_fraction=0.05,
    duplicate_fraction=0.05,
)


def test_catalog_is_seeded_and_complete():
    a, b = item_catalog(CONF), item_catalog(CONF)
    assert a.equals(b) and len(a) == 40 and a["item_id"].is_unique
    assert a["title"].notna().all() and (a["price"] > 0).all()


@pytest.mark.slow
def test_events_are_seeded_with_bad_rows_and_duplicates(spark):
    a = generate_events(spark, CONF)
    rows = sorted_rows(a)
    assert rows == sorted_rows(generate_events(spark, CONF))
    users = {r["event_user"] for r in rows if r["event_user"] and r["event_user"].startswith("U")}
    assert len(rows) > 12 and 1 < len(users) <= 12
    assert a.count() > a.distinct().count(), "exact duplicates are part of the data"
    assert {r["action"] for r in rows} >= {"view", "purchase"}


def test_true_interests_replay_the_generators_draws():
    """The ground truth of interest recovery: ``true_interests`` replays each user's latent
    draws, so a heavy user's viewed categories follow it (the views are sampled from it), and
    another user's truth does not fit as well."""
    import datetime as dt

    import numpy as np
    from scipy.stats import spearmanr

    from lifecycle_recs.data.synthetic.shop import _user_events, true_interests

    conf = SyntheticConf(
        seed=5, n_items=320, days=200, sessions_per_day=2.0, churn_hazard_per_day=0.001
    )
    cat = item_catalog(conf)
    cats = sorted(cat["category"].unique())
    cat_of = cat["category"].map({c: i for i, c in enumerate(cats)}).to_numpy()
    pop = [
        (np.flatnonzero(cat_of == c), np.full((cat_of == c).sum(), 1 / (cat_of == c).sum()))
        for c in range(len(cats))
    ]
    start = np.datetime64(dt.date.fromisoformat(conf.start_date), "us")
    truth = true_interests(conf, range(12), "2026-04-01")
    assert np.allclose(truth.groupby("user_id")["affinity"].sum(), 1.0)
    own, other = [], []
    for u in range(12):
        ev = _user_events(u, conf, cat_of, pop, cat["price"].to_numpy(), start)
        views = ev[(ev["action"] == "view") & (ev["ts"] < "2026-04-01")]
        share = (
            views["sku"]
            .map(dict(zip(cat["item_id"], cat["category"])))
            .value_counts()
            .reindex(cats)
            .fillna(0)
        )
        t = truth[truth["user_id"] == f"U{u:08d}"].set_index("category")["affinity"].reindex(cats)
        t_other = (
            truth[truth["user_id"] == f"U{(u + 1) % 12:08d}"]
            .set_index("category")["affinity"]
            .reindex(cats)
        )
        if len(views) >= 50:
            own.append(spearmanr(t, share).statistic)
            other.append(spearmanr(t_other, share).statistic)
    assert len(own) >= 5 and np.mean(own) > 0.5 and np.mean(own) > np.mean(other) + 0.3
