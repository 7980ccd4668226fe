"""The command line of the nightly job: arguments are checked before Spark starts, the
stages are listed, the log level is settable, exit codes tell a scheduler what happened,
and the default conf does not depend on the current directory."""

import logging
import os

import pytest

from lifecycle_jobs import nightly
from lifecycle_recs.names import PIPELINE_STAGES


def _no_spark(monkeypatch):
    """Fail the test if the job would start Spark."""

    def boom(*a, **k):
        raise AssertionError("Spark was started")

    monkeypatch.setattr("lifecycle_recs.spark.get_spark", boom)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--date", "2026-13-01"], "not a date"),
        (["--date", "tomorrow"], "not a date"),
        (["--stages", "ingest,scoring"], "unknown stage"),
        (["--mode", "fast"], "invalid choice: 'fast'"),
        (["--nights", "0"], "--nights must be at least 1"),
        (["--conf", "conf/movielens.yaml", "--nights", "3"], "--nights needs --date"),
    ],
)
def test_bad_arguments_fail_before_spark_starts(monkeypatch, capsys, argv, message):
    _no_spark(monkeypatch)
    with pytest.raises(SystemExit) as e:
        nightly.main(argv)
    assert e.value.code == nightly.EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    if "stage" in message:
        assert ", ".join(PIPELINE_STAGES) in err  # the names a user may give


def test_help_lists_the_stages_the_exit_codes_and_the_log_levels(capsys):
    with pytest.raises(SystemExit):
        nightly.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert ", ".join(PIPELINE_STAGES) in out
    assert "exit codes: 0" in out and "3 every stage of the conf ran but the night is not" in out
    assert "--log-level" in out


class _Run:
    def __init__(self, published):
        self.published, self.snapshot_date = published, "2026-11-21"


def _fake_pipeline(monkeypatch, published, seen):
    import lifecycle_recs.pipeline as pipeline
    import lifecycle_recs.summary as summary

    monkeypatch.setattr("lifecycle_recs.spark.get_spark", lambda conf: object())
    monkeypatch.setattr(
        pipeline,
        "run_nightly",
        lambda spark, cfg, date, stages, ts: seen.update(cfg=cfg, stages=stages) or _Run(published),
    )
    monkeypatch.setattr(summary, "print_run", lambda run, samples=False: None)


def test_a_full_run_that_leaves_the_night_unpublished_exits_3_a_subset_exits_0(monkeypatch):
    seen = {}
    _fake_pipeline(monkeypatch, False, seen)
    assert nightly.main(["--date", "2026-11-21"]) == nightly.EXIT_NOT_PUBLISHED
    assert nightly.main(["--date", "2026-11-21", "--stages", "score"]) == nightly.EXIT_OK
    assert seen["stages"] == ["score"]
    _fake_pipeline(monkeypatch, True, seen)
    assert nightly.main(["--date", "2026-11-21"]) == nightly.EXIT_OK


def test_the_default_conf_is_the_embedded_one_from_any_directory(monkeypatch, tmp_path):
    seen = {}
    _fake_pipeline(monkeypatch, True, seen)
    monkeypatch.chdir(tmp_path)  # no conf/ here: the entry point must not need one
    assert nightly.main(["--date", "2026-11-21", "--log-level", "WARNING"]) == nightly.EXIT_OK
    assert seen["cfg"].lakehouse == os.path.join(str(tmp_path), "lakehouse")
    assert logging.getLogger().level == logging.WARNING


def test_a_relative_mlflow_experiment_fails_before_spark_on_databricks(monkeypatch, capsys):
    """The workspace refuses relative experiment names when the first run is logged, after a
    night has trained; the job refuses them at its start instead."""
    pytest.importorskip("mlflow")
    _no_spark(monkeypatch)
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    with pytest.raises(SystemExit) as e:
        nightly.main(["--conf", "conf/local.yaml", "--set", "mlflow.experiment=lifecycle-recs"])
    assert e.value.code == nightly.EXIT_USAGE
    assert "absolute workspace paths" in capsys.readouterr().err
