"""The one place that knows where tables live and how they are written.

Writes are atomic (one Delta commit each) and idempotent:
snapshot tables replace exactly their ``snapshot_date`` partition
(``replaceWhere``), keyed tables MERGE on their keys (never a blind append, which
Delta cannot check against a concurrent writer). A table is created with its
CHECK constraints in the same commit. A snapshot replacement that is empty or
much smaller than what it replaces is refused unless ``publish.allow_shrink``.
``pipeline_runs`` is appended last by the runner; ``runs.last_published_date``
is what consumers read.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lifecycle_recs.config import Config, is_table_name
from lifecycle_recs.schemas import DELETION_VECTORS, TABLES, TableSpec, spec
from lifecycle_recs.spark import sql_conf

TABLE_NAMES = tuple(TABLES)
# Delta skips a commit that adds and removes no file by default; a state write of no rows
# still has to record what it reflects
RECORD_EMPTY_COMMITS = {"spark.databricks.delta.skipRecordingEmptyCommits": "false"}

log = logging.getLogger(__name__)

# Called with the table's name right before / after every commit this module makes:
# fault-injection tests crash a stage between two of its commits, or hold two writers
# at a barrier so that they commit at once. Empty in production.
BEFORE_COMMIT_HOOKS: List[Callable[[str], None]] = []
COMMIT_HOOKS: List[Callable[[str], None]] = []


def _committing(table: str) -> None:
    for hook in list(BEFORE_COMMIT_HOOKS):
        hook(table)


def _committed(table: str) -> None:
    for hook in list(COMMIT_HOOKS):
        hook(table)


class ShrinkRefused(RuntimeError):
    """A snapshot replacement that would empty or sharply shrink a table."""


def path(cfg: Config, table: str) -> str:
    """The table's location: a path, or a ``catalog.schema.table`` name (see
    :func:`config.is_table_name`); every access below goes through the helpers that
    tell the two apart, so both run the same code."""
    return cfg.table_path(table)


def _exists_at(spark: SparkSession, loc: str) -> bool:
    if is_table_name(loc):
        return spark.catalog.tableExists(loc)
    return DeltaTable.isDeltaTable(spark, loc)


def _delta(spark: SparkSession, loc: str) -> DeltaTable:
    return DeltaTable.forName(spark, loc) if is_table_name(loc) else DeltaTable.forPath(spark, loc)


def _save(writer, loc: str) -> None:
    if is_table_name(loc):
        writer.saveAsTable(loc)
    else:
        writer.save(loc)


def exists(spark: SparkSession, cfg: Config, table: str) -> bool:
    return _exists_at(spark, path(cfg, table))


def read(
    spark: SparkSession, cfg: Config, table: str, snapshot_date: Optional[str] = None
) -> DataFrame:
    """Read a table (optionally one snapshot). A missing table is a clear error."""
    p = path(cfg, table)
    if not _exists_at(spark, p):
        raise FileNotFoundError(
            f"table '{table}' does not exist at {p}; run the stage that writes it first"
        )
    df = spark.read.table(p) if is_table_name(p) else spark.read.format("delta").load(p)
    if snapshot_date is not None:
        df = df.where(F.col("snapshot_date") == F.lit(snapshot_date).cast("date"))
    return df


def ensure_table(spark: SparkSession, cfg: Config, ts: TableSpec) -> DeltaTable:
    """Create the table from its spec (NOT NULL columns, CHECK constraints,
    partitioning) if it does not exist yet."""
    return _ensure(spark, cfg, ts)[0]


def _ensure(spark: SparkSession, cfg: Config, ts: TableSpec) -> Tuple[DeltaTable, bool]:
    """(the table, whether this call created it, i.e. it is known to be empty)."""
    p = path(cfg, ts.name)
    if _exists_at(spark, p):
        t = _delta(spark, p)
        have = t.toDF().columns
        if set(have) != set(ts.names):
            raise ValueError(
                f"table '{ts.name}' at {p} has columns {have}, but this version writes {ts.names} "
                f"(missing {sorted(set(ts.names) - set(have))}, unexpected "
                f"{sorted(set(have) - set(ts.names))}); it was written by another version: migrate "
                "it or remove it"
            )
        return t, False
    # the CHECK constraints are table properties of the creating commit itself: no table
    # ever exists without them, and two first runs do not race on ADD CONSTRAINT
    props = {
        "delta.enableDeletionVectors": str(ts.name in DELETION_VECTORS).lower(),
        **ts.properties,
        **{f"delta.constraints.{n}": e for n, e in ts.checks.items()},
    }
    if is_table_name(p):
        # SQL: Delta's builder parses only two-part names; with the column comments of schemas.py
        create = lambda: spark.sql(create_table_sql(p, ts, props))  # noqa: E731
    else:
        b = DeltaTable.createIfNotExists(spark).location(p)
        for c in ts.columns:  # with the column comments of schemas.py
            b = b.addColumn(c.name, c.dtype, nullable=c.nullable, comment=c.doc)
        if ts.doc:
            b = b.comment(ts.doc)
        if ts.partition_by:
            b = b.partitionedBy(*ts.partition_by)
        for k, v in props.items():
            b = b.property(k, v)
        create = b.execute
    try:
        create()
    except Exception as e:  # a concurrent first run created it between our check and our commit
        deadline = time.monotonic() + 30
        while not _exists_at(spark, p):  # its commit may not be visible yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        log.info("table %s was created concurrently (%s); using it", ts.name, type(e).__name__)
        return _ensure(spark, cfg, ts)[0], False
    return _delta(spark, p), True


def sql_string(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def create_table_sql(name: str, ts: TableSpec, props: Dict[str, str]) -> str:
    """CREATE TABLE IF NOT EXISTS for a catalog table name (each part quoted)."""
    ident = ".".join(quote_identifier(x) for x in name.split("."))
    cols = ",\n  ".join(
        f"{quote_identifier(c.name)} {c.dtype.simpleString()}{'' if c.nullable else ' NOT NULL'} "
        f"COMMENT {sql_string(c.doc)}"
        for c in ts.columns
    )
    parts = [f"CREATE TABLE IF NOT EXISTS {ident} (\n  {cols}\n) USING delta"]
    if ts.partition_by:
        parts.append(
            "PARTITIONED BY (" + ", ".join(quote_identifier(c) for c in ts.partition_by) + ")"
        )
    if ts.doc:
        parts.append(f"COMMENT {sql_string(ts.doc)}")
    parts.append(
        "TBLPROPERTIES ("
        + ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in props.items())
        + ")"
    )
    return "\n".join(parts)


def quote_identifier(name: str) -> str:
    """A path or name as a SQL identifier: backquoted, inner backquotes doubled."""
    return "`" + name.replace("`", "``") + "`"


def conform(df: DataFrame, ts: TableSpec) -> DataFrame:
    """Select exactly the spec's columns, in order, cast to the spec's types."""
    missing = [c for c in ts.names if c not in df.columns]
    if missing:
        raise ValueError(
            f"DataFrame for table '{ts.name}' lacks column(s) {missing}; it has {df.columns}"
        )
    return df.select(*[F.col(c.name).cast(c.dtype).alias(c.name) for c in ts.columns])


def last_metrics(spark: SparkSession, cfg: Config, table: str) -> Dict[str, int]:
    """Operation metrics of the table's latest commit (rows written, inserted, ...)."""
    row = _delta(spark, path(cfg, table)).history(1).select("operationMetrics").first()
    return {k: int(v) for k, v in (row[0] or {}).items() if str(v).lstrip("-").isdigit()}


