"""The one place that knows where tables live and how they are written.

Writes are atomic (one Delta commit each) and idempotent:
snapshot tables replace exactly their ``snapshot_date`` partition
(``replaceWhere``), keyed tables MERGE on their keys.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from .config import Config
from .schemas import TableSpec, spec


def path(cfg: Config, table: str) -> str:
    return cfg.table_path(table)


def exists(spark: SparkSession, cfg: Config, table: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path(cfg, table))


def read(spark: SparkSession, cfg: Config, table: str, snapshot_date: Optional[str] = None) -> DataFrame:
    """Read a table (optionally one snapshot). A missing table is a clear error."""
    p = path(cfg, table)
    if not DeltaTable.isDeltaTable(spark, p):
        raise FileNotFoundError(f"table '{table}' does not exist at {p}; run the stage that writes it first")
    df = spark.read.format("delta").load(p)
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
    if DeltaTable.isDeltaTable(spark, p):
        t = DeltaTable.forPath(spark, p)
        have = t.toDF().columns
        if set(have) != set(ts.names):
            raise ValueError(
                f"table '{ts.name}' at {p} has columns {have}, but this version writes {ts.names} "
                f"(missing {sorted(set(ts.names) - set(have))}, unexpected {sorted(set(have) - set(ts.names))}); "
                "it was written by another version: migrate it or remove it")
        return t, False
    b = DeltaTable.createIfNotExists(spark).location(p).addColumns(ts.schema)
    if ts.partition_by:
        b = b.partitionedBy(*ts.partition_by)
    for k, v in ts.properties.items():
        b = b.property(k, v)
    b.execute()
    for name, expr in ts.checks.items():  # names and expressions are the specs' constants
        spark.sql(f"ALTER TABLE delta.{quote_identifier(p)} ADD CONSTRAINT {name} CHECK ({expr})")
    return DeltaTable.forPath(spark, p), True


def quote_identifier(name: str) -> str:
    """A path or name as a SQL identifier: backquoted, inner backquotes doubled."""
    return "`" + name.replace("`", "``") + "`"


def conform(df: DataFrame, ts: TableSpec) -> DataFrame:
    """Select exactly the spec's columns, in order, cast to the spec's types."""
    missing = [c for c in ts.names if c not in df.columns]
    if missing:
        raise ValueError(f"DataFrame for table '{ts.name}' lacks column(s) {missing}; it has {df.columns}")
    return df.select(*[F.col(c.name).cast(c.dtype).alias(c.name) for c in ts.columns])


def last_metrics(spark: SparkSession, cfg: Config, table: str) -> Dict[str, int]:
    """Operation metrics of the table's latest commit (rows written, inserted, ...)."""
    row = DeltaTable.forPath(spark, path(cfg, table)).history(1).select("operationMetrics").first()
    return {k: int(v) for k, v in (row[0] or {}).items() if str(v).lstrip("-").isdigit()}


def write_snapshot(spark: SparkSession, cfg: Config, table: str, df: DataFrame, snapshot_date: str) -> Dict[str, int]:
    """Replace the ``snapshot_date = D`` partition of ``table`` with ``df`` in one commit.

    Rows of ``df`` must all carry that snapshot date (Delta enforces it); other
    snapshots are untouched, and a rerun of D leaves the same rows.
    """
    ts = spec(table)
    ensure_table(spark, cfg, ts)
    d = dt.date.fromisoformat(str(snapshot_date))
    (conform(df, ts).write.format("delta").mode("overwrite")
     .option("replaceWhere", f"snapshot_date = DATE'{d.isoformat()}'")
     .save(path(cfg, table)))
    return last_metrics(spark, cfg, table)


