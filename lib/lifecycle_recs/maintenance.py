"""Weekly upkeep (``lifecycle-maintenance``): every table compacted (OPTIMIZE), then the
files no version of the last ``maintenance.retain_days`` needs deleted (VACUUM), and the
training feeds a killed driver leaked removed. What it did goes to ``pipeline_runs`` (stage
``maintenance``, no snapshot date).

The retention is what consumers may rely on for time travel, and what keeps the versions
``pipeline_runs`` records readable; ``events`` keeps, beyond it, every version the
incremental state has not read yet (its change data feed from the state's version on), so
maintenance never turns the next night into a full one.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Dict

from pyarrow import fs as pafs
from pyspark.sql import SparkSession

from lifecycle_recs.config import Config
from lifecycle_recs.dates import utc_now
from lifecycle_recs.fs import filesystem, remove_dir
from lifecycle_recs.io import scratch, state, tables
from lifecycle_recs.io.tables import TABLE_NAMES

log = logging.getLogger(__name__)
STAGE = "maintenance"


def retain_hours(spark: SparkSession, cfg: Config, table: str) -> float:
    """The VACUUM retention of ``table``: ``maintenance.retain_days``, and for ``events`` at
    least back to (a day before) the version the incremental state reflects."""
    hours = 24.0 * cfg.maintenance.retain_days
    if table == "events":
        v = state.recorded_version(spark, cfg)
        if v is not None:
            hours = max(hours, tables.version_age_hours(spark, cfg, "events", v) + 24.0)
    return hours


def leaked_feeds(cfg: Config, now: float) -> list:
    """Feed directories under the scratch root older than ``maintenance.feed_max_age_hours``."""
    fs, root = filesystem(scratch.root(cfg))
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        return []
    limit = now - 3600.0 * cfg.maintenance.feed_max_age_hours
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=False))
    old = [
        i
        for i in infos
        if i.type == pafs.FileType.Directory and i.mtime is not None and i.mtime.timestamp() < limit
    ]
    base = scratch.root(cfg).rstrip("/")
    return [f"{base}/{i.base_name}" for i in old]


def run_maintenance(spark: SparkSession, cfg: Config) -> Dict[str, object]:
    """Compact and vacuum every table the lakehouse holds, remove leaked feeds, record it."""
    started, t0 = utc_now(), time.perf_counter()
    done: Dict[str, object] = {}
    for table in TABLE_NAMES:
        if not tables.exists(spark, cfg, table):
            continue
        m = tables.compact(spark, cfg, table)
        hours = retain_hours(spark, cfg, table)
        tables.vacuum(spark, cfg, table, hours)
        done[table] = {**m, "retain_hours": round(hours, 1)}
        log.info("maintenance: %s %s", table, done[table])
    feeds = leaked_feeds(cfg, time.time())
    for f in feeds:
        remove_dir(f)
    info = {"tables": done, "feeds_removed": len(feeds)}
    tables.append_run_rows(
        spark,
        cfg,
        [
            {
                "run_id": uuid.uuid4().hex,
                "snapshot_date": None,
                "stage": STAGE,
                "status": "succeeded",
                "started_at": started,
                "finished_at": utc_now(),
                "seconds": float(time.perf_counter() - t0),
                "input_versions": None,
                "output_versions": None,
                "counts": json.dumps(info, sort_keys=True),
                "model_version": None,
                "error": None,
            }
        ],
    )
    return info
