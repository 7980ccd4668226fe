"""The incremental night equals a full rebuild: for a random event log delivered as files
over a random sequence of nights (duplicates, conflicting rows for one event id, late
events inside and beyond the allowed lateness, 1-4 shuffle partitions), after every night
the tables built incrementally equal, row for row, those a full rebuild from scratch over
every file delivered so far builds."""

import datetime as dt
import json
import os
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from lifecycle_recs.io import state, tables, versions
from lifecycle_recs.pipeline import run_nightly
from tests.helpers import HEADER, CrashAfterCommit, InjectedCrash, deliver, same_rows, stream_cfg

START = dt.date(2026, 6, 1)
LIFECYCLE = {  # short windows, so that a few days of events cross every one of them
    "new_days": 2,
    "at_risk_days": 2,
    "at_risk_min_days": 1,
    "churn_days": 3,
    "reactivation_window_days": 2,
    "transition_step_days": 1,
    "horizon_days": 2,
}
DATA_STAGES = ["ingest", "sequences", "lifecycle"]
ID_HEADER = HEADER.rstrip("\n") + ",eid\n"


def _cfg(make_cfg, folder, lake, with_ids, mode="auto"):
    cfg = stream_cfg(
        make_cfg,
        folder,
        event_id="eid" if with_ids else None,
        lifecycle=LIFECYCLE,
        sequences={"max_length": 3},
        state={"mode": mode},
        # events two days older than their file's newest are too late: quarantined
        validation={"allowed_lateness_days": 1},
    )
    return replace(cfg, lakehouse=str(lake))


def _night(spark, cfg, d):
    return run_nightly(spark, cfg, d, DATA_STAGES, training_snapshot=True)


def _tables(spark, cfg, d):
    t = (dt.date.fromisoformat(d) - dt.timedelta(days=LIFECYCLE["horizon_days"])).isoformat()
    out = {
        "events": tables.read(spark, cfg, "events").drop("ingested_at"),
        "events_quarantine": tables.read(spark, cfg, "events_quarantine").drop("ingested_at"),
    }
    for name in ("user_sequences", "user_lifecycle"):
        out[name] = tables.read(spark, cfg, name).where(F.col("snapshot_date").isin(d, t))
    return out


def _modes(spark, cfg, run_id):
    rows = (
        tables.read(spark, cfg, "pipeline_runs")
        .where((F.col("run_id") == run_id) & F.col("stage").isin("sequences", "lifecycle"))
        .collect()
    )
    return {r["stage"]: json.loads(r["counts"]) for r in rows}


def _event(draw, day, n_users=4, n_items=5):
    late = draw(st.integers(0, 2))  # days before the night's date (late when > 0)
    day = START + dt.timedelta(days=max(day - late, 0))
    hour = draw(st.sampled_from([0, 9, 23]))
    return [
        f"u{draw(st.integers(0, n_users - 1))}",
        f"i{draw(st.integers(0, n_items - 1))}",
        draw(st.sampled_from(["view", "click", "order"])),
        f"{day} {hour:02d}:00:00",
        draw(st.sampled_from(["0", "5", "12.5"])),
    ]


@st.composite
def deliveries(draw):
    """(with event ids, nights: each (its day, a list of files, each a list of CSV rows),
    shuffle partitions). Nights are one day apart or far enough apart (40 days) that the
    earlier ones are folded into user_base; a backfill file holds only events of an earlier
    night's day (not late by the per-file rule: it may reach into the folded days)."""
    with_ids = draw(st.booleans())
    nights, sent, day = [], [], 0
    for night in range(draw(st.integers(2, 4))):
        day += draw(st.sampled_from([1, 40])) if night else 0
        files = []
        for _ in range(draw(st.integers(1, 2))):
            rows = [_event(draw, day) for _ in range(draw(st.integers(1, 6)))]
            if night and draw(st.integers(0, 3)) == 0:  # a backfill file
                old = draw(st.sampled_from([n[0] for n in nights]))
                rows = [_event(draw, old) for _ in range(draw(st.integers(1, 3)))]
            if sent and draw(st.booleans()):  # a re-sent row: an exact duplicate
                rows.append(list(draw(st.sampled_from(sent))))
            if with_ids:
                for r in rows:
                    r.append(r[5] if len(r) > 5 else f"e{draw(st.integers(0, 12))}")
                # a correction: an id seen before, with another value (the larger row wins)
                if sent and draw(st.booleans()):
                    old = list(draw(st.sampled_from(sent)))
                    old[4] = draw(st.sampled_from(["1", "99"]))
                    rows.append(old)
            sent.extend(tuple(r) for r in rows)
            files.append(rows)
        nights.append((day, files))
    return with_ids, nights, draw(st.integers(1, 4))