def replace_metric_rows(spark: SparkSession, cfg: Config, rows: List[Dict], snapshot_date: str,
                        dataset: str) -> int:
    """Replace the (snapshot, dataset) rows of ``evaluation_metrics`` with ``rows`` in one commit."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", dataset or ""):
        raise ValueError(f"evaluation dataset name {dataset!r} must be letters, digits, '_', '.' or '-'")
    ts = spec("evaluation_metrics")
    ensure_table(spark, cfg, ts)
    d = dt.date.fromisoformat(str(snapshot_date))
    (spark.createDataFrame(rows, ts.schema).write.format("delta").mode("overwrite")
     .option("replaceWhere", f"snapshot_date = DATE'{d.isoformat()}' AND dataset = '{dataset}'")
     .save(path(cfg, "evaluation_metrics")))
    return len(rows)


def merge_new(spark: SparkSession, cfg: Config, table: str, df: DataFrame,
              keys: Optional[Sequence[str]] = None) -> Dict[str, int]:
    """Insert the rows of ``df`` whose keys are not in ``table`` yet (one commit).

    An empty table gets a plain append (the caller guarantees ``df`` has unique
    keys), which avoids a join against nothing.
    """
    ts = spec(table)
    target, created = _ensure(spark, cfg, ts)
    keys = list(keys or ts.keys)
    src = conform(df, ts)
    if created or _is_empty(spark, cfg, table):
        n = _append(spark, cfg, table, src)
        return {"source_rows": n, "inserted": n}
    # null-safe: a nullable key column (events.item_id) matches null to null
    cond = " AND ".join(f"t.{k} <=> s.{k}" for k in keys)
    before = _version(target)
    target.alias("t").merge(src.alias("s"), cond).whenNotMatchedInsertAll().execute()
    if _version(target) == before:
        # an insert-only MERGE that inserts nothing commits nothing (a rerun)
        return {"source_rows": src.count(), "inserted": 0}
    m = last_metrics(spark, cfg, table)
    return {"source_rows": m.get("numSourceRows", 0), "inserted": m.get("numTargetRowsInserted", 0)}


def _append(spark: SparkSession, cfg: Config, table: str, src: DataFrame) -> int:
    """Append ``src`` in one commit; the number of rows written."""
    src.write.format("delta").mode("append").save(path(cfg, table))
    return last_metrics(spark, cfg, table).get("numOutputRows", 0)


def _version(t: DeltaTable) -> int:
    return t.history(1).select("version").first()[0]


def upsert(spark: SparkSession, cfg: Config, table: str, df: DataFrame, keys: Sequence[str],
           compare: Sequence[str]) -> Dict[str, int]:
    """MERGE ``df`` into ``table`` on ``keys``: insert new keys, update a row only
    when one of ``compare`` differs. Meant for small keyed tables (catalogs,
    embeddings): unchanged input makes no commit at all."""
    ts = spec(table)
    target, created = _ensure(spark, cfg, ts)
    src = conform(df, ts)
    if created:
        # a new table: every row is an insert (the caller guarantees unique keys)
        n = _append(spark, cfg, table, src)
        return {"source_rows": n, "inserted": n, "updated": 0}
    current = target.toDF().select(*keys, F.lit(True).alias("__exists"),
                                   *[F.col(c).alias(f"__t_{c}") for c in compare])
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
        cond = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        (target.alias("t").merge(changed_rows.alias("s"), cond)
         .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
    finally:
        changed_rows.unpersist()
    m = last_metrics(spark, cfg, table)
    return {"source_rows": n_source, "inserted": m.get("numTargetRowsInserted", 0),
            "updated": m.get("numTargetRowsUpdated", 0)}


def _is_empty(spark: SparkSession, cfg: Config, table: str) -> bool:
    """No data file in the current snapshot (read from the log, no data read)."""
    return len(read(spark, cfg, table).inputFiles()) == 0


def last_partition_date(spark: SparkSession, cfg: Config, table: str) -> Optional[dt.date]:
    """The largest value of a table's date partition column, from the Delta log's
    file list alone (no data is read); None when the table has no rows."""
    ts = spec(table)
    if not ts.partition_by:
        raise ValueError(f"table '{table}' is not partitioned")
    pat = re.compile(rf"[/\\]{re.escape(ts.partition_by[0])}=(\d{{4}}-\d{{2}}-\d{{2}})[/\\]")
    df = read(spark, cfg, table)
    files = df.inputFiles()
    dates = [m.group(1) for f in files for m in [pat.search(f)] if m]
    if len(dates) == len(files):
        return dt.date.fromisoformat(max(dates)) if dates else None
    # file names that do not carry the partition value (e.g. column mapping): one aggregate
    return df.agg(F.max(ts.partition_by[0])).first()[0]


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
        dtab = DeltaTable.forPath(spark, path(cfg, t))
        version = dtab.history(1).select("version").first()[0]
        out.append({"table": t, "rows": dtab.toDF().count(), "version": version,
                    "path": os.path.relpath(path(cfg, t))})
    return out
