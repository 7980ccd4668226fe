"""Stage ``ingest``: the configured source -> ``events``, ``events_quarantine``, ``items``.

File sources (generic, synthetic) are read as a stream of files (Spark's file stream
source, ``trigger(availableNow=True)``, a checkpoint per source under the lakehouse): a
night reads only the files that arrived since the last one, in micro-batches whose Delta
writes are idempotent (``txnAppId`` / ``txnVersion``), so a replayed batch commits nothing.
The parsing settings the files were read under are kept with the checkpoint; a night with
other settings is refused unless it restates the source (``--restate``: every file read again,
replacing the source's events and quarantine rows in one commit each). RecBole files are read
whole every night.

In every batch each count is measured on its own and checked before anything is committed
(and once more after the events commit, against the table's row-count change); a batch with
too many bad rows fails here too (``validation.max_quarantine_fraction``, on the batch's own
rows).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict
from typing import Dict, List, Optional

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lifecycle_recs.config import Config
from lifecycle_recs.context import RunContext
from lifecycle_recs.data.sources import (
    FileLayout,
    RawSource,
    capture_schema,
    file_layout,
    parsing_settings,
    read_items,
    read_source,
    settings_changes,
    settings_fingerprint,
    stream_files,
)
from lifecycle_recs.data.validation import (
    PREFERENCE,
    IngestCounts,
    catalog_rows,
    classify,
    deduplicate,
    identity,
    quarantined_rows,
    timed,
    typed_catalog,
    valid_events,
)
from lifecycle_recs.dates import utc_now
from lifecycle_recs.io import checkpoints, tables
from lifecycle_recs.spark import sql_conf

log = logging.getLogger(__name__)


class QuarantineRateExceeded(RuntimeError):
    """Too many rows of one batch failed validation (nothing was committed)."""


class ParsingSettingsChanged(RuntimeError):
    """The source's parsing settings differ from those its files were ingested under."""


# Delta's idempotent writes: a commit carrying (app id, version) is skipped when that table
# already holds a commit of the app with that version or a later one
TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
TXN_VERSION = "spark.databricks.delta.write.txnVersion"


def _presence(
    deduped: DataFrame, spark: SparkSession, cfg: Config, keys, dates: Optional[List]
) -> Dict[str, int]:
    """Distinct identities, duplicates, and how many are new / already stored, in one pass."""
    stored = tables.read(spark, cfg, "events")
    if dates is not None:  # only the dates of this batch are read from the table
        stored = stored.where(F.col("event_date").isin(dates))
    marker = stored.select(
        *keys, F.lit(True).alias("_stored"), F.struct(*PREFERENCE).alias("_stored_best")
    )
    cond = [deduped[k].eqNullSafe(marker[k]) for k in keys]
    j = deduped.join(marker, on=cond, how="left")
    replaced = F.col("_stored").isNotNull() & (
        F.struct(*[deduped[c] for c in PREFERENCE]) > F.col("_stored_best")
    )
    row = j.agg(
        F.count(F.lit(1)).alias("distinct"),
        F.coalesce(F.sum(F.col("n_rows") - 1), F.lit(0)).alias("duplicates"),
        F.count(F.when(F.col("_stored").isNull(), 1)).alias("new"),
        F.count(F.when(F.col("_stored").isNotNull(), 1)).alias("present"),
        F.count(F.when(replaced, 1)).alias("replaced"),
    ).first()
    return {k: int(row[k]) for k in ("distinct", "duplicates", "new", "present", "replaced")}


def check_quarantine_rate(counts: IngestCounts, cfg: Config) -> None:
    v = cfg.validation
    if not counts.rows_in:
        return
    rate = counts.quarantined / counts.rows_in
    if rate <= v.max_quarantine_fraction:
        return
    top = sorted(counts.quarantine_reasons.items(), key=lambda kv: -kv[1])[:3]
    msg = (
        f"{counts.quarantined} of {counts.rows_in} rows ({rate:.1%}) failed validation, above "
        f"validation.max_quarantine_fraction {v.max_quarantine_fraction:.1%}; most common reasons "
        f"{top}"
    )
    if v.on_quarantine_excess == "fail":
        raise QuarantineRateExceeded(
            msg + ". Nothing was committed: fix the source or its conf "
            "(or set validation.on_quarantine_excess: warn)"
        )
    log.warning(msg)


