"""Stage ``ingest``: the configured source -> ``events``, ``events_quarantine``, ``items``.

Every count is measured on its own and checked before anything is committed
(and once more after the events commit, against the table's row-count change);
a batch with too many bad rows fails here too (``validation.max_quarantine_fraction``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Dict

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lifecycle_recs.config import Config
from lifecycle_recs.context import RunContext
from lifecycle_recs.data.sources import RawSource, read_source
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
from lifecycle_recs.io import tables

log = logging.getLogger(__name__)


class QuarantineRateExceeded(RuntimeError):
    """Too many rows of one batch failed validation (nothing was committed)."""


def _presence(deduped: DataFrame, spark: SparkSession, cfg: Config, keys) -> Dict[str, int]:
    """Distinct identities, duplicates, and how many are new / already stored, in one pass."""
    stored = tables.read(spark, cfg, "events")
    if "event_date" in keys:  # only the dates of this batch are read from the table
        dates = [r[0] for r in deduped.select("event_date").distinct().collect()]
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


def ingest(spark: SparkSession, cfg: Config, raw: RawSource | None = None) -> IngestCounts:
    """Validate, deduplicate and land the source into ``events``, ``events_quarantine`` and
    ``items``."""
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
        with timed(counts, "count_presence"):
            p = _presence(deduped, spark, cfg, keys)
        counts.distinct, counts.duplicates_in_batch = p["distinct"], p["duplicates"]
        counts.new, counts.already_present, counts.replaced = p["new"], p["present"], p["replaced"]
        counts.check(committed=False)  # before any commit
        check_quarantine_rate(counts, cfg)
        with timed(counts, "quarantine"):
            # identical bad rows are all kept (counts add up); a rerun inserts none of them again
            tables.merge_new(spark, cfg, "events_quarantine", bad)
        before = tables.row_count(spark, cfg, "events")
        with timed(counts, "events"):
            tables.merge_new(
                spark,
                cfg,
                "events",
                deduped.drop("n_rows"),
                keys=keys,
                prefer=PREFERENCE if raw.with_event_id else None,
            )
        counts.written = tables.row_count(spark, cfg, "events") - before
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


def run(ctx: RunContext) -> Dict[str, object]:
    return asdict(ingest(ctx.spark, ctx.cfg))
