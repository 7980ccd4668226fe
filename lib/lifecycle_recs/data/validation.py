"""Ingest rules: raw source rows -> classified (valid, or the first rule failed),
deduplicated events in the ``events`` shape, quarantine rows, catalog rows, and
the counts that must add up (rows_in = written + already_present +
duplicates_in_batch + quarantined, each term counted on its own). The
``ingest`` stage lands them.

The identity of an event: ``(source, event_id)`` when the source has an event id
(``source.columns.event_id``); otherwise every field (user, item, type, time,
value, quantity, source): rows that differ in anything are distinct events and
only exact duplicates collapse. When one event id arrives with different fields,
the row with the largest ``(value, quantity, event_ts, event_type, item_id,
user_id)`` is kept, in one batch or across nights, in any order of arrival.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, Optional

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lifecycle_recs.config import ValidationConf
from lifecycle_recs.data.sources import RAW_COLUMNS, RawSource
from lifecycle_recs.dates import parse_date

log = logging.getLogger(__name__)


def iso_date(value: str, key: str) -> str:
    return parse_date(value, key).isoformat()


@dataclass
class IngestCounts:
    """Each count is measured on its own (a separate scan or aggregate), never as
    the remainder of the others, so :meth:`check` can fail."""

    files: int = 0  # files read (0 for in-memory sources)
    rows_in: int = 0  # rows of the source
    valid: int = 0  # rows that passed every rule
    quarantined: int = 0  # rows that failed one (sum of quarantine_reasons)
    quarantine_reasons: Dict[str, int] = field(default_factory=dict)
    distinct: int = 0  # distinct identities among the valid rows
    duplicates_in_batch: int = 0  # sum over identities of (rows - 1)
    already_present: int = 0  # identities already in ``events``
    replaced: int = 0  # ... of which a larger row replaced the stored one (event ids only)
    new: int = 0  # identities not in ``events`` (counted before the commit)
    written: int = 0  # the events table's row-count change
    items_in: int = 0
    items_written: int = 0
    items_missing_id: int = 0  # catalog rows without an item id (not written)
    items_bad_price: int = 0  # catalog rows whose price did not parse or was negative (price null)
    batches: int = 0  # micro-batches of new files (file sources read as a stream)
    restated: bool = False  # the rows replaced the whole source (``--restate``)
    stored_after: int = 0  # restated: the source's events after the commit
    seconds: Dict[str, float] = field(default_factory=dict)  # wall time of each step

    ADDED = (
        "files", "rows_in", "valid", "quarantined", "distinct", "duplicates_in_batch",
        "already_present", "replaced", "new", "written",
    )  # fmt: skip

    def add(self, other: IngestCounts) -> IngestCounts:
        """Fold the counts of one more micro-batch into these (each was checked on its own)."""
        for k in self.ADDED:
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for reason, n in other.quarantine_reasons.items():
            self.quarantine_reasons[reason] = self.quarantine_reasons.get(reason, 0) + n
        self.quarantine_reasons = dict(sorted(self.quarantine_reasons.items()))
        for step, secs in other.seconds.items():
            self.seconds[step] = round(self.seconds.get(step, 0.0) + secs, 2)
        return self

    def problems(self, committed: bool = True) -> list:
        p = []
        if self.valid + self.quarantined != self.rows_in:
            p.append(
                f"valid {self.valid} + quarantined {self.quarantined} != rows_in {self.rows_in}"
            )
        if sum(self.quarantine_reasons.values()) != self.quarantined:
            p.append(
                f"quarantine reasons {self.quarantine_reasons} do not sum to {self.quarantined}"
            )
        if self.distinct + self.duplicates_in_batch != self.valid:
            p.append(
                f"distinct {self.distinct} + duplicates {self.duplicates_in_batch} != valid "
                f"{self.valid}"
            )
        if self.new + self.already_present != self.distinct:
            p.append(
                f"new {self.new} + already_present {self.already_present} != distinct "
                f"{self.distinct}"
            )
        if self.restated:
            if committed and self.stored_after != self.distinct:
                p.append(
                    f"restated: the source holds {self.stored_after} events after the commit, "
                    f"not the {self.distinct} distinct events read"
                )
            return p
        if committed and self.written != self.new:
            p.append(
                f"written {self.written} (the table's row-count change) != new {self.new}: another "
                "writer changed events during this ingest"
            )
        if (
            committed
            and self.written + self.already_present + self.duplicates_in_batch + self.quarantined
            != self.rows_in
        ):
            p.append("written + already_present + duplicates_in_batch + quarantined != rows_in")
        return p

    def check(self, committed: bool = True) -> IngestCounts:
        bad = self.problems(committed)
        if bad:
            raise RuntimeError(f"ingest counts do not add up ({'; '.join(bad)}): {asdict(self)}")
        return self


# a time that carries its own offset or Z: already an instant
OWN_OFFSET = r"(?i)\d:\d{2}(:\d{2}(\.\d+)?)?\s*(z|utc|[+-]\d{2}(:?\d{2})?)$"


def parse_timestamp(raw: Column, kind: str, fmt: str | None, tz: str) -> Column:
    """Raw string -> UTC timestamp, null when it does not parse. A ``date`` is that day's
    midnight UTC whatever ``tz`` (shifting it would move every event to the day before)."""
    if kind == "epoch_seconds":
        secs = raw.try_cast("double")
        return F.when(
            secs.isNotNull() & (F.abs(secs) < 1e11), F.timestamp_micros((secs * 1e6).cast("long"))
        )
    if kind == "date":  # a calendar date names a day, not an instant: it is no time zone's
        return F.try_to_timestamp(raw, F.lit(fmt or "yyyy-MM-dd"))
    if kind == "datetime":
        d = F.try_to_timestamp(raw, F.lit(fmt)) if fmt else F.try_to_timestamp(raw)
    else:
        raise ValueError(
            f"source.timestamp_kind must be epoch_seconds, datetime or date; got '{kind}'"
        )
    if tz.upper() in ("UTC", "Z", "GMT"):
        return d
    # naive local times are shifted to UTC (the session time zone is UTC); a time that
    # carries its own offset or Z is already an instant and is not shifted again
    has_offset = raw.rlike(OWN_OFFSET)
    return F.when(has_offset, d).otherwise(F.to_utc_timestamp(d, tz))


def ambiguous_local_time(raw: Column, kind: str, fmt: str | None, tz: str) -> Column:
    """A naive local time in the hour a daylight-saving change repeats (one wall time, two
    instants): which event it was cannot be known, and two distinct events of that hour
    would collapse into one. False for UTC, dates, epochs and times with their own offset."""
    if kind != "datetime" or tz.upper() in ("UTC", "Z", "GMT"):
        return F.lit(False)
    d = F.try_to_timestamp(raw, F.lit(fmt)) if fmt else F.try_to_timestamp(raw)
    has_offset = raw.rlike(OWN_OFFSET)
    utc = F.to_utc_timestamp(d, tz)
    hour = F.expr("INTERVAL 1 HOUR")
    other = (F.from_utc_timestamp(utc - hour, tz) == d) | (
        F.from_utc_timestamp(utc + hour, tz) == d
    )
    return ~has_offset & d.isNotNull() & other


def classify(raw: RawSource, v: ValidationConf, ingested_at: dt.datetime) -> DataFrame:
    """Typed columns plus ``reason`` (null for a valid row): the first rule a row fails."""
    ev = raw.events
    for c in RAW_COLUMNS:  # an in-memory source may leave out the optional ones
        if c not in ev.columns:
            ev = ev.withColumn(c, F.lit(None).cast("string"))
    mapping = {k.lower(): val for k, val in raw.event_type_map.items()}
    et_raw = F.lower(F.trim(F.col("raw_event_type")))
    if mapping:
        m = F.create_map(*[x for kv in mapping.items() for x in (F.lit(kv[0]), F.lit(kv[1]))])
        event_type = F.coalesce(m[et_raw], et_raw)
    else:
        event_type = et_raw
    user = F.trim(F.col("raw_user_id"))
    item = F.trim(F.col("raw_item_id"))
    ts = parse_timestamp(
        F.trim(F.col("raw_event_ts")), raw.timestamp_kind, raw.timestamp_format, raw.timezone
    )
    value = F.col("raw_value").try_cast("double")
    qty = F.col("raw_quantity").try_cast("int")
    event_id = F.trim(F.col("raw_event_id"))
    typed = ev.select(
        "*",
        user.alias("user_id"),
        F.when(item != "", item).alias("item_id"),
        F.when(event_id != "", event_id).alias("event_id"),
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
        ("event_id_too_long", F.length("event_id") > v.max_id_length),
        ("missing_event_id", F.lit(raw.with_event_id) & F.col("event_id").isNull()),
        ("bad_timestamp", F.col("event_ts").isNull()),
        (
            "ambiguous_local_time",
            ambiguous_local_time(
                F.trim(F.col("raw_event_ts")),
                raw.timestamp_kind,
                raw.timestamp_format,
                raw.timezone,
            ),
        ),
        (
            "timestamp_out_of_range",
            (F.col("event_ts") < F.lit(lo).cast("timestamp"))
            | (F.col("event_ts") >= F.lit(hi).cast("timestamp")),
        ),
        # later than the run itself (plus clock skew): one such event would become D
        (
            "timestamp_in_future",
            F.col("event_ts") > F.lit(ingested_at + dt.timedelta(hours=v.max_future_hours)),
        ),
        (
            "unknown_event_type",
            F.col("event_type").isNull() | ~F.col("event_type").isin(*v.event_types),
        ),
        (
            "bad_value",
            F.col("raw_value").isNotNull()
            & (F.trim(F.col("raw_value")) != "")
            & F.col("raw_value").try_cast("double").isNull(),
        ),
        ("negative_value", F.col("value") < 0),
        ("value_out_of_range", F.isnan("value") | (F.col("value") > v.max_value)),
        (
            "bad_quantity",
            F.col("raw_quantity").isNotNull()
            & (F.col("quantity").isNull() | (F.col("quantity") < 0)),
        ),
    ]
    if v.require_item_id:
        rules.append(("missing_item_id", F.col("item_id").isNull()))
    if v.allowed_lateness_days is not None:  # right after the time rules: sound times only
        time_rules = [r for r in rules if r[0] in TIME_RULES]
        typed, too_late = _too_late(typed, time_rules, int(v.allowed_lateness_days))
        rules.insert(rules.index(time_rules[-1]) + 1, ("too_late", too_late))
    reason = F.lit(None).cast("string")
    for name, cond in reversed(rules):
        reason = F.when(F.coalesce(cond, F.lit(False)), F.lit(name)).otherwise(reason)
    return (
        typed.withColumn("reason", reason)
        .withColumn("ingested_at", F.lit(ingested_at).cast("timestamp"))
        .withColumn("source", F.lit(raw.name))
    )


TIME_RULES = (
    "bad_timestamp",
    "ambiguous_local_time",
    "timestamp_out_of_range",
    "timestamp_in_future",
)


def _too_late(typed: DataFrame, time_rules, days: int):
    """(rows with ``_newest``, the too_late condition): an event dated more than ``days``
    before the newest sound event time of its own file. A file's rows are the same however
    the files are batched, so a night and a rebuild from every file agree."""
    sound = F.col("event_ts").isNotNull()
    for _, cond in time_rules:
        sound = sound & ~F.coalesce(cond, F.lit(False))
    file_key = F.coalesce(F.col("raw_file"), F.lit(""))
    newest = (
        typed.where(sound)
        .groupBy(file_key.alias("_file"))
        .agg(F.to_date(F.max("event_ts")).alias("_newest"))
    )
    joined = typed.join(F.broadcast(newest), file_key == F.col("_file"), "left").drop("_file")
    cond = F.to_date("event_ts") < F.date_sub(F.col("_newest"), days)
    return joined, cond


# The identity of an event without an event id: every stored field but event_date
# (it derives from event_ts) and ingested_at; nulls equal nulls.
IDENTITY = ("user_id", "item_id", "event_type", "event_ts", "value", "quantity", "source")
# With an event id: (source, event_id); among rows of one id the largest of these wins.
BY_EVENT_ID = ("source", "event_id")
PREFERENCE = ("value", "quantity", "event_ts", "event_type", "item_id", "user_id")


def identity(with_event_id: bool) -> tuple:
    return BY_EVENT_ID if with_event_id else ("event_date",) + IDENTITY


def valid_events(classified: DataFrame) -> DataFrame:
    """Valid rows in the ``events`` shape (less ``ingested_at``), before deduplication."""
    ok = classified.where(F.col("reason").isNull())
    return ok.select(
        "user_id",
        "item_id",
        "event_type",
        "event_ts",
        F.to_date("event_ts").alias("event_date"),
        "value",
        "quantity",
        "event_id",
        "source",
    )


def deduplicate(
    valid: DataFrame, partitions: int, with_event_id: bool, ingested_at: dt.datetime
) -> DataFrame:
    """One row per identity, with ``ingested_at`` and ``n_rows`` (the rows of the
    batch that carried it: duplicates_in_batch is the sum of ``n_rows - 1``).

    Without event ids every field is the identity: a hash aggregation on the
    columns (fixed-width buffers, no sort of all events) after one shuffle by
    date (duplicates share ``event_date``), which also leaves one file per date
    and task to write. With event ids, rows of one id keep the largest
    :data:`PREFERENCE` tuple, so the result does not depend on input order.
    """
    if with_event_id:
        best = F.max(F.struct(*PREFERENCE)).alias("best")
        g = valid.groupBy(*BY_EVENT_ID).agg(best, F.count(F.lit(1)).alias("n_rows"))
        deduped = g.select(*BY_EVENT_ID, "best.*", "n_rows").withColumn(
            "event_date", F.to_date("event_ts")
        )
        deduped = deduped.repartition(max(1, partitions), "event_date")
    else:
        deduped = (
            valid.repartition(max(1, partitions), "event_date")
            .groupBy("event_date", *IDENTITY, "event_id")
            .agg(F.count(F.lit(1)).alias("n_rows"))
        )
    return deduped.withColumn("ingested_at", F.lit(ingested_at).cast("timestamp"))


QUARANTINE_FIELDS = (
    "raw_user_id",
    "raw_item_id",
    "raw_event_type",
    "raw_event_ts",
    "raw_value",
    "raw_quantity",
    "raw_event_id",
)


def quarantined_rows(classified: DataFrame) -> DataFrame:
    """Bad rows with an id that is a function of the row, its file and its
    occurrence among identical rows of that file: every bad row is kept once,
    whether the files arrive in one batch or over several nights, and a rerun
    of the same file inserts nothing."""
    bad = classified.where(F.col("reason").isNotNull())
    content = F.concat_ws(
        "\u001f",
        F.col("reason"),
        F.col("source"),
        F.coalesce(F.col("raw_file"), F.lit("")),
        *[F.coalesce(F.col(c), F.lit("\u2400")) for c in QUARANTINE_FIELDS],
    )
    bad = bad.withColumn("_content", content)
    occurrence = F.row_number().over(Window.partitionBy("_content").orderBy("_content"))
    qid = F.sha2(F.concat_ws("\u001f", F.col("_content"), occurrence.cast("string")), 256)
    return bad.select(
        qid.alias("quarantine_id"),
        "reason",
        *QUARANTINE_FIELDS,
        F.col("raw_file").alias("source_file"),
        "source",
        "ingested_at",
    )


@contextlib.contextmanager
def timed(counts: IngestCounts, step: str):
    t0 = time.perf_counter()
    yield
    counts.seconds[step] = round(time.perf_counter() - t0, 2)


CATALOG_FIELDS = ("title", "category", "description", "price", "year")


def typed_catalog(raw: RawSource) -> Optional[DataFrame]:
    """The catalog typed, with ``bad_price`` (a price that is not a non-negative
    number becomes null and is counted, rather than failing the run under ANSI)."""
    if raw.items is None:
        return None
    price = F.col("price").cast("string").try_cast("double")
    bad_price = F.col("price").isNotNull() & (price.isNull() | F.isnan(price) | (price < 0))
    return raw.items.select(
        F.trim(F.col("item_id").cast("string")).alias("item_id"),
        F.col("title").cast("string"),
        F.col("category").cast("string"),
        F.col("description").cast("string"),
        F.when(~bad_price, price).alias("price"),
        F.col("year").cast("string").try_cast("int").alias("year"),
        bad_price.alias("bad_price"),
    )


def catalog_rows(typed: DataFrame, source: str, updated_at: dt.datetime) -> DataFrame:
    """One row per non-blank item id in the ``items`` shape. Rows of one id that
    disagree resolve the same way on every run: the most complete row, then the
    largest (title, category, description, price, year)."""
    filled = sum(F.col(c).isNotNull().cast("int") for c in CATALOG_FIELDS)
    best = F.max(F.struct(filled.alias("_filled"), *CATALOG_FIELDS)).alias("best")
    ok = typed.where(F.col("item_id").isNotNull() & (F.col("item_id") != ""))
    return (
        ok.groupBy("item_id")
        .agg(best)
        .select(
            "item_id",
            *[F.col("best." + c).alias(c) for c in CATALOG_FIELDS],
            F.lit(source).alias("source"),
            F.lit(updated_at).cast("timestamp").alias("updated_at"),
        )
    )