def ingest(
    spark: SparkSession, cfg: Config, raw: RawSource | None = None, replace: bool = False
) -> IngestCounts:
    """Validate, deduplicate and land ``raw`` (default: the whole source) into ``events``,
    ``events_quarantine`` and ``items``. With ``replace``, the rows land as the whole of the
    source: its stored events and quarantine rows that ``raw`` does not hold are deleted in
    the same commits (a restatement)."""
    for t in (
        "events",
        "events_quarantine",
    ):  # a table of another schema fails before anything is written
        tables.ensure_table(spark, cfg, tables.spec(t))
    raw = raw or read_source(spark, cfg)
    now = utc_now()
    classified = classify(raw, cfg.validation, now)
    counts = IngestCounts(files=len(raw.files))
    with timed(counts, "count_input"):
        counts.rows_in = raw.events.count()
        counts.valid = classified.where(F.col("reason").isNull()).count()
    keys = identity(raw.with_event_id)
    deduped = deduplicate(
        valid_events(classified), cfg.spark.shuffle_partitions, raw.with_event_id, now
    )
    # malformed rows are few: keep them, count them by reason, write them from memory
    bad = quarantined_rows(classified).persist()
    deduped = deduped.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with timed(counts, "count_quarantine"):
            reasons = {r["reason"]: r["count"] for r in bad.groupBy("reason").count().collect()}
            counts.quarantine_reasons = dict(sorted(reasons.items()))
            counts.quarantined = bad.count()
        # the batch's dates: the presence read and the events MERGE touch only those
        # partitions (with event ids a correction may move an event to another date)
        dates = None
        if "event_date" in keys and not replace:
            dates = [r[0] for r in deduped.select("event_date").distinct().collect()]  # small
        with timed(counts, "count_presence"):
            p = _presence(deduped, spark, cfg, keys, dates)
        counts.distinct, counts.duplicates_in_batch = p["distinct"], p["duplicates"]
        counts.new, counts.already_present, counts.replaced = p["new"], p["present"], p["replaced"]
        counts.check(committed=False)  # before any commit
        check_quarantine_rate(counts, cfg)
        this_source = f"t.source = {tables.sql_string(raw.name)}" if replace else None
        with timed(counts, "quarantine"):
            # identical bad rows are all kept (counts add up); a rerun inserts none of them again
            tables.merge_new(spark, cfg, "events_quarantine", bad, replace_where=this_source)
        before = tables.row_count(spark, cfg, "events")
        with timed(counts, "events"):
            tables.merge_new(
                spark,
                cfg,
                "events",
                deduped.drop("n_rows"),
                keys=keys,
                prefer=PREFERENCE if raw.with_event_id else None,
                prune={"event_date": dates} if dates is not None else None,
                replace_where=this_source,
            )
        counts.written = tables.row_count(spark, cfg, "events") - before
        if replace:  # the source's events are now exactly this batch's distinct identities
            counts.restated = True
            counts.stored_after = (
                tables.read(spark, cfg, "events").where(F.col("source") == raw.name).count()
            )
    finally:
        bad.unpersist()
        deduped.unpersist()
    _ingest_items(spark, cfg, raw, counts, now)
    counts.check()
    log.info("ingest counts: %s", asdict(counts))
    return counts


def _ingest_items(
    spark: SparkSession, cfg: Config, raw: RawSource, counts: IngestCounts, now
) -> None:
    typed = typed_catalog(raw)
    if typed is None:
        return
    typed = typed.persist()
    try:
        row = typed.agg(
            F.count(F.lit(1)).alias("n"),
            F.count(F.when(F.col("item_id").isNull() | (F.col("item_id") == ""), 1)).alias("no_id"),
            F.count(F.when(F.col("bad_price"), 1)).alias("bad_price"),
        ).first()
        counts.items_in, counts.items_missing_id, counts.items_bad_price = (
            row["n"],
            row["no_id"],
            row["bad_price"],
        )
        if counts.items_missing_id or counts.items_bad_price:
            log.warning(
                "catalog: %d rows without an item id (not written), %d prices that are not a "
                "non-negative number (written as null)",
                counts.items_missing_id,
                counts.items_bad_price,
            )
        with timed(counts, "items"):
            im = tables.upsert(
                spark,
                cfg,
                "items",
                catalog_rows(typed, raw.name, now),
                keys=["item_id"],
                compare=["title", "category", "description", "price", "year"],
            )
    finally:
        typed.unpersist()
    counts.items_written = im["inserted"] + im["updated"]


def ingest_source(spark: SparkSession, cfg: Config) -> IngestCounts:
    """The configured source into the tables: a file source's new files (or, restated, all of
    them), RecBole files (or any source with ``ingest.incremental`` off) whole."""
    if cfg.source.kind == "recbole" or not cfg.ingest.incremental:
        return ingest(spark, cfg)
    layout = file_layout(spark, cfg)
    if cfg.ingest.restate:
        return restate(spark, cfg, layout)
    return ingest_new_files(spark, cfg, layout)