# A night with event ids: a late event, a re-sent row and a correction of an earlier id.
WITH_IDS = (
    True,
    [
        (0, [[["u0", "i0", "view", "2026-06-01 09:00:00", "0", "e1"],
              ["u1", "i1", "order", "2026-06-01 23:00:00", "5", "e2"]]]),
        (1, [[["u0", "i2", "order", "2026-06-02 00:00:00", "12.5", "e3"],
              ["u1", "i1", "order", "2026-06-01 23:00:00", "5", "e2"],
              ["u2", "i0", "click", "2026-05-31 09:00:00", "0", "e4"]],
             [["u1", "i1", "order", "2026-06-01 23:00:00", "99", "e2"]]]),
        (2, [[["u0", "i3", "view", "2026-06-03 09:00:00", "0", "e5"],
              ["u2", "i0", "click", "2026-05-31 09:00:00", "1", "e4"]]]),
    ],
    3,
)  # fmt: skip
# Forty days later the first night's events are folded into user_base (it moves forward);
# the next night a backfill file changes a folded day (user_base is rebuilt).
FOLDED = (
    False,
    [
        (0, [[["u0", "i0", "view", "2026-06-01 09:00:00", "0"],
              ["u1", "i1", "order", "2026-06-01 23:00:00", "5"],
              ["u1", "i2", "order", "2026-06-01 23:00:00", "7"]]]),
        (40, [[["u0", "i2", "order", "2026-07-11 00:00:00", "12.5"],
               ["u2", "i0", "click", "2026-07-10 09:00:00", "0"]]]),
        (41, [[["u1", "i3", "view", "2026-07-12 09:00:00", "0"]],
              [["u0", "i4", "order", "2026-06-01 23:00:00", "99"]]]),
    ],
    2,
)  # fmt: skip
FOLDED_BASE = ["rebuild", "advance", "rebuild"]


@pytest.mark.slow
@settings(
    # more examples: LIFECYCLE_PROPERTY_EXAMPLES=50 (the explicit one always runs)
    max_examples=int(os.environ.get("LIFECYCLE_PROPERTY_EXAMPLES", "1")),
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a few Spark runs
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(case=WITH_IDS)
@example(case=FOLDED)
@given(case=deliveries())
def test_every_incremental_night_equals_a_full_rebuild_of_every_file_so_far(
    spark, make_cfg, tmp_path_factory, case
):
    with_ids, nights, partitions = case
    root = tmp_path_factory.mktemp("incremental")
    landing = root / "landing"
    inc = _cfg(make_cfg, landing, root / "inc", with_ids)
    header = ID_HEADER if with_ids else HEADER
    before = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
    base = []
    try:
        for night, (day, files) in enumerate(nights):
            for k, rows in enumerate(files):
                deliver(landing, f"n{night}-{k}.csv", rows, header)
            d = (START + dt.timedelta(days=day)).isoformat()
            run = _night(spark, inc, d)
            modes = _modes(spark, inc, run.run_id)
            base.append(modes["sequences"]["base"])
            # the first night has no state; lifecycle reads the one sequences brought up to date
            assert modes["sequences"]["mode"] == ("full" if night == 0 else "incremental"), modes
            assert modes["lifecycle"]["mode"] == "incremental", modes
            full = _cfg(make_cfg, landing, root / f"full{night}", with_ids, mode="full")
            _night(spark, full, d)
            a, b = _tables(spark, inc, d), _tables(spark, full, d)
            for name in a:
                assert same_rows(a[name], b[name]), (name, night, with_ids, partitions)
        if case == FOLDED:
            assert base == FOLDED_BASE
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)


