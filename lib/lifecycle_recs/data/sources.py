"""Event and catalog sources, read into one raw, all-string shape.

Every source returns a :class:`RawSource`: ``events`` with the columns
``raw_user_id, raw_item_id, raw_event_type, raw_event_ts, raw_value,
raw_quantity, raw_event_id`` (strings, exactly as read, so that ingest can
quarantine what does not parse) and ``raw_file`` (the name of the file a row
came from), plus how to parse the timestamp; and ``items`` (or None).

File sources are listed once: the DataFrames read exactly the files present
when the source was opened (``RawSource.files``), however many times ingest
scans them, so a file that lands mid-run waits for the next night. CSV headers
are checked against the first file's in every file (``enforceSchema`` off):
columns are matched by name, never by position.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lifecycle_recs.config import Config, SourceConf
from lifecycle_recs.data.synthetic import shop
from lifecycle_recs.fs import is_remote_path
from lifecycle_recs.names import EVENT_FIELDS, ITEM_FIELDS

TARGETS = EVENT_FIELDS
RAW_COLUMNS = tuple("raw_" + t for t in TARGETS) + ("raw_file",)
ITEM_COLUMNS = ITEM_FIELDS


@dataclass
class RawSource:
    name: str
    events: DataFrame
    timestamp_kind: str  # epoch_seconds | datetime | date
    timestamp_format: Optional[str]
    timezone: str
    event_type_map: Dict[str, str]
    items: Optional[DataFrame]
    files: Tuple[str, ...] = ()  # the files read (empty for in-memory sources)
    with_event_id: bool = False  # the source has an event id column: it is the identity


def _reader(spark: SparkSession, fmt: str, source: SourceConf):
    if fmt == "csv":
        # everything as strings: parsing (and quarantine) happens in ingest; every file's
        # header must name the same columns in the same order (a reordered file fails, naming
        # the column, instead of having its columns swapped)
        return (
            spark.read.format("csv")
            .option("header", source.csv_header)
            .option("sep", source.csv_sep)
            .option("inferSchema", False)
            .option("enforceSchema", False)
        )
    if fmt == "json":
        return spark.read.format("json").option("primitivesAsString", True)
    if fmt == "parquet":
        return spark.read.format("parquet")
    raise ValueError(f"source.format must be one of csv, json, parquet; got '{fmt}'")


def _read(
    spark: SparkSession, fmt: str, path: str, source: SourceConf
) -> Tuple[DataFrame, Tuple[str, ...]]:
    """The files under ``path``, listed once, and a DataFrame over exactly those files."""
    if not path:
        raise ValueError("source.path is not set in the config")
    if not is_remote_path(path) and not os.path.exists(path):
        raise FileNotFoundError(f"source path does not exist: {path}")
    reader = _reader(spark, fmt, source)
    files = tuple(sorted(reader.load(path).inputFiles()))
    if not files:
        raise FileNotFoundError(f"source path {path} holds no {fmt} files")
    return reader.load(list(files)), files


def with_file_name(df: DataFrame, root: Optional[str] = None) -> DataFrame:
    """Add ``raw_file``: the file each row was read from, as its path below the source's
    ``root`` folder (``day=2026-11-16/part-00000.parquet``; its name alone when it is not
    under a folder of that name). It is part of a quarantined row's identity, so identical
    bad rows of two files are two rows, also when two folders hold files of one name (a
    landing zone of date folders); and moving the whole landing zone changes none."""
    if "raw_file" in df.columns:  # a stream's micro-batch carries it from the stream
        return df
    name = F.col("_metadata.file_name")
    folder = os.path.basename(str(root).rstrip("/")) if root else ""
    if not folder or "\\E" in folder:
        return df.withColumn("raw_file", name)
    below = F.regexp_extract(F.col("_metadata.file_path"), rf"^.*?/\Q{folder}\E/(.+)$", 1)
    return df.withColumn("raw_file", F.coalesce(F.nullif(below, F.lit("")), name))


def _as_raw(
    df: DataFrame,
    columns: Dict[str, Optional[str]],
    where: str,
    constant_type: Optional[str] = None,
) -> DataFrame:
    """``df`` in ``RAW_COLUMNS`` by the target -> source column mapping; with
    ``constant_type`` every row gets that event type (logs without a type column)."""
    needed = ("user_id", "event_ts") if constant_type else ("user_id", "event_type", "event_ts")
    missing_conf = [t for t in needed if not columns.get(t)]
    if missing_conf:
        hint = (
            " (or set source.event_type for a log whose rows are all one type)"
            if "event_type" in missing_conf
            else ""
        )
        raise ValueError(
            f"{where}: source.columns must map {missing_conf} to a source column{hint}"
        )
    absent = [c for c in columns.values() if c and c not in df.columns]
    if absent:
        raise ValueError(
            f"{where}: column(s) {absent} named in source.columns are not in the input; it has "
            f"{df.columns}"
        )

    def pick(target: str) -> Column:
        if target == "event_type" and constant_type:
            return F.lit(constant_type).alias("raw_event_type")
        src = columns.get(target)
        return (F.col(src).cast("string") if src else F.lit(None).cast("string")).alias(
            "raw_" + target
        )

    file_col = F.col("raw_file") if "raw_file" in df.columns else F.lit(None).cast("string")
    return df.select(*[pick(t) for t in TARGETS], file_col.alias("raw_file"))


SYNTHETIC_MAPPING = {
    "user_id": "event_user",
    "item_id": "sku",
    "event_type": "action",
    "event_ts": "ts",
    "value": "revenue",
    "quantity": "qty",
}


@dataclass(frozen=True)
class FileLayout:
    """How the files of a file source (generic or synthetic) become raw rows: where they
    are, their format, the column mapping and how to parse times."""

    name: str
    format: str
    path: str
    columns: Dict[str, Optional[str]]
    constant_type: Optional[str]
    timestamp_kind: str
    timestamp_format: Optional[str]
    timezone: str
    event_type_map: Dict[str, str]
    with_event_id: bool

    def raw(self, files_df: DataFrame, files: Tuple[str, ...] = ()) -> RawSource:
        """A :class:`RawSource` over ``files_df`` (rows as read from the files; a static
        DataFrame, e.g. one micro-batch of the stream), without the catalog."""
        events = _as_raw(
            with_file_name(files_df, self.path), self.columns, self.path, self.constant_type
        )
        return RawSource(
            self.name,
            events,
            self.timestamp_kind,
            self.timestamp_format,
            self.timezone,
            self.event_type_map,
            None,
            files,
            self.with_event_id,
        )


def synthetic_raw_dir(cfg: Config) -> str:
    """Where the synthetic generator lands its files: one folder per day under ``events/``,
    delivered up to ``synthetic.deliver_through`` (:func:`shop.deliver`)."""
    return cfg.source.raw_path or os.path.join(cfg.lakehouse, "_raw_synthetic")


def file_layout(spark: SparkSession, cfg: Config) -> FileLayout:
    """The layout of a file source (``source.kind`` generic or synthetic). The synthetic
    generator writes its files first if they are not there yet."""
    src = cfg.source
    if src.kind == "synthetic":
        raw = synthetic_raw_dir(cfg)
        shop.deliver(spark, cfg.synthetic, raw)
        path = os.path.join(raw, "events")
        return FileLayout(
            src.name or "synthetic", "parquet", path, SYNTHETIC_MAPPING, None, "datetime", None,
            "UTC", {}, False,
        )  # fmt: skip
    if src.kind == "generic":
        if not src.name:
            raise ValueError(
                "source.name must be set for a generic source: it is part of every event's "
                "identity, so a name taken from the path would re-insert every event when the "
                "files move"
            )
        return FileLayout(
            src.name, src.format, src.path, src.columns, src.event_type, src.timestamp_kind,
            src.timestamp_format, src.timezone, src.event_type_map,
            bool(src.columns.get("event_id")),
        )  # fmt: skip
    raise ValueError(f"source.kind {src.kind!r} is not a file source (generic or synthetic)")


def read_items(spark: SparkSession, cfg: Config) -> Optional[DataFrame]:
    """The catalog of a file source, read whole (``ITEM_COLUMNS``), or None without one."""
    src = cfg.source
    if src.kind == "synthetic":
        items = spark.read.parquet(os.path.join(synthetic_raw_dir(cfg), "items"))
        return items.select(*ITEM_COLUMNS)
    if src.kind == "generic" and src.items_path:
        items = _read(spark, src.items_format, src.items_path, src)[0]
        return _catalog(items, src.items_columns, src.items_path)
    return None


def read_source(spark: SparkSession, cfg: Config) -> RawSource:
    """Read the configured source whole (``source.kind``: synthetic, generic or recbole)."""
    src = cfg.source
    if src.kind == "recbole":
        raw = read_recbole(spark, src.recbole_dir, src.recbole_dataset, src.recbole_event_type)
        return dataclasses.replace(raw, name=src.name) if src.name else raw
    if src.kind not in ("synthetic", "generic"):
        raise ValueError(f"source.kind must be synthetic, generic or recbole; got '{src.kind}'")
    layout = file_layout(spark, cfg)
    events, files = _read(spark, layout.format, layout.path, src)
    return dataclasses.replace(layout.raw(events, files), items=read_items(spark, cfg))


# -- the stream of new files --------------------------------------------------------------
def capture_schema(spark: SparkSession, cfg: Config, layout: FileLayout) -> StructType:
    """The schema of the source's files as they are now: captured on the first night and
    kept with the ingest state, never inferred again (CSV and JSON: every column a string)."""
    return _read(spark, layout.format, layout.path, cfg.source)[0].schema


def stream_files(
    spark: SparkSession, cfg: Config, layout: FileLayout, schema: StructType
) -> DataFrame:
    """A streaming DataFrame over the source's files with the captured ``schema``: each
    micro-batch holds the rows of files not read before (Spark's file stream source)."""
    src = cfg.source
    reader = spark.readStream.format(layout.format).schema(schema)
    reader = reader.option("maxFilesPerTrigger", cfg.ingest.max_files_per_batch)
    if layout.format == "csv":
        # the header of every file must name the schema's columns (matched by name)
        reader = (
            reader.option("header", src.csv_header)
            .option("sep", src.csv_sep)
            .option("enforceSchema", False)
        )
    return with_file_name(reader.load(layout.path), layout.path)


# the settings that decide how a raw row becomes an event: reading the same files under
# other ones gives other events, so a change is refused unless restated
_PARSING_SOURCE_KEYS = (
    "kind", "name", "format", "columns", "event_type_map", "event_type", "timestamp_kind",
    "timestamp_format", "timezone", "csv_header", "csv_sep",
)  # fmt: skip
_NOT_PARSING_VALIDATION_KEYS = ("max_quarantine_fraction", "on_quarantine_excess")


def _plain(v):
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def parsing_settings(cfg: Config) -> Dict[str, object]:
    """Everything that changes how a raw row becomes an event: the source's columns, formats,
    time zone and maps, and the validation rules."""
    out = {f"source.{k}": _plain(getattr(cfg.source, k)) for k in _PARSING_SOURCE_KEYS}
    for f in dataclasses.fields(cfg.validation):
        if f.name not in _NOT_PARSING_VALIDATION_KEYS:
            out[f"validation.{f.name}"] = _plain(getattr(cfg.validation, f.name))
    return out


def settings_fingerprint(settings: Dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def settings_changes(old: Dict[str, object], new: Dict[str, object]) -> List[str]:
    """``key: old -> new`` for every setting that differs."""
    return [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]


def _catalog(raw_items: DataFrame, columns: Dict[str, Optional[str]], where: str) -> DataFrame:
    """The catalog in ``ITEM_COLUMNS``. A column named in ``source.items_columns``
    must exist (a typo would null every title and be upserted over the good
    catalog); an unnamed one is read from the same-named column when present."""
    unknown = sorted(set(columns) - set(ITEM_COLUMNS))
    if unknown:
        raise ValueError(
            f"source.items_columns: unknown target(s) {unknown}; expected some of "
            f"{list(ITEM_COLUMNS)}"
        )
    absent = {t: c for t, c in columns.items() if c and c not in raw_items.columns}
    if absent:
        raise ValueError(
            f"{where}: column(s) {absent} named in source.items_columns are not in the catalog; it "
            f"has {raw_items.columns}"
        )
    cols = {
        t: columns[t] if t in columns else (t if t in raw_items.columns else None)
        for t in ITEM_COLUMNS
    }
    if not cols["item_id"]:
        raise ValueError(
            f"{where}: the catalog has no item id column (set source.items_columns.item_id)"
        )
    return raw_items.select(
        *[(F.col(c) if c else F.lit(None)).cast("string").alias(t) for t, c in cols.items()]
    )


def _read_atomic(spark: SparkSession, path: str) -> DataFrame:
    if not os.path.exists(path):
        raise FileNotFoundError(f"RecBole atomic file not found: {path}")
    df = spark.read.option("header", True).option("sep", "\t").option("quote", "\u0000").csv(path)
    # RecBole headers are "name:type"
    return with_file_name(df).toDF(*[c.split(":")[0] for c in df.columns], "raw_file")


def read_recbole(
    spark: SparkSession, directory: str, dataset: Optional[str] = None, event_type: str = "rating"
) -> RawSource:
    """RecBole atomic files ``<dir>/<name>.inter`` (+ ``.item``): ratings become events
    with ``value`` = rating and epoch-second timestamps; items get title, genres as
    category and release year."""
    if not directory:
        raise ValueError("source.recbole_dir is not set in the config")
    name = dataset or os.path.basename(directory.rstrip("/"))
    inter_path = os.path.join(directory, f"{name}.inter")
    inter = _read_atomic(spark, inter_path)
    for c in ("user_id", "item_id", "timestamp"):
        if c not in inter.columns:
            raise ValueError(f"{name}.inter has no '{c}' column; it has {inter.columns}")
    value_col = "rating" if "rating" in inter.columns else None
    events = inter.select(
        F.col("user_id").alias("raw_user_id"),
        F.col("item_id").alias("raw_item_id"),
        F.lit(event_type).alias("raw_event_type"),
        F.col("timestamp").alias("raw_event_ts"),
        (F.col(value_col) if value_col else F.lit(None).cast("string")).alias("raw_value"),
        F.lit(None).cast("string").alias("raw_quantity"),
        F.lit(None).cast("string").alias("raw_event_id"),
        F.col("raw_file"),
    )
    items = None
    item_path = os.path.join(directory, f"{name}.item")
    if os.path.exists(item_path):
        it = _read_atomic(spark, item_path)
        title = next((c for c in ("movie_title", "title", "name") if c in it.columns), None)
        cat = next(
            (c for c in ("class", "genre", "categories", "category") if c in it.columns), None
        )
        year = next((c for c in ("release_year", "year") if c in it.columns), None)
        items = it.select(
            F.col("item_id"),
            (F.col(title) if title else F.lit(None).cast("string")).alias("title"),
            (F.col(cat) if cat else F.lit(None).cast("string")).alias("category"),
            F.lit(None).cast("string").alias("description"),
            F.lit(None).cast("double").alias("price"),
            (F.col(year).try_cast("int") if year else F.lit(None).cast("int")).alias("year"),
        )
    return RawSource(
        name, events, "epoch_seconds", None, "UTC", {}, items, (os.path.abspath(inter_path),)
    )
