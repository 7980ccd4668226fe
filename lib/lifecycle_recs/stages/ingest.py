"""Stage ``ingest``: the configured source -> ``events``, ``events_quarantine``, ``items``."""
from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Dict

from pyspark.sql import SparkSession

from .. import tables
from ..config import Config
from ..context import RunContext
from ..dates import utc_now
from ..ingest import IngestCounts, catalog_rows, classify, deduplicate, quarantined_rows, timed, valid_events
from ..sources import RawSource, read_source

log = logging.getLogger(__name__)


def ingest(spark: SparkSession, cfg: Config, raw: RawSource | None = None) -> IngestCounts:
    """Validate, deduplicate and land the source into ``events``, ``events_quarantine`` and ``items``."""
    for t in ("events", "events_quarantine"):  # a table of another schema fails before anything is written
        tables.ensure_table(spark, cfg, tables.spec(t))
    raw = raw or read_source(spark, cfg)
    now = utc_now()
    classified = classify(raw, cfg.validation, now)
    counts = IngestCounts()
    with timed(counts, "count_input"):
        counts.rows_in = raw.events.count()  # cheap: Parquet footers / a plain scan
    # malformed rows are few: keep them, count them by reason, write them from memory
    bad = quarantined_rows(classified).persist()
    try:
        with timed(counts, "quarantine"):
            reasons = {r["reason"]: r["count"] for r in bad.groupBy("reason").count().collect()}
            counts.quarantine_reasons = dict(sorted(reasons.items()))
            counts.quarantined = sum(counts.quarantine_reasons.values())
            if counts.quarantined:
                # identical bad rows are all kept (counts add up); a rerun inserts none of them again
                tables.merge_new(spark, cfg, "events_quarantine", bad)
            else:
                tables.ensure_table(spark, cfg, tables.spec("events_quarantine"))
    finally:
        bad.unpersist()
    valid_in = counts.rows_in - counts.quarantined
    valid = deduplicate(valid_events(classified), cfg.spark.shuffle_partitions, raw.name, now)
    with timed(counts, "events"):
        m = tables.merge_new(spark, cfg, "events", valid)
    counts.written = m["inserted"]
    counts.already_present = m["source_rows"] - m["inserted"]
    counts.duplicates_in_batch = valid_in - m["source_rows"]

    items = catalog_rows(raw, now)
    if items is not None:
        with timed(counts, "items"):
            im = tables.upsert(spark, cfg, "items", items, keys=["item_id"],
                               compare=["title", "category", "description", "price", "year"])
        counts.items_in = im["source_rows"]
        counts.items_written = im["inserted"] + im["updated"]
    counts.check()
    log.info("ingest counts: %s", asdict(counts))
    return counts


def run(ctx: RunContext) -> Dict[str, object]:
    return asdict(ingest(ctx.spark, ctx.cfg))
