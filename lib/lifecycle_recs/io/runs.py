"""Reading the run log (``pipeline_runs``): which stages of a night have not
succeeded yet, and the last night that published (what consumers read). The
runner appends to it through ``tables.append_run_rows``."""

from __future__ import annotations

from typing import List, Optional, Sequence

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lifecycle_recs.config import Config
from lifecycle_recs.io.tables import exists, read


def stages_not_succeeded(
    spark: SparkSession,
    cfg: Config,
    snapshot_date: str,
    stages: Sequence[str],
    date_free: Sequence[str] = (),
) -> List[str]:
    """The stages among ``stages`` whose latest ``pipeline_runs`` row for D is not a
    success; for a ``date_free`` stage (ingest lands whatever arrived, for no date),
    its latest row of any date. One small aggregate over the run log."""
    if not exists(spark, cfg, "pipeline_runs"):
        return list(stages)
    this_night = F.col("snapshot_date") == F.lit(snapshot_date).cast("date")
    latest = (
        read(spark, cfg, "pipeline_runs")
        .where(
            F.col("stage").isin(*stages)
            & (this_night | F.col("stage").isin(*date_free) if date_free else this_night)
        )
        .groupBy("stage")
        .agg(F.max_by("status", "finished_at").alias("status"))
        .collect()
    )
    ok = {r["stage"] for r in latest if r["status"] == "succeeded"}
    return [s for s in stages if s not in ok]


def last_published_date(spark: SparkSession, cfg: Config) -> Optional[str]:
    """The last snapshot date whose nightly run published (every stage succeeded):
    the date consumers should read. None before the first published run."""
    if not exists(spark, cfg, "pipeline_runs"):
        return None
    row = (
        read(spark, cfg, "pipeline_runs")
        .where((F.col("stage") == "run") & (F.col("status") == "published"))
        .agg(F.max("snapshot_date"))
        .first()
    )
    return row[0].isoformat() if row and row[0] else None