NIGHT1 = [
    ("u1", "i1", "view", "2026-06-01 10:00:00", "0"),
    ("u1", "i2", "order", "2026-06-01 11:00:00", "12.5"),
    ("u2", "i1", "view", "2026-06-01 12:00:00", "0"),
]
NIGHT2 = [
    ("u1", "i3", "view", "2026-06-02 10:00:00", "0"),
    ("u3", "i1", "order", "2026-06-01 23:00:00", "7"),  # late: dated the night before
]


@pytest.fixture
def two_nights(make_cfg, tmp_path):
    landing = tmp_path / "landing"
    deliver(landing, "day1.csv", NIGHT1)
    return landing, lambda mode="auto": _cfg(make_cfg, landing, tmp_path / "lake", False, mode)


@pytest.mark.slow
def test_auto_rebuilds_in_full_and_says_why_when_the_settings_changed(spark, two_nights):
    landing, cfg = two_nights
    first = _night(spark, cfg(), "2026-06-01")
    assert _modes(spark, cfg(), first.run_id)["sequences"]["mode_reason"] == (
        "no user_days state yet"
    )
    deliver(landing, "day2.csv", NIGHT2)
    longer = replace(cfg(), sequences=replace(cfg().sequences, max_length=5))
    second = _night(spark, longer, "2026-06-02")
    modes = _modes(spark, longer, second.run_id)
    assert modes["sequences"]["mode"] == "full"
    assert "sequences.max_length" in modes["sequences"]["mode_reason"]
    assert modes["lifecycle"]["mode"] == "incremental"  # the state is fresh again
    assert state.recorded_version(spark, longer) == versions.current_version(
        spark, longer, "events"
    )


@pytest.mark.slow
def test_strict_incremental_refuses_without_a_state(spark, two_nights):
    _, cfg = two_nights
    with pytest.raises(state.IncrementalUnavailable, match="no user_days state yet"):
        _night(spark, cfg("incremental"), "2026-06-01")
    assert not tables.exists(spark, cfg(), "user_sequences")


@pytest.mark.slow
@pytest.mark.parametrize("table", ["user_days", "user_base"])
def test_a_crash_after_a_state_commit_then_a_rerun_equals_a_clean_night(
    spark, two_nights, make_cfg, tmp_path, table
):
    landing, cfg = two_nights
    _night(spark, cfg(), "2026-06-01")
    deliver(landing, "day2.csv", NIGHT2)
    with CrashAfterCommit(table), pytest.raises(InjectedCrash):
        _night(spark, cfg(), "2026-06-02")
    rerun = _night(spark, cfg(), "2026-06-02")
    assert _modes(spark, cfg(), rerun.run_id)["sequences"]["mode"] == "incremental"
    clean = _cfg(make_cfg, landing, tmp_path / "clean", False, "full")
    _night(spark, clean, "2026-06-02")
    a, b = _tables(spark, cfg(), "2026-06-02"), _tables(spark, clean, "2026-06-02")
    for name in a:
        assert same_rows(a[name], b[name]), name
    # the late event (dated night 1) is in the state, in night 1's date
    late = tables.read(spark, cfg(), "user_days").where(F.col("user_id") == "u3").count()
    assert late == 1


@pytest.mark.slow
def test_auto_says_why_when_the_change_feed_has_a_gap_or_events_was_replaced(spark, two_nights):
    from lifecycle_recs.stages.ingest import ingest_source

    landing, cfg = two_nights
    _night(spark, cfg(), "2026-06-01")
    events = tables.path(cfg(), "events")
    spark.sql(
        f"ALTER TABLE delta.`{events}` SET TBLPROPERTIES (delta.enableChangeDataFeed = false)"
    )
    deliver(landing, "day2.csv", NIGHT2)
    ingest_source(spark, cfg())
    plan = state.plan(spark, cfg())
    assert plan.mode == "full" and "change data feed of events does not cover" in plan.reason
    with pytest.raises(state.IncrementalUnavailable, match="does not cover"):
        state.plan(spark, cfg("incremental"))
    # an events table rebuilt from scratch is older than the state
    import shutil

    shutil.rmtree(events)
    shutil.rmtree(tables.path(cfg(), "_checkpoints"))
    ingest_source(spark, cfg())
    plan = state.plan(spark, cfg())
    assert plan.mode == "full" and "the events table was replaced" in plan.reason