def write_snapshot(
    spark: SparkSession, cfg: Config, table: str, df: DataFrame, snapshot_date: str
) -> Dict[str, int]:
    """Replace the ``snapshot_date = D`` partition of ``table`` with ``df`` in one commit.

    Rows of ``df`` must all carry that snapshot date (Delta enforces it); other
    snapshots are untouched, and a rerun of D leaves the same rows. The rows are
    counted first (``df`` is persisted for that): an empty replacement, or one
    with fewer than ``1 - publish.max_shrink_fraction`` of the rows of the
    snapshot it replaces (else of the last earlier snapshot), raises
    :class:`ShrinkRefused` and commits nothing, unless ``publish.allow_shrink``.
    """
    ts = spec(table)
    ensure_table(spark, cfg, ts)
    d = dt.date.fromisoformat(str(snapshot_date))
    src = conform(df, ts).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n = src.count()
        _check_shrink(spark, cfg, table, d, n)
        _committing(table)
        _save(
            src.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", f"snapshot_date = DATE'{d.isoformat()}'"),
            path(cfg, table),
        )
    finally:
        src.unpersist()
    _committed(table)
    return last_metrics(spark, cfg, table)


def replace_dates(
    spark: SparkSession,
    cfg: Config,
    table: str,
    df: DataFrame,
    dates: Optional[Sequence[dt.date]],
    metadata: Dict[str, object],
) -> None:
    """Replace the ``dates`` partitions of a date-partitioned table (all of it when ``dates``
    is None) with ``df``, in one commit that carries ``metadata`` (JSON, the commit's
    ``userMetadata``: what the rows reflect, read back by :func:`recorded`). With no dates,
    an empty commit records the metadata alone."""
    ts = spec(table)
    ensure_table(spark, cfg, ts)
    col = ts.partition_by[0]
    w = conform(df, ts).write.format("delta").mode("overwrite")
    if dates is not None and not dates:  # nothing to replace: a commit of no files
        w = conform(df, ts).limit(0).write.format("delta").mode("append")
    elif dates is not None:
        literals = ", ".join(_sql_literal(x) for x in sorted(set(dates)))
        w = w.option("replaceWhere", f"{col} IN ({literals})")
    _committing(table)
    with sql_conf(spark, RECORD_EMPTY_COMMITS):
        _save(w.option("userMetadata", json.dumps(metadata, sort_keys=True)), path(cfg, table))
    _committed(table)