def source_state(spark: SparkSession, cfg: Config, layout: FileLayout) -> Dict:
    """The source's saved state, created on its first night (the parsing settings, the files'
    schema, a fresh app id for idempotent writes). Other parsing settings than the saved
    ones are refused, naming what changed."""
    settings = parsing_settings(cfg)
    state = checkpoints.load_state(cfg)
    if state is None:
        state = _new_state(spark, cfg, layout, settings)
        checkpoints.save_state(cfg, state)
    elif state["fingerprint"] != settings_fingerprint(settings):
        changed = "; ".join(settings_changes(state["settings"], settings))
        raise ParsingSettingsChanged(
            f"the parsing settings of source '{layout.name}' changed since its files were "
            f"ingested ({changed}). New files read under other settings than the stored events "
            "would make its history inconsistent. Restore the settings, or restate the source "
            "(--restate: every file is read again under the new settings and replaces the "
            "source's events in one commit)"
        )
    return state


def _new_state(spark: SparkSession, cfg: Config, layout: FileLayout, settings: Dict) -> Dict:
    return {
        "source": layout.name,
        "settings": settings,
        "fingerprint": settings_fingerprint(settings),
        "schema": capture_schema(spark, cfg, layout).json(),
        "app_id": f"lifecycle-ingest-{uuid.uuid4().hex}",
        "created_at": utc_now().isoformat(),
    }


def ingest_new_files(spark: SparkSession, cfg: Config, layout: FileLayout) -> IngestCounts:
    """The files that arrived since the last night, one micro-batch at a time, then the
    catalog. A batch that failed (or a crash) is replayed by the next run; its Delta writes
    that had committed are skipped (``txnAppId`` = the source's app id, ``txnVersion`` = the
    batch id, set on the batch's own session)."""
    state = source_state(spark, cfg, layout)
    for t in ("events", "events_quarantine"):  # before the first batch, outside any txn
        tables.ensure_table(spark, cfg, tables.spec(t))
    total, batches, failure = IngestCounts(), [], []

    def one_batch(df: DataFrame, batch_id: int) -> None:
        try:
            session = df.sparkSession
            files = tuple(sorted(r[0] for r in df.select("raw_file").distinct().collect()))
            raw = layout.raw(df, files)
            with sql_conf(session, {TXN_APP_ID: state["app_id"], TXN_VERSION: str(batch_id)}):
                counts = ingest(session, cfg, raw)
            total.add(counts)
            batches.append(batch_id)
        except Exception as e:  # kept, so the caller raises the error itself, not a wrapper
            failure.append(e)
            raise

    schema = StructType.fromJson(json.loads(state["schema"]))
    query = (
        stream_files(spark, cfg, layout, schema)
        .writeStream.foreachBatch(one_batch)
        .option("checkpointLocation", checkpoints.stream_location(cfg))
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination()
    except Exception:
        if failure:
            raise failure[0] from None
        raise
    log.info("ingest: %d new file(s) of source '%s' in %d micro-batch(es) %s", total.files,
             layout.name, len(batches), batches)  # fmt: skip
    total.batches = len(batches)
    _ingest_items(spark, cfg, _catalog_only(spark, cfg, layout), total, utc_now())
    total.check()
    log.info("ingest counts: %s", asdict(total))
    return total


def restate(spark: SparkSession, cfg: Config, layout: FileLayout) -> IngestCounts:
    """Every file of the source read again under the current settings, replacing the
    source's events and quarantine rows (one commit each); then the stream starts afresh
    with every current file marked read, under a new app id and the new settings."""
    counts = ingest(spark, cfg, read_source(spark, cfg), replace=True)
    checkpoints.remove_stream(cfg)
    state = _new_state(spark, cfg, layout, parsing_settings(cfg))
    schema = StructType.fromJson(json.loads(state["schema"]))
    query = (  # mark the files read: the batches write nothing
        stream_files(spark, cfg, layout, schema)
        .writeStream.foreachBatch(lambda df, batch_id: None)
        .option("checkpointLocation", checkpoints.stream_location(cfg))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    checkpoints.save_state(cfg, state)
    log.warning(
        "source '%s' restated: %d events stored from %d file(s) read under the new settings",
        layout.name, counts.stored_after, counts.files,
    )  # fmt: skip
    return counts


def _catalog_only(spark: SparkSession, cfg: Config, layout: FileLayout) -> RawSource:
    return RawSource(layout.name, None, layout.timestamp_kind, None, layout.timezone, {},
                     read_items(spark, cfg))  # fmt: skip


def run(ctx: RunContext) -> Dict[str, object]:
    return asdict(ingest_source(ctx.spark, ctx.cfg))
