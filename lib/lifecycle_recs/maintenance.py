"""Upkeep (``lifecycle-maintenance``, weekly): every table compacted (OPTIMIZE), then the
files no version of the last ``maintenance.retain_days`` needs deleted (VACUUM), and the
training feeds a killed driver leaked removed; and, on request, users erased from every table
(``--erase-users``, a data-protection request). What it did goes to ``pipeline_runs``
(stages ``maintenance`` and ``erase``, no snapshot date).

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
from typing import Dict, List, Optional

from pyarrow import fs as pafs
from pyspark.sql import SparkSession

from lifecycle_recs.config import Config
from lifecycle_recs.dates import utc_now
from lifecycle_recs.fs import filesystem, remove_dir
from lifecycle_recs.io import scratch, state, tables, versions
from lifecycle_recs.io.tables import TABLE_NAMES
from lifecycle_recs.schemas import TABLES

log = logging.getLogger(__name__)
STAGE = "maintenance"


def retain_hours(spark: SparkSession, cfg: Config, table: str) -> float:
    """The VACUUM retention of ``table``: ``maintenance.retain_days``, and for ``events``, while
    the incremental state has versions after its own to read, at least back to its version."""
    hours = 24.0 * cfg.maintenance.retain_days
    if table == "events":
        v = state.recorded_version(spark, cfg)
        if v is not None and v < versions.current_version(spark, cfg, "events"):
            # the versions after the state's: an hour beyond the state's own commit
            hours = max(hours, tables.version_age_hours(spark, cfg, "events", v) + 1.0)
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
    record(spark, cfg, STAGE, started, time.perf_counter() - t0, info)
    return info


def record(spark: SparkSession, cfg: Config, stage: str, started, seconds: float, info) -> None:
    """A ``pipeline_runs`` row of an upkeep step (no snapshot date: no night is touched)."""
    row = {
        "run_id": uuid.uuid4().hex,
        "snapshot_date": None,
        "stage": stage,
        "status": "succeeded",
        "started_at": started,
        "finished_at": utc_now(),
        "seconds": float(seconds),
        "input_versions": None,
        "output_versions": None,
        "counts": json.dumps(info, sort_keys=True),
        "model_version": None,
        "error": None,
    }
    tables.append_run_rows(spark, cfg, [row])


ERASE = "erase"


def user_columns() -> Dict[str, str]:
    """Every table that holds a user's rows, and the column naming the user (in
    ``events_quarantine``, the raw id as delivered)."""
    out = {}
    for name, ts in TABLES.items():
        if "user_id" in ts.names:
            out[name] = "user_id"
        elif "raw_user_id" in ts.names:
            out[name] = "raw_user_id"
    return out


def erase_users(spark: SparkSession, cfg: Config, users: List[str]) -> Dict[str, object]:
    """Delete the ``users`` from every table that holds user rows (one commit per table),
    and keep the incremental state current: its rows are per user, so deleting them equals
    rebuilding them without the users, and the state records the events version after the
    deletion (the next night stays incremental). The old files stay readable by time travel
    until :func:`run_maintenance` vacuums them (``maintenance.retain_days``; 0 at once).
    The run log records the counts, never the ids."""
    started, t0 = utc_now(), time.perf_counter()
    ids = sorted({u.strip() for u in users if u and u.strip()})
    if not ids:
        raise ValueError("no user ids to erase (one per line)")
    frame = spark.createDataFrame([(u,) for u in ids], "user_id string")
    before = (
        versions.current_version(spark, cfg, "events")
        if tables.exists(spark, cfg, "events")
        else None
    )
    current = {t: _reflects(spark, cfg, t, before) for t in (state.STATE_TABLE, state.BASE_TABLE)}
    deleted = {}
    for table, column in user_columns().items():
        if tables.exists(spark, cfg, table):
            deleted[table] = tables.delete_users(spark, cfg, table, column, frame)
            if deleted[table]:  # rows deleted through deletion vectors stay in their files
                tables.purge(spark, cfg, table)
    if before is not None:
        after = versions.current_version(spark, cfg, "events")
        for table, rec in current.items():
            if rec is not None:  # an empty commit: what the state reflects now
                empty = tables.read(spark, cfg, table).limit(0)
                tables.replace_dates(spark, cfg, table, empty, [], {**rec, "events_version": after})
    info = {"users": len(ids), "deleted": deleted}
    record(spark, cfg, ERASE, started, time.perf_counter() - t0, info)
    log.info("erased %d user(s): %s", len(ids), deleted)
    return info


def _reflects(spark: SparkSession, cfg: Config, table: str, version: Optional[int]):
    """The state table's recorded metadata when it reflects events ``version``, else None."""
    rec = versions.recorded(spark, cfg, table)
    if version is None or rec is None or int(rec.get("events_version", -1)) != version:
        return None
    return rec