def read_version(spark: SparkSession, cfg: Config, table: str, version: int) -> DataFrame:
    """The table as of ``version`` (Delta time travel)."""
    p = path(cfg, table)
    r = spark.read.format("delta").option("versionAsOf", int(version))
    return r.table(p) if is_table_name(p) else r.load(p)


def changed_dates(
    spark: SparkSession, cfg: Config, table: str, start: int, end: int
) -> List[dt.date]:
    """The partition dates of every row inserted, updated or deleted in versions
    ``start..end`` of ``table``, from its change data feed (a small distinct list). Raises
    when the feed does not cover those versions (not enabled then, or cleaned up)."""
    p = path(cfg, table)
    r = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", int(start))
        .option("endingVersion", int(end))
    )
    feed = r.table(p) if is_table_name(p) else r.load(p)
    col = spec(table).partition_by[0]
    return sorted(x[0] for x in feed.select(col).distinct().collect())


def _check_shrink(spark: SparkSession, cfg: Config, table: str, d: dt.date, n: int) -> None:
    ref = _reference_snapshot(spark, cfg, table, d)
    if ref is None:
        return
    ref_date, ref_rows = ref
    floor = (1.0 - cfg.publish.max_shrink_fraction) * ref_rows
    if (n == 0 and ref_rows > 0) or n < floor:
        msg = (
            f"refusing to replace snapshot {d} of '{table}' with {n} rows: the snapshot of "
            f"{ref_date} has {ref_rows} (publish.max_shrink_fraction "
            f"{cfg.publish.max_shrink_fraction}); an empty or missing input would wipe good "
            "output. Check the upstream tables, or rerun with --allow-shrink "
            "(publish.allow_shrink) if the drop is real"
        )
        if not cfg.publish.allow_shrink:
            raise ShrinkRefused(msg)
        log.warning("%s -- allowed by publish.allow_shrink", msg)


