"""The driver SIGKILLed (no cleanup, no ``finally``): during score, between its
commits, and during an artifact save; then a rerun converges to what a run
without the fault gives."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from lifecycle_recs.io import runs, tables
from lifecycle_recs.ml import artifacts
from lifecycle_recs.pipeline import run_nightly
from tests.helpers import ROOT, make_artifact, sorted_rows

VOLATILE = ("ingested_at", "updated_at", "scored_at", "evaluated_at")
SCORED = ("user_interests", "retention_scores", "recommendations")


def _run(args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "lib")]))
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "system" / "fault_runner.py"), *args],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize("where", ["rename", "replace"])
def test_a_driver_killed_during_an_artifact_save_leaves_no_half_artifact_and_a_rerun_converges(
    tmp_path, where
):
    root = tmp_path / "artifacts"
    p = _run(["--die-in-artifact-save", where, "--artifact-root", str(root)])
    assert p.returncode == -9 and "FAULT SIGKILL" in p.stdout, p.stdout + p.stderr[-3000:]
    # nothing half written is visible: no version (before the rename) or no promotion (before the
    # switch)
    versions = [v for v in os.listdir(root) if not v.startswith(".") and v != artifacts.PROMOTED]
    assert artifacts.promoted_version(str(root), as_of="2026-01-01") is None
    assert versions == ([] if where == "rename" else versions)
    for v in versions:  # a complete version is complete: its checksums verify
        artifacts.load(str(root / v))
    d = make_artifact(root)  # the rerun
    assert artifacts.resolve(str(root), as_of="2026-01-01") == d
    art = artifacts.load(artifacts.resolve(str(root), as_of="2026-01-01"))
    assert art.version == os.path.basename(d)


@pytest.mark.slow
def test_a_driver_killed_between_the_commits_of_score_then_a_rerun_equals_a_clean_run(
    spark, make_cfg, reference, tmp_path
):
    # the clean night is the shared reference (ingest .. score, same raw files and promoted
    # artifact)
    conf = {**reference.conf, "stages": ["ingest", "sequences", "lifecycle", "score"]}
    clean, d = reference.cfg, reference.date
    cfg = make_cfg(lakehouse=str(tmp_path / "killed"), **conf)
    run_nightly(spark, cfg, d, stages=["ingest", "sequences", "lifecycle"])

    conf_file = tmp_path / "killed.yaml"
    conf_file.write_text(
        yaml.safe_dump(
            {
                **conf,
                "lakehouse": str(tmp_path / "killed"),
                "validation": {"on_quarantine_excess": "warn"},
            }
        )
    )
    p = _run(
        [
            "--conf",
            str(conf_file),
            "--master",
            "local[2]",
            "--stages",
            "score",
            "--date",
            d,
            "--die-after",
            "user_interests",
        ]
    )
    assert p.returncode == -9 and "FAULT SIGKILL of the driver" in p.stdout, (
        p.stdout + p.stderr[-3000:]
    )
    assert tables.snapshots(spark, cfg, "user_interests") == [d]
    assert not tables.exists(spark, cfg, "recommendations")
    run_rows = tables.read(spark, cfg, "pipeline_runs").collect()
    assert not [
        r for r in run_rows if r["stage"] == "score"
    ]  # the killed stage never recorded success
    assert runs.last_published_date(spark, cfg) is None  # score has not succeeded for D
    run_nightly(spark, cfg, d, stages=["score"])
    assert runs.last_published_date(spark, cfg) == d
    for t in SCORED:
        assert sorted_rows(tables.read(spark, cfg, t).drop(*VOLATILE)) == sorted_rows(
            tables.read(spark, clean, t).drop(*VOLATILE)
        ), t
    assert (
        json.loads(
            tables.read(spark, cfg, "pipeline_runs").where("stage = 'score'").first()["counts"]
        )["users"]
        > 0
    )
