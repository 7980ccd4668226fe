import pytest

from lifecycle_recs.config import LifecycleConf, SequenceConf
from lifecycle_recs.data.lifecycle import build_lifecycle
from lifecycle_recs.data.sequences import build_sequences
from lifecycle_recs.data.splits import labels_known
from tests.helpers import events_df

D = "2026-06-30"
C = LifecycleConf(
    new_days=14,
    at_risk_days=21,
    at_risk_gap_multiplier=3.0,
    at_risk_min_days=7,
    churn_days=60,
    reactivation_window_days=30,
    transition_step_days=7,
    horizon_days=30,
)


def _days(user, dates, t="view", v=0, item="i"):
    return [(user, item, t, f"{d} 12:00:00", v) for d in dates]


ROWS = (
    _days("new", ["2026-06-25"])
    + _days("active", ["2026-05-20", "2026-06-10", "2026-06-20", "2026-06-29"])
    + _days("risk", ["2026-03-01", "2026-05-01", "2026-06-05"])  # 25 days silent
    + _days("churn", ["2026-01-01", "2026-03-01"])  # 121 days silent
    + _days("react", ["2026-01-01", "2026-03-01", "2026-06-20"])  # back after 111 days
    + _days(
        "gap", [f"2026-06-{d:02d}" for d in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)]
    )  # daily user, 20 days silent
    + _days("active", ["2026-07-05"], t="purchase", v=12.0, item="x")  # future: label only
    + _days("risk", ["2026-08-15"])  # beyond D+H
)


@pytest.fixture(scope="module")
def lc(spark):
    ev = events_df(spark, ROWS)
    seq = build_sequences(ev, D, SequenceConf())
    return {r["user_id"]: r for r in build_lifecycle(ev, seq, D, C, SequenceConf(), True).collect()}


def test_stages(lc):
    assert {u: r["stage"] for u, r in lc.items()} == {
        "new": "new",
        "active": "active",
        "risk": "at_risk",
        "churn": "churned",
        "react": "reactivated",
        "gap": "at_risk",
    }  # 20 days > 3 x median gap 1 day


def test_previous_stage_and_transition(lc):
    assert lc["new"]["previous_stage"] is None and lc["new"]["stage_changed"]
    assert lc["react"]["previous_stage"] == "reactivated"
    assert lc["risk"]["previous_stage"] == "active"  # 18.5 days silent at D-7
    assert lc["risk"]["stage_changed"] and not lc["active"]["stage_changed"]
    assert lc["gap"]["previous_stage"] == "at_risk"


def test_labels_only_look_at_the_horizon(lc):
    assert lc["active"]["churned_within_horizon"] is False
    assert lc["active"]["value_next_horizon"] == 12.0
    assert lc["active"]["items_next_horizon"] == ["x"]
    assert lc["risk"]["churned_within_horizon"] is True  # its next event is after D+H
    assert lc["risk"]["events_next_horizon"] == 0


def test_no_labels_when_future_unknown(spark):
    ev = events_df(spark, ROWS)
    assert labels_known(ev, D, C)
    assert not labels_known(ev, "2026-08-01", C)
    seq = build_sequences(ev, "2026-08-01", SequenceConf())
    rows = build_lifecycle(ev, seq, "2026-08-01", C, SequenceConf(), False).collect()
    assert rows and all(r["churned_within_horizon"] is None and not r["has_labels"] for r in rows)
