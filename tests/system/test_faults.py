"""Faults between commits (item 7): a stage that crashes after one of its commits,
then a rerun, leaves tables equal to a clean run; pipeline_runs records every
stage and publishes a night only when all its stages succeeded."""

import json

import pytest
from pyspark.sql import functions as F

from lifecycle_recs.dates import add_days
from lifecycle_recs.io import runs, tables
from lifecycle_recs.pipeline import run_nightly
from tests.helpers import CrashAfterCommit, InjectedCrash, sorted_rows

STAGES = ["ingest", "sequences", "lifecycle"]
VOLATILE = ("ingested_at", "updated_at", "scored_at", "evaluated_at")
DATA = ("events", "events_quarantine", "items", "user_sequences", "user_lifecycle")


def _state(spark, cfg):
    return {t: sorted_rows(tables.read(spark, cfg, t).drop(*VOLATILE)) for t in DATA}


def _runs(spark, cfg):
    return [
        r.asDict()
        for r in tables.read(spark, cfg, "pipeline_runs").orderBy("finished_at").collect()
    ]


@pytest.mark.slow
def test_a_crash_between_the_commits_of_each_stage_then_a_rerun_equals_a_clean_run(
    spark, make_cfg, reference, tmp_path
):
    # the clean night is the shared reference (same raw files; it also ran score, which these lakes
    # do not)
    clean, d = reference.cfg, reference.date
    assert runs.last_published_date(spark, clean) == d
    run_rows = _runs(spark, clean)
    assert [(r["stage"], r["status"]) for r in run_rows] == [
        (s, "succeeded") for s in reference.stages
    ] + [("run", "published")]
    assert len({r["run_id"] for r in run_rows}) == 1
    ingest_row = run_rows[0]
    assert {"events", "events_quarantine", "items"} <= set(ingest_row["output_versions"])
    assert json.loads(ingest_row["counts"])["rows_in"] > 0
    want = _state(spark, clean)

    cfg = make_cfg(**reference.conf, stages=STAGES, lakehouse=str(tmp_path / "crashed"))
    # ingest commits quarantine, then events, then items; sequences and lifecycle commit D, then T
    for table, failed_stage in (
        ("events_quarantine", "ingest"),
        ("events", "ingest"),
        ("user_sequences", "sequences"),
        ("user_lifecycle", "lifecycle"),
    ):
        with CrashAfterCommit(table) as hook, pytest.raises(InjectedCrash):
            run_nightly(spark, cfg, stages=STAGES, training_snapshot=True)
        assert hook.fired
        last = _runs(spark, cfg)[-1]
        assert (last["stage"], last["status"]) == (
            failed_stage,
            "failed",
        ) and "InjectedCrash" in last["error"]
        assert runs.last_published_date(spark, cfg) is None  # nothing half written is published
    rerun = run_nightly(spark, cfg, stages=STAGES, training_snapshot=True)
    assert rerun.snapshot_date == d
    assert runs.last_published_date(spark, cfg) == d
    got = _state(spark, cfg)
    for t in DATA:
        assert got[t] == want[t], t
    statuses = [(r["stage"], r["status"]) for r in _runs(spark, cfg)]
    assert statuses.count(("run", "published")) == 1 and statuses.count(("ingest", "failed")) == 2
    # a later failed night leaves the published date where it was
    with CrashAfterCommit("user_sequences"), pytest.raises(InjectedCrash):
        run_nightly(spark, cfg, add_days(d, 1), stages=["sequences"])
    assert runs.last_published_date(spark, cfg) == d
    assert tables.read(spark, cfg, "pipeline_runs").where(F.col("status") == "failed").count() == 5
    # a night split over two jobs is published when its last stage succeeds, not before
    split = make_cfg(**reference.conf, stages=STAGES, lakehouse=str(tmp_path / "split"))
    run_nightly(spark, split, d, stages=["ingest", "sequences"], training_snapshot=True)
    assert runs.last_published_date(spark, split) is None
    assert [r["status"] for r in _runs(spark, split) if r["stage"] == "run"] == ["partial"]
    run_nightly(spark, split, d, stages=["lifecycle"], training_snapshot=True)
    assert runs.last_published_date(spark, split) == d