def _reference_snapshot(
    spark: SparkSession, cfg: Config, table: str, d: dt.date
) -> Optional[Tuple[dt.date, int]]:
    """(date, rows) of the snapshot D replaces, else of the last snapshot before D; None if
    neither."""
    dates = [x for x in partition_dates(spark, cfg, table) if x <= d]
    if not dates:
        return None
    ref = max(dates)
    rows = (
        read(spark, cfg, table)
        .where(F.col("snapshot_date") == F.lit(ref.isoformat()).cast("date"))
        .count()
    )
    return ref, rows


def replace_metric_rows(
    spark: SparkSession, cfg: Config, rows: List[Dict], snapshot_date: str, dataset: str
) -> int:
    """Replace the (snapshot, dataset) rows of ``evaluation_metrics`` with ``rows`` in one
    commit."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", dataset or ""):
        raise ValueError(
            f"evaluation dataset name {dataset!r} must be letters, digits, '_', '.' or '-'"
        )
    ts = spec("evaluation_metrics")
    ensure_table(spark, cfg, ts)
    d = dt.date.fromisoformat(str(snapshot_date))
    _committing("evaluation_metrics")
    # mergeSchema: a table created before n_users / ci_low / ci_high / verdict gains them
    _save(
        spark.createDataFrame(rows, ts.schema)
        .write.format("delta")
        .mode("overwrite")
        .option("mergeSchema", "true")
        .option("replaceWhere", f"snapshot_date = DATE'{d.isoformat()}' AND dataset = '{dataset}'"),
        path(cfg, "evaluation_metrics"),
    )
    _committed("evaluation_metrics")
    return len(rows)


def _sql_literal(v) -> str:
    """A SQL literal of a date, number or string (quoted, quotes doubled)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return repr(v)
    if isinstance(v, dt.datetime):
        return f"TIMESTAMP'{v.isoformat(sep=' ')}'"
    if isinstance(v, dt.date):
        return f"DATE'{v.isoformat()}'"
    return sql_string(str(v))


def merge_condition(keys: Sequence[str]) -> str:
    # null-safe: a nullable key column (events.item_id) matches null to null
    return " AND ".join(f"t.{quote_identifier(k)} <=> s.{quote_identifier(k)}" for k in keys)


def merge_new(
    spark: SparkSession,
    cfg: Config,
    table: str,
    df: DataFrame,
    keys: Optional[Sequence[str]] = None,
    prefer: Optional[Sequence[str]] = None,
    prune: Optional[Dict[str, Sequence]] = None,
    replace_where: Optional[str] = None,
) -> Dict[str, int]:
    """Insert the rows of ``df`` whose keys are not in ``table`` yet, in one MERGE
    commit (``df`` has unique keys). With ``prefer``, a stored row is replaced by
    a source row whose ``prefer`` columns compare larger, so the result does not
    depend on the order rows arrive in.

    ``prune`` ({column: values}) limits the target rows the MERGE reads to those values
    (Delta does not prune a MERGE target by itself): the batch's own dates, say.
    ``replace_where`` (a condition on the target, e.g. one source) makes the MERGE a
    replacement of those rows: matched rows take the source row, stored rows under the
    condition that ``df`` does not hold are deleted, in the same commit.

    Always a MERGE, even into an empty table: a blind append reads nothing, so
    Delta cannot see that a concurrent writer appended the same rows; a MERGE
    that read the table fails with a concurrent-append conflict instead.
    """
    ts = spec(table)
    target, _ = _ensure(spark, cfg, ts)
    keys = list(keys or ts.keys)
    src = conform(df, ts)
    before = _version(target)
    cond = merge_condition(keys)
    for col, values in (prune or {}).items():
        literals = ", ".join(_sql_literal(v) for v in sorted(set(values)))
        cond += f" AND t.{quote_identifier(col)} IN ({literals or 'NULL'})"
    m = target.alias("t").merge(src.alias("s"), cond)
    if replace_where is not None:
        m = m.whenMatchedUpdateAll().whenNotMatchedBySourceDelete(condition=replace_where)
    elif prefer:

        def tup(a):
            return "struct(" + ", ".join(f"{a}.{quote_identifier(c)}" for c in prefer) + ")"

        m = m.whenMatchedUpdateAll(condition=f"{tup('s')} > {tup('t')}")
    _committing(table)
    m.whenNotMatchedInsertAll().execute()
    if _version(target) == before:
        # a MERGE that changes nothing commits nothing (a rerun)
        return {"source_rows": src.count(), "inserted": 0, "updated": 0, "deleted": 0}
    _committed(table)
    m = last_metrics(spark, cfg, table)
    return {
        "source_rows": m.get("numSourceRows", 0),
        "inserted": m.get("numTargetRowsInserted", 0),
        "updated": m.get("numTargetRowsUpdated", 0),
        "deleted": m.get("numTargetRowsDeleted", 0),
    }


