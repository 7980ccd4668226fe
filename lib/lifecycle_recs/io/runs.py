"""Reading the run log (``pipeline_runs``): which stages of a night are not current yet,
and the last night that is published (what consumers read). The runner appends to it
through ``tables.append_run_rows``.

A night D is **published** when its latest ``run`` row says so and no stage wrote for D
after it: a rerun of D un-publishes it until it completes. A stage is **current** for D
when its latest row for D is a success that finished after the latest row for D of every
stage before it in the pipeline's order (a rerun of ``sequences`` leaves ``lifecycle`` and
what follows it stale until they run again). ``ingest`` lands whatever arrived, for no date:
its latest row of any date must be a success, and it stales nothing.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lifecycle_recs.config import Config
from lifecycle_recs.io.tables import exists, read
from lifecycle_recs.names import PIPELINE_STAGES

RUN = "run"


def stages_not_succeeded(
    spark: SparkSession,
    cfg: Config,
    snapshot_date: str,
    stages: Sequence[str],
    date_free: Sequence[str] = (),
) -> List[str]:
    """The stages among ``stages`` that are not current for D (module docstring): their
    latest ``pipeline_runs`` row for D (for a ``date_free`` stage, of any date) is not a
    success, or an earlier stage's latest row for D finished after it. One small
    aggregate over the run log."""
    if not exists(spark, cfg, "pipeline_runs"):
        return list(stages)
    this_night = F.col("snapshot_date") == F.lit(snapshot_date).cast("date")
    dated = [s for s in PIPELINE_STAGES if s not in date_free]
    latest = {
        r["stage"]: (r["status"], r["at"])
        for r in read(spark, cfg, "pipeline_runs")
        .where(
            (F.col("stage").isin(*dated) & this_night)
            | (F.col("stage").isin(*date_free) if date_free else F.lit(False))
        )
        .groupBy("stage")
        .agg(F.max_by("status", "finished_at").alias("status"), F.max("finished_at").alias("at"))
        .collect()
    }
    current, newest_before = set(), None
    for s in PIPELINE_STAGES:
        status, at = latest.get(s, (None, None))
        if status == "succeeded" and (
            s in date_free or newest_before is None or at >= newest_before
        ):
            current.add(s)
        if s not in date_free and at is not None:
            newest_before = at if newest_before is None else max(newest_before, at)
    return [s for s in stages if s not in current]


def last_published_date(spark: SparkSession, cfg: Config) -> Optional[str]:
    """The last snapshot date that is published (module docstring): the date consumers
    should read. None before the first published run."""
    if not exists(spark, cfg, "pipeline_runs"):
        return None
    is_run = F.col("stage") == RUN
    nights = (
        read(spark, cfg, "pipeline_runs")
        .where(F.col("snapshot_date").isNotNull())
        .groupBy("snapshot_date")
        .agg(
            F.max_by("status", F.when(is_run, F.col("finished_at"))).alias("run_status"),
            F.max(F.when(is_run & (F.col("status") == "published"), F.col("finished_at"))).alias(
                "published_at"
            ),
            F.max(F.when(~is_run & (F.col("stage") != "ingest"), F.col("finished_at"))).alias(
                "written_at"
            ),
        )
        .where(
            (F.col("run_status") == "published")
            & (F.col("written_at").isNull() | (F.col("written_at") <= F.col("published_at")))
        )
    )
    row = nights.agg(F.max("snapshot_date")).first()
    return row[0].isoformat() if row and row[0] else None
