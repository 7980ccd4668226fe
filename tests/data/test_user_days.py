"""Snapshots aggregated from day rows equal the snapshots built from the events, bit for
bit: ties in time, unknown event types, item-less events, a day with more than N events,
the N steps spread over several days, and every lifecycle window's edge."""

import pytest

from lifecycle_recs.config import LifecycleConf, SequenceConf
from lifecycle_recs.data.lifecycle import build_lifecycle
from lifecycle_recs.data.sequences import build_sequences
from lifecycle_recs.data.user_days import (
    build_user_days,
    fold,
    history,
    lifecycle_from_days,
    sequences_from_days,
    window_reach,
)
from lifecycle_recs.dates import add_days
from tests.helpers import events_df, same_rows

ROWS = [
    # u1: three steps on the last day, more than N=3 on an earlier one, ties in time
    ("u1", "a", "view", "2026-03-01 10:00:00", 0),
    ("u1", "b", "purchase", "2026-03-01 10:00:00", 20),
    ("u1", "b", "view", "2026-03-01 10:00:00", 0),
    ("u1", "c", "view", "2026-03-01 23:59:59", 0),
    ("u1", "c", "view", "2026-03-01 23:59:59", 0),  # the same event twice in this frame
    ("u1", "d", "purchase", "2026-03-09 00:00:00", 0.1),
    ("u1", "d", "purchase", "2026-03-09 00:00:00", 0.2),
    ("u1", "e", "click", "2026-03-10 12:00:00", 0),
    # u2: item-less events and unknown event types tied in time (ordered by the type)
    ("u2", None, "purchase", "2026-02-01 00:00:00", 5),
    ("u2", None, "refund", "2026-03-05 08:00:00", 0),
    ("u2", None, "gift", "2026-03-05 08:00:00", 0),
    ("u2", "", "gift", "2026-03-05 08:00:00", 0),
    # u3: silent for longer than churn_days, then back (reactivated), and events after D
    ("u3", "a", "view", "2026-01-02 00:00:00", 0),
    ("u3", "a", "rating", "2026-03-08 00:00:00", 4),
    ("u3", "f", "purchase", "2026-03-12 00:00:00", 7.25),
    ("u3", "g", "view", "2026-04-01 00:00:00", 0),
    # u4: only after D
    ("u4", "a", "view", "2026-03-11 00:00:00", 0),
]
LC = LifecycleConf(
    new_days=3, at_risk_days=2, churn_days=20, reactivation_window_days=5, horizon_days=7
)


@pytest.mark.parametrize("folded", [False, True])
@pytest.mark.parametrize("d,labels", [("2026-03-10", True), ("2026-03-05", True)])
def test_snapshots_from_day_rows_equal_the_snapshots_from_events(spark, d, labels, folded):
    """``folded``: the days up to the day before D's windows are folded into a base row."""
    conf = SequenceConf(max_length=3)
    events = events_df(spark, ROWS)
    days = build_user_days(events, conf)
    upper = add_days(d, LC.horizon_days)
    if folded:
        as_of = add_days(d, -window_reach(LC) - 1)
        base = fold(history(days, as_of), as_of, conf)
        assert base.count() == 2  # u2 and u3 have days before as_of
        rows = history(days, upper, base, as_of)
    else:
        rows = history(days, upper)
    seq_events = build_sequences(events, d, conf)
    seq_days = sequences_from_days(rows, d, conf)
    assert same_rows(seq_events, seq_days)
    assert seq_days.count() == 3
    lc_events = build_lifecycle(events, seq_events, d, LC, conf, labels)
    lc_days = lifecycle_from_days(rows, seq_days, d, LC, labels)
    assert same_rows(lc_events, lc_days)


def test_a_day_row_keeps_only_its_last_n_steps_but_counts_every_event(spark):
    days = build_user_days(events_df(spark, ROWS), SequenceConf(max_length=3))
    u1 = days.where("user_id = 'u1' AND event_date = '2026-03-01'").first()
    assert u1["n_events"] == 5 and u1["n_value_events"] == 1
    assert [s["item"] for s in u1["steps"]] == ["b", "c", "c"]
    assert u1["items"] == ["a", "b", "c"]