def _append(spark: SparkSession, cfg: Config, table: str, src: DataFrame) -> int:
    """Append ``src`` in one commit; the number of rows written."""
    _committing(table)
    _save(src.write.format("delta").mode("append"), path(cfg, table))
    _committed(table)
    return last_metrics(spark, cfg, table).get("numOutputRows", 0)


def row_count(spark: SparkSession, cfg: Config, table: str) -> int:
    """Rows in the table's current version (Delta answers from the log's file statistics)."""
    return read(spark, cfg, table).count() if exists(spark, cfg, table) else 0


def versions(spark: SparkSession, cfg: Config, names: Sequence[str]) -> Dict[str, int]:
    """Current Delta version of each existing table among ``names``."""
    out = {}
    for t in names:
        p = path(cfg, t)
        if _exists_at(spark, p):
            out[t] = _version(_delta(spark, p))
    return out


def _version(t: DeltaTable) -> int:
    return t.history(1).select("version").first()[0]


def upsert(
    spark: SparkSession,
    cfg: Config,
    table: str,
    df: DataFrame,
    keys: Sequence[str],
    compare: Sequence[str],
) -> Dict[str, int]:
    """MERGE ``df`` into ``table`` on ``keys``: insert new keys, update a row only
    when one of ``compare`` differs. Meant for small keyed tables (catalogs,
    embeddings): unchanged input makes no commit at all."""
    ts = spec(table)
    target, _ = _ensure(spark, cfg, ts)
    src = conform(df, ts)
    # (a new table too goes through the MERGE: a blind append could not conflict with a
    # concurrent first run's)
    current = target.toDF().select(
        *keys, F.lit(True).alias("__exists"), *[F.col(c).alias(f"__t_{c}") for c in compare]
    )
    same = F.col("__exists").isNotNull()
    for c in compare:
        same = same & F.col(c).eqNullSafe(F.col(f"__t_{c}"))
    # only new or changed rows go into the MERGE, so unchanged input rewrites no file
    joined = src.join(current, on=list(keys), how="left")
    changed_rows = joined.where(~same).select(*ts.names).persist()
    try:
        n_changed = changed_rows.count()
        n_source = src.count()
        if n_changed == 0:
            return {"source_rows": n_source, "inserted": 0, "updated": 0}
        _committing(table)
        (
            target.alias("t")
            .merge(changed_rows.alias("s"), merge_condition(keys))
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )
    finally:
        changed_rows.unpersist()
    _committed(table)
    m = last_metrics(spark, cfg, table)
    return {
        "source_rows": n_source,
        "inserted": m.get("numTargetRowsInserted", 0),
        "updated": m.get("numTargetRowsUpdated", 0),
    }


def partition_dates(spark: SparkSession, cfg: Config, table: str) -> List[dt.date]:
    """The distinct values of a table's date partition column, from the Delta log's
    file list alone where file paths carry them (no data is read)."""
    ts = spec(table)
    if not ts.partition_by:
        raise ValueError(f"table '{table}' is not partitioned")
    pat = re.compile(rf"[/\\]{re.escape(ts.partition_by[0])}=(\d{{4}}-\d{{2}}-\d{{2}})[/\\]")
    df = read(spark, cfg, table)
    files = df.inputFiles()
    dates = [m.group(1) for f in files for m in [pat.search(f)] if m]
    if len(dates) == len(files):
        return sorted({dt.date.fromisoformat(x) for x in dates})
    # file names that do not carry the partition value (e.g. column mapping): one small aggregate
    return sorted(r[0] for r in df.select(ts.partition_by[0]).distinct().collect())


