"""Ingest rules: raw source rows -> classified (valid, or the first rule failed),
deduplicated events in the ``events`` shape, quarantine rows, catalog rows, and
the counts that must add up (rows_in = written + already_present +
duplicates_in_batch + quarantined). The ``ingest`` stage lands them.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from . import schemas
from .config import ValidationConf
from .dates import parse_date
from .sources import RawSource

log = logging.getLogger(__name__)


def iso_date(value: str, key: str) -> str:
    return parse_date(value, key).isoformat()


@dataclass
class IngestCounts:
    rows_in: int = 0
    written: int = 0
    already_present: int = 0
    duplicates_in_batch: int = 0
    quarantined: int = 0
    quarantine_reasons: Dict[str, int] = field(default_factory=dict)
    items_in: int = 0
    items_written: int = 0
    seconds: Dict[str, float] = field(default_factory=dict)  # wall time of each step

    def check(self) -> "IngestCounts":
        total = self.written + self.already_present + self.duplicates_in_batch + self.quarantined
        if total != self.rows_in:
            raise RuntimeError(f"ingest counts do not add up: {asdict(self)}")
        return self


def parse_timestamp(raw: Column, kind: str, fmt: str | None, tz: str) -> Column:
    """Raw string -> UTC timestamp, null when it does not parse."""
    if kind == "epoch_seconds":
        secs = raw.try_cast("double")
        return F.when(secs.isNotNull() & (F.abs(secs) < 1e11), F.timestamp_micros((secs * 1e6).cast("long")))
    if kind == "date":
        d = F.try_to_timestamp(raw, F.lit(fmt or "yyyy-MM-dd"))
    elif kind == "datetime":
        d = F.try_to_timestamp(raw, F.lit(fmt)) if fmt else F.try_to_timestamp(raw)
    else:
        raise ValueError(f"source.timestamp_kind must be epoch_seconds, datetime or date; got '{kind}'")
    # naive local times are shifted to UTC (the session time zone is UTC)
    return d if tz.upper() in ("UTC", "Z", "GMT") else F.to_utc_timestamp(d, tz)


def classify(raw: RawSource, v: ValidationConf, ingested_at: dt.datetime) -> DataFrame:
    """Typed columns plus ``reason`` (null for a valid row): the first rule a row fails."""
    ev = raw.events
    mapping = {k.lower(): val for k, val in raw.event_type_map.items()}
    et_raw = F.lower(F.trim(F.col("raw_event_type")))
    if mapping:
        m = F.create_map(*[x for kv in mapping.items() for x in (F.lit(kv[0]), F.lit(kv[1]))])
        event_type = F.coalesce(m[et_raw], et_raw)
    else:
        event_type = et_raw
    user = F.trim(F.col("raw_user_id"))
    item = F.trim(F.col("raw_item_id"))
    ts = parse_timestamp(F.trim(F.col("raw_event_ts")), raw.timestamp_kind, raw.timestamp_format, raw.timezone)
    value = F.col("raw_value").try_cast("double")
    qty = F.col("raw_quantity").try_cast("int")
    typed = ev.select(
        "*",
        user.alias("user_id"),
        F.when(item != "", item).alias("item_id"),
        event_type.alias("event_type"),
        ts.alias("event_ts"),
        F.coalesce(value, F.lit(0.0)).alias("value"),
        qty.alias("quantity"),
    )
    lo = iso_date(v.min_event_date, "validation.min_event_date")
    hi = iso_date(v.max_event_date, "validation.max_event_date")
    rules = [
        ("missing_user_id", F.col("user_id").isNull() | (F.col("user_id") == "")),
        ("user_id_too_long", F.length("user_id") > v.max_id_length),
        ("item_id_too_long", F.length("item_id") > v.max_id_length),
        ("bad_timestamp", F.col("event_ts").isNull()),
        ("timestamp_out_of_range", (F.col("event_ts") < F.lit(lo).cast("timestamp"))
         | (F.col("event_ts") >= F.lit(hi).cast("timestamp"))),
        # later than the run itself (plus clock skew): one such event would become D
        ("timestamp_in_future", F.col("event_ts") > F.lit(ingested_at + dt.timedelta(hours=v.max_future_hours))),
        ("unknown_event_type", F.col("event_type").isNull() | ~F.col("event_type").isin(*v.event_types)),
        ("bad_value", F.col("raw_value").isNotNull() & (F.trim(F.col("raw_value")) != "")
         & F.col("raw_value").try_cast("double").isNull()),
        ("negative_value", F.col("value") < 0),
        ("value_out_of_range", F.isnan("value") | (F.col("value") > v.max_value)),
        ("bad_quantity", F.col("raw_quantity").isNotNull() & (F.col("quantity").isNull() | (F.col("quantity") < 0))),
    ]
    if v.require_item_id:
        rules.append(("missing_item_id", F.col("item_id").isNull()))
    reason = F.lit(None).cast("string")
    for name, cond in reversed(rules):
        reason = F.when(F.coalesce(cond, F.lit(False)), F.lit(name)).otherwise(reason)
    return typed.withColumn("reason", reason).withColumn("ingested_at", F.lit(ingested_at).cast("timestamp")) \
        .withColumn("source", F.lit(raw.name))


# The identity of an event (the events table's key, less event_date which derives from
# event_ts): two rows equal here (null item_id equal to null) are one event.
IDENTITY = tuple(k for k in schemas.spec("events").keys if k != "event_date")


def valid_events(classified: DataFrame) -> DataFrame:
    """Valid rows in the ``events`` shape, before deduplication."""
    ok = classified.where(F.col("reason").isNull())
    return ok.select("user_id", "item_id", "event_type", "event_ts", F.to_date("event_ts").alias("event_date"),
                     "value", "quantity")


def deduplicate(valid: DataFrame, partitions: int, source: str, ingested_at: dt.datetime) -> DataFrame:
    """One row per identity, with ``source`` and ``ingested_at``.

    Duplicates share ``event_date`` (it derives from ``event_ts``, part of the
    identity), so one shuffle by date both deduplicates and leaves one file per
    date and task to write. The grouping runs as a hash aggregation on the
    identity columns (only fixed-width buffers: no sort of all events), and
    when duplicates disagree on value or quantity the largest is kept, so the
    result does not depend on input order. One ingest reads one source, so the
    constant ``source`` and ``ingested_at`` are added after the shuffle.
    """
    keys = [c for c in IDENTITY if c != "source"]
    deduped = valid.repartition(max(1, partitions), "event_date").groupBy("event_date", *keys).agg(
        F.max("value").alias("value"), F.max("quantity").alias("quantity"))
    return (deduped.withColumn("source", F.lit(source))
            .withColumn("ingested_at", F.lit(ingested_at).cast("timestamp")))


def quarantined_rows(classified: DataFrame) -> DataFrame:
    bad = classified.where(F.col("reason").isNotNull())
    qid = F.sha2(F.concat_ws("\u001f", F.col("reason"), F.col("source"), *[
        F.coalesce(F.col(c), F.lit("\u2400")) for c in
        ("raw_user_id", "raw_item_id", "raw_event_type", "raw_event_ts", "raw_value", "raw_quantity")]), 256)
    return bad.select(qid.alias("quarantine_id"), "reason", "raw_user_id", "raw_item_id", "raw_event_type",
                      "raw_event_ts", "raw_value", "raw_quantity", "source", "ingested_at")


@contextlib.contextmanager
def timed(counts: IngestCounts, step: str):
    t0 = time.perf_counter()
    yield
    counts.seconds[step] = round(time.perf_counter() - t0, 2)


def catalog_rows(raw: RawSource, updated_at: dt.datetime) -> Optional[DataFrame]:
    """The source's catalog in the ``items`` shape, one row per non-blank item id (None without a catalog)."""
    if raw.items is None:
        return None
    return raw.items.select(
        F.trim(F.col("item_id").cast("string")).alias("item_id"),
        F.col("title").cast("string"), F.col("category").cast("string"),
        F.col("description").cast("string"), F.col("price").cast("double"),
        F.col("year").cast("int"), F.lit(raw.name).alias("source"),
        F.lit(updated_at).cast("timestamp").alias("updated_at"),
    ).where(F.col("item_id").isNotNull() & (F.col("item_id") != "")).dropDuplicates(["item_id"])
