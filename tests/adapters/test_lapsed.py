"""The lapsed users of earlier periods (adapters/lapsed.py) are counted as the training
snapshot counts its own: at each cutoff, the same silence, tenure and active days that
``user_sequences`` holds and the same churn label that ``user_lifecycle`` holds, grouped
as ``ml.lapsed.TailCounts`` groups them, and nothing after the training snapshot is read."""

import datetime as dt

import numpy as np
import pytest

from lifecycle_recs.adapters.lapsed import cutoffs, earlier_tail_counts
from lifecycle_recs.config import LifecycleConf, SequenceConf
from lifecycle_recs.data.lifecycle import build_lifecycle
from lifecycle_recs.data.sequences import build_sequences
from lifecycle_recs.ml import lapsed
from tests.helpers import events_df

T, H, CHURN = "2026-09-18", 30, 60


def _rows(n_users=80, seed=3):
    """Users with bursts of activity and long silences over a year before T, some with events after
    T."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2025, 10, 1)
    rows = []
    for u in range(n_users):
        day = float(rng.integers(0, 120))
        while day < 420:
            for _ in range(int(rng.integers(1, 4))):
                ts = start + dt.timedelta(days=day, seconds=int(rng.integers(0, 86400)))
                rows.append((f"u{u}", f"i{rng.integers(0, 9)}", "view", ts.isoformat(sep=" "), 0))
                day += float(rng.exponential(3.0))
            day += float(rng.choice([5.0, 40.0, 90.0, 150.0]))
    return rows


def _expected(ev, cutoffs):
    """TailCounts of the lapsed labelled users at each cutoff, from the tables the training snapshot
    reads."""
    tail = lapsed.TailCounts(CHURN)
    lc = LifecycleConf(churn_days=CHURN, horizon_days=H)
    for c in cutoffs:
        seq = build_sequences(ev, c, SequenceConf(max_length=50))
        lab = build_lifecycle(ev, seq, c, lc, SequenceConf(max_length=50), labels_known=True)
        rows = seq.join(lab.select("user_id", "churned_within_horizon"), "user_id").collect()
        feats = np.zeros((len(rows), 5))
        feats[:, lapsed.SILENCE_FEATURE] = np.log1p([r["days_since_last_event"] for r in rows])
        feats[:, lapsed.TENURE_FEATURE] = np.log1p([r["tenure_days"] for r in rows])
        feats[:, lapsed.ACTIVE_DAYS_FEATURE] = np.log1p([r["active_days"] for r in rows])
        tail.add(
            feats, np.array([float(r["churned_within_horizon"]) for r in rows]), np.ones(len(rows))
        )
    return tail.arrays()


@pytest.mark.slow
def test_earlier_periods_are_counted_as_the_training_snapshot_counts_its_own(spark):
    rows = _rows()
    ev = events_df(spark, rows, n_partitions=4).cache()
    cuts = cutoffs(T, H, 5)
    assert cuts == ["2026-08-19", "2026-07-20", "2026-06-20", "2026-05-21"]
    x, n, k = earlier_tail_counts(ev, T, H, CHURN, 5)
    ex, en, ek = _expected(ev, cuts)
    assert en.sum() > 50 and 5 < (en - ek).sum() < en.sum()  # lapsed users, some of whom came back
    np.testing.assert_allclose(x, ex, atol=1e-9)
    np.testing.assert_array_equal(n, en)
    np.testing.assert_array_equal(k, ek)
    # grouped counts merge into the training snapshot's as if each user had been added
    tail = lapsed.TailCounts(CHURN)
    tail.add_groups(x, n, k)
    for got, want in zip(tail.arrays(), (ex, en, ek)):
        np.testing.assert_allclose(got, want, atol=1e-9)
    ev.unpersist()


def test_nothing_after_the_training_snapshot_is_read(spark):
    rows = _rows(n_users=30, seed=5)
    before = [r for r in rows if r[3][:10] <= T]
    assert len(before) < len(rows)
    got = earlier_tail_counts(events_df(spark, rows), T, H, CHURN, 4)
    want = earlier_tail_counts(events_df(spark, before), T, H, CHURN, 4)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    # one period is the training snapshot alone: nothing earlier to count
    assert [len(a) for a in earlier_tail_counts(events_df(spark, rows), T, H, CHURN, 1)] == [
        0,
        0,
        0,
    ]


def test_a_user_who_comes_back_is_counted_once_per_period_away():
    """The pooled fit is a discrete-time hazard model: fitted on periods that each ask
    'back within H?' of the users still away, it recovers the per-period parameters."""
    rng = np.random.default_rng(0)
    a, b = -3.0, 1.2  # logit of staying away at silence s: a + b log1p(s)
    tail = lapsed.TailCounts(CHURN)
    for _ in range(3000):
        s = float(rng.uniform(61, 120))
        for _period in range(6):
            p_away = 1 / (1 + np.exp(-(a + b * np.log1p(s))))
            away = rng.random() < p_away
            feats = np.zeros((1, 5))
            feats[0, lapsed.SILENCE_FEATURE] = np.log1p(s)
            tail.add(feats, np.array([float(away)]), np.ones(1))
            if not away:
                break
            s += H
    p = lapsed.fit(*tail.arrays(), CHURN)
    assert p["slope"] == pytest.approx(b, abs=0.25)
    assert p["intercept"] == pytest.approx(a, abs=1.3)
    assert p["applied"]