def last_partition_date(spark: SparkSession, cfg: Config, table: str) -> Optional[dt.date]:
    """The largest value of a table's date partition column (None when the table has no rows)."""
    dates = partition_dates(spark, cfg, table)
    return dates[-1] if dates else None


def append_run_rows(spark: SparkSession, cfg: Config, rows: List[Dict]) -> None:
    """Append rows to ``pipeline_runs`` (one commit; run ids are unique, so appends never
    collide)."""
    ts = spec("pipeline_runs")
    ensure_table(spark, cfg, ts)
    _append(spark, cfg, "pipeline_runs", spark.createDataFrame(rows, ts.schema))


def snapshots(spark: SparkSession, cfg: Config, table: str) -> List[str]:
    """Snapshot dates present in a snapshot table (small: one row per date)."""
    if not exists(spark, cfg, table):
        return []
    rows = read(spark, cfg, table).select("snapshot_date").distinct().collect()
    return sorted(str(r[0]) for r in rows)


def summary(spark: SparkSession, cfg: Config, tables: Sequence[str]) -> List[Dict[str, object]]:
    """Row counts and versions of the given tables (for the demo and logs)."""
    out = []
    for t in tables:
        if not exists(spark, cfg, t):
            continue
        dtab = _delta(spark, path(cfg, t))
        version = dtab.history(1).select("version").first()[0]
        out.append(
            {
                "table": t,
                "rows": dtab.toDF().count(),
                "version": version,
                "path": path(cfg, t)
                if is_table_name(path(cfg, t))
                else os.path.relpath(path(cfg, t)),
            }
        )
    return out


def compact(spark: SparkSession, cfg: Config, table: str) -> Dict[str, int]:
    """OPTIMIZE (bin-packing of small files; the rows do not change): files removed and
    added."""
    m = _delta(spark, path(cfg, table)).optimize().executeCompaction().first()["metrics"]
    return {"files_removed": int(m["numFilesRemoved"]), "files_added": int(m["numFilesAdded"])}


def vacuum(spark: SparkSession, cfg: Config, table: str, hours: float) -> None:
    """VACUUM: delete the files no version of the last ``hours`` needs. Below Delta's own
    floor (7 days) only when the conf asks for it (``maintenance.retain_days``)."""
    check = {"spark.databricks.delta.retentionDurationCheck.enabled": str(hours >= 168).lower()}
    with sql_conf(spark, check):
        _delta(spark, path(cfg, table)).vacuum(float(hours))


def version_age_hours(spark: SparkSession, cfg: Config, table: str, version: int) -> float:
    """Hours since ``version`` of ``table`` was committed (0 when it is no longer in the
    log)."""
    row = (
        _delta(spark, path(cfg, table))
        .history()
        .where(F.col("version") == int(version))
        .select("timestamp")
        .first()
    )
    if row is None:
        return 0.0
    return max(0.0, (time.time() - row[0].timestamp()) / 3600.0)


def delete_users(
    spark: SparkSession, cfg: Config, table: str, column: str, users: DataFrame
) -> int:
    """Delete every row of ``table`` whose ``column`` (trimmed) is one of ``users.user_id``,
    in one MERGE commit; the rows deleted."""
    ensure_table(spark, cfg, spec(table))
    (
        _delta(spark, path(cfg, table))
        .alias("t")
        .merge(users.alias("s"), f"trim(t.{quote_identifier(column)}) = s.user_id")
        .whenMatchedDelete()
        .execute()
    )
    return last_metrics(spark, cfg, table).get("numTargetRowsDeleted", 0)


def purge(spark: SparkSession, cfg: Config, table: str) -> None:
    """Rewrite the files whose rows were deleted through deletion vectors (``REORG ... APPLY
    (PURGE)``): until then a deleted row is still in its file, only marked."""
    p = path(cfg, table)
    ident = p if is_table_name(p) else f"delta.{quote_identifier(p)}"
    spark.sql(f"REORG TABLE {ident} APPLY (PURGE)")
