"""What "published" means, read from the run log: a night is published when its latest
run says so and nothing wrote for it since; a rerun un-publishes it until it completes, and
a stage rerun alone leaves the stages after it stale."""

import datetime as dt
import uuid

import pytest

from lifecycle_recs.io import runs, tables
from lifecycle_recs.names import PIPELINE_STAGES

D, NEXT = "2026-03-03", "2026-03-04"
T0 = dt.datetime(2026, 3, 4, 2, 0, tzinfo=dt.timezone.utc)


class Log:
    """Appends the rows the runner writes, one second apart."""

    def __init__(self, spark, cfg):
        self.spark, self.cfg, self.t = spark, cfg, T0

    def night(self, d, stages, fail=None):
        """The runner's rows: each stage's as it ends, then (no failure) the run's, whose
        status is what the log says once the stages' rows are in."""
        run_id, rows = uuid.uuid4().hex, []
        for s in stages:
            self.t += dt.timedelta(seconds=1)
            rows.append(self._row(run_id, d, s, "failed" if s == fail else "succeeded"))
            if s == fail:
                break
        tables.append_run_rows(self.spark, self.cfg, rows)
        if fail is None:
            missing = runs.stages_not_succeeded(
                self.spark, self.cfg, d, PIPELINE_STAGES, ("ingest",)
            )
            self.t += dt.timedelta(seconds=1)
            status = "partial" if missing else "published"
            tables.append_run_rows(self.spark, self.cfg, [self._row(run_id, d, runs.RUN, status)])

    def _row(self, run_id, d, stage, status):
        return {
            "run_id": run_id,
            "snapshot_date": dt.date.fromisoformat(d),
            "stage": stage,
            "status": status,
            "started_at": self.t,
            "finished_at": self.t,
            "seconds": 1.0,
            "input_versions": None,
            "output_versions": None,
            "counts": "{}",
            "model_version": None,
            "error": "InjectedCrash" if status == "failed" else None,
        }


@pytest.fixture
def log(spark, make_cfg):
    cfg = make_cfg()
    return Log(spark, cfg), lambda: runs.last_published_date(spark, cfg), cfg


def test_a_failed_rerun_of_a_published_night_unpublishes_it_until_it_completes(spark, log):
    lg, published, _ = log
    lg.night(D, PIPELINE_STAGES)
    assert published() == D
    lg.night(D, PIPELINE_STAGES, fail="lifecycle")  # sequences rewrote D, then a crash
    assert published() is None
    lg.night(D, PIPELINE_STAGES)
    assert published() == D


def test_a_stage_rerun_alone_leaves_the_stages_after_it_stale(spark, log):
    lg, published, cfg = log
    lg.night(D, PIPELINE_STAGES)
    lg.night(D, ["ingest", "sequences"])  # a late file: D's sequences rebuilt, nothing after
    assert published() is None
    missing = runs.stages_not_succeeded(spark, cfg, D, PIPELINE_STAGES, ("ingest",))
    assert missing == list(PIPELINE_STAGES[2:])
    lg.night(D, PIPELINE_STAGES[2:])  # the rest of the night, in a second job
    assert published() == D
    assert runs.stages_not_succeeded(spark, cfg, D, PIPELINE_STAGES, ("ingest",)) == []


def test_another_nights_failure_or_ingest_leaves_a_published_night_alone(spark, log):
    lg, published, _ = log
    lg.night(D, PIPELINE_STAGES)
    lg.night(NEXT, PIPELINE_STAGES, fail="train")
    lg.night(NEXT, ["ingest"])
    assert published() == D
    lg.night(NEXT, PIPELINE_STAGES)
    assert published() == NEXT


def test_the_readmes_query_finds_the_same_published_night(spark, log):
    import pathlib
    import re

    lg, published, cfg = log
    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    block = readme[readme.index("Consumers read the **last published night**") :]
    sql = re.search(r"```sql\n(.*?)```", block, re.S).group(1)
    table = f"delta.`{tables.path(cfg, 'pipeline_runs')}`"

    def query():
        row = spark.sql(sql.replace("FROM pipeline_runs", f"FROM {table}")).first()
        return row[0].isoformat() if row[0] else None

    lg.night(D, PIPELINE_STAGES)
    lg.night(NEXT, PIPELINE_STAGES)
    assert query() == published() == NEXT
    lg.night(NEXT, ["sequences"])
    assert query() == published() == D
