"""The one place that defines every table's schema, partitioning and constraints.

Each :class:`TableSpec` is the contract downstream consumers read against: the
table contracts page (``docs/tables.md``) is generated from the ``doc`` strings here
(``python -m lifecycle_recs.schemas --write``), and tests check written tables against
these specs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from pyspark.sql import types as T

from lifecycle_recs.names import LIFECYCLE_STAGES, STRATEGIES

S, D, L, I, B, TS, DT, FL = (
    T.StringType(),
    T.DoubleType(),
    T.LongType(),
    T.IntegerType(),
    T.BooleanType(),
    T.TimestampType(),
    T.DateType(),
    T.FloatType(),
)


def _arr(t: T.DataType) -> T.ArrayType:
    return T.ArrayType(t, containsNull=True)


@dataclass(frozen=True)
class Col:
    name: str
    dtype: T.DataType
    nullable: bool
    doc: str


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: Tuple[Col, ...]
    partition_by: Tuple[str, ...] = ()
    keys: Tuple[str, ...] = ()
    checks: Dict[str, str] = field(default_factory=dict)
    doc: str = ""
    properties: Dict[str, str] = field(default_factory=dict)

    @property
    def schema(self) -> T.StructType:
        return T.StructType([T.StructField(c.name, c.dtype, c.nullable) for c in self.columns])

    @property
    def names(self) -> List[str]:
        return [c.name for c in self.columns]


# Deletion vectors make MERGE / DELETE cheaper but need a reader that supports them
# (Delta reader protocol 3 with the deletionVectors feature). They are on only for the
# tables this pipeline alone reads; the tables other teams read (possibly with other
# engines: Trino, older delta-rs, Power BI connectors) keep them off. Set explicitly.
DELETION_VECTORS = frozenset({"events", "events_quarantine"})


EVENTS = TableSpec(
    "events",
    (
        Col("user_id", S, False, "user identifier"),
        Col("item_id", S, True, "item identifier; null for order-level logs without items"),
        Col(
            "event_type",
            S,
            False,
            "canonical event type (view, click, add_to_cart, purchase, rating, ...)",
        ),
        Col("event_ts", TS, False, "event time, UTC"),
        Col("event_date", DT, False, "UTC date of event_ts (partition)"),
        Col(
            "value", D, False, "revenue (currency units) for purchases, rating for ratings, else 0"
        ),
        Col("quantity", I, True, "units, when the source has them"),
        Col(
            "event_id", S, True, "the source's event id, when it has one (source.columns.event_id)"
        ),
        Col("source", S, False, "source name from conf"),
        Col("ingested_at", TS, False, "when the row was first written"),
    ),
    partition_by=("event_date",),
    keys=(
        "event_date",
        "user_id",
        "item_id",
        "event_type",
        "event_ts",
        "value",
        "quantity",
        "source",
    ),
    checks={"value_non_negative": "value >= 0"},
    doc="Validated, deduplicated events. One row per distinct event: the identity of an event is "
    "(source, event_id) when the source has event ids, else every field (user_id, item_id, "
    "event_type, event_ts, value, quantity, source; nulls equal nulls): rows that differ in "
    "anything are distinct events, only exact duplicates collapse. No hash id is stored: a "
    "32-character digest per event would triple the table's size; where one is needed, md5 of "
    "those columns is deterministic.",
    # file statistics only where queries filter; ids are high-entropy strings
    # Delta passes table properties to the Parquet writer: event times are nearly
    # all distinct, so a dictionary for them is built only to be thrown away
    # (without it the write is ~15% faster and the files ~12% smaller).
    properties={
        "delta.dataSkippingStatsColumns": "event_ts,value,user_id",
        "parquet.enable.dictionary#event_ts": "false",
        # the incremental night reads which dates changed since its state from the feed
        "delta.enableChangeDataFeed": "true",
    },
)

EVENTS_QUARANTINE = TableSpec(
    "events_quarantine",
    (
        Col(
            "quarantine_id",
            S,
            False,
            "sha2-256 of the raw row, reason, file and occurrence among identical rows of that "
            "file (idempotent re-ingest, order-independent)",
        ),
        Col("reason", S, False, "first validation rule the row failed"),
        Col("raw_user_id", S, True, "user id as read"),
        Col("raw_item_id", S, True, "item id as read"),
        Col("raw_event_type", S, True, "event type as read (before mapping)"),
        Col("raw_event_ts", S, True, "timestamp as read"),
        Col("raw_value", S, True, "value as read"),
        Col("raw_quantity", S, True, "quantity as read"),
        Col("raw_event_id", S, True, "event id as read (sources with event ids)"),
        Col("source_file", S, True, "the file of the row: its path below the source folder"),
        Col("source", S, False, "source name from conf"),
        Col("ingested_at", TS, False, "when the row was quarantined"),
    ),
    keys=("quarantine_id",),
    doc="Rows that failed validation, with the reason. Nothing is dropped silently.",
)

ITEMS = TableSpec(
    "items",
    (
        Col("item_id", S, False, "item identifier"),
        Col("title", S, True, "item title"),
        Col("category", S, True, "category (for ML-100K: the genres)"),
        Col("description", S, True, "free text"),
        Col("price", D, True, "list price, currency units"),
        Col("year", I, True, "release year, when known"),
        Col("source", S, False, "source name"),
        Col("updated_at", TS, False, "when this version of the row was written"),
    ),
    keys=("item_id",),
    doc="Item catalog.",
)

USER_SEQUENCES = TableSpec(
    "user_sequences",
    (
        Col("snapshot_date", DT, False, "as-of date D; only events with event_date <= D are used"),
        Col("user_id", S, False, "user identifier"),
        Col(
            "item_ids",
            _arr(S),
            False,
            "last N item ids, oldest first (null entries for item-less events)",
        ),
        Col("event_types", _arr(S), False, "event type per step"),
        Col("event_ts", _arr(TS), False, "event time per step, UTC"),
        Col(
            "time_gaps_hours",
            _arr(D),
            False,
            "hours since the previous step (0 for the first step)",
        ),
        Col("values", _arr(D), False, "value per step"),
        Col("sequence_length", I, False, "number of steps (<= N)"),
        Col("n_events", L, False, "frequency: all events up to D"),
        Col("n_value_events", L, False, "events of a value type (purchase, rating) up to D"),
        Col("monetary_total", D, False, "sum of value of value-type events up to D"),
        Col("first_event_ts", TS, False, "first event time"),
        Col("last_event_ts", TS, False, "last event time <= D"),
        Col("days_since_last_event", D, False, "recency in days from end of D"),
        Col("tenure_days", D, False, "days from first event to end of D"),
        Col("active_days", I, False, "distinct event dates up to D"),
    ),
    partition_by=("snapshot_date",),
    keys=("snapshot_date", "user_id"),
    checks={"sequence_length_positive": "sequence_length > 0"},
    doc="Per-user behaviour sequence and RFM features as of D.",
)

# One step of a sequence: the sort key (time, funnel rank, item key, value) first, so
# that sorting the structs orders the steps; ``data.sequences.step_struct`` builds it.
STEP = T.StructType(
    [
        T.StructField("ts", TS, True),
        T.StructField("r", I, True),
        T.StructField("k", S, True),
        T.StructField("value", D, True),
        T.StructField("item", S, True),
        T.StructField("type", S, True),
    ]
)

USER_DAYS = TableSpec(
    "user_days",
    (
        Col("event_date", DT, False, "UTC event date (partition)"),
        Col("user_id", S, False, "user identifier"),
        Col("n_events", L, False, "the user's events that day"),
        Col("n_value_events", L, False, "of which of a value type (sequences.value_event_types)"),
        Col(
            "value_total",
            T.DecimalType(38, 9),
            True,
            "exact sum of the value of value-type events (null when none)",
        ),
        Col("first_ts", TS, False, "first event time that day"),
        Col("last_ts", TS, False, "last event time that day"),
        Col("items", _arr(S), False, "distinct item ids of the day, sorted (nulls left out)"),
        Col("steps", T.ArrayType(STEP, True), False, "the day's last N steps, oldest first"),
    ),
    partition_by=("event_date",),
    keys=("event_date", "user_id"),
    doc="The incremental night's state: one row per user and active day, a pure function of that "
    "date's partition of events. A night rewrites only the dates whose events changed since the "
    "events version it last reflected (read from the change data feed); user_sequences and "
    "user_lifecycle of any D are aggregates of it. Internal: other teams read the snapshots.",
)

USER_BASE = TableSpec(
    "user_base",
    (
        Col("as_of", DT, False, "the last date folded in (partition; one date at a time)"),
        Col("user_id", S, False, "user identifier"),
        Col("n_events", L, False, "the user's events up to as_of"),
        Col("n_value_events", L, False, "of which of a value type (sequences.value_event_types)"),
        Col(
            "value_total",
            T.DecimalType(38, 9),
            True,
            "exact sum of the value of value-type events up to as_of (null when none)",
        ),
        Col("first_ts", TS, False, "first event time"),
        Col("last_ts", TS, False, "last event time up to as_of"),
        Col("active_days", L, False, "days with an event up to as_of"),
        Col("steps", T.ArrayType(STEP, True), False, "the last N steps up to as_of, oldest first"),
    ),
    partition_by=("as_of",),
    keys=("as_of", "user_id"),
    doc="The incremental night's state, folded: every user_days row up to one date (as_of, "
    "before the first day any window of the night's snapshots reads), one row per user. A "
    "snapshot of D is this row plus the user_days rows after as_of, so a night reads a fixed "
    "window of days, not all history. Moved forward each night by the days it passed; rebuilt "
    "from user_days when events on or before as_of changed. Internal.",
)

USER_LIFECYCLE = TableSpec(
    "user_lifecycle",
    (
        Col("snapshot_date", DT, False, "as-of date D"),
        Col("user_id", S, False, "user identifier"),
        Col("stage", S, False, " | ".join(LIFECYCLE_STAGES) + ", as of D"),
        Col(
            "previous_stage",
            S,
            True,
            "stage as of D - transition_step_days (null if the user did not exist yet)",
        ),
        Col("stage_changed", B, False, "stage != previous_stage"),
        Col("days_since_last_event", D, False, "days from last event to end of D"),
        Col("tenure_days", D, False, "days from first event to end of D"),
        Col("median_gap_days", D, True, "median gap between the user's last N events, days"),
        Col("events_last_30d", L, False, "events in (D-30, D]"),
        Col(
            "value_last_horizon",
            D,
            False,
            "value of value-type events in (D-H, D] (the 'same as last H days' baseline)",
        ),
        Col("horizon_days", I, False, "label horizon H"),
        Col(
            "has_labels", B, False, "true when events cover (D, D+H] so the labels below are known"
        ),
        Col("churned_within_horizon", B, True, "no event in (D, D+H]; null without labels"),
        Col(
            "value_next_horizon",
            D,
            True,
            "value of value-type events in (D, D+H]; null without labels",
        ),
        Col("events_next_horizon", L, True, "events in (D, D+H]; null without labels"),
        Col(
            "items_next_horizon",
            _arr(S),
            True,
            "distinct items touched in (D, D+H]; null without labels",
        ),
    ),
    partition_by=("snapshot_date",),
    keys=("snapshot_date", "user_id"),
    checks={"stage_known": "stage IN (" + ",".join(f"'{x}'" for x in LIFECYCLE_STAGES) + ")"},
    doc="Lifecycle stage per user as of D, its transition, and (training snapshots) labels "
    "from (D, D+H].",
)

ITEM_EMBEDDINGS = TableSpec(
    "item_embeddings",
    (
        Col("item_id", S, False, "item identifier"),
        Col("text_hash", S, False, "sha2-256 of the item text the vector was computed from"),
        Col("model_name", S, False, "text encoder name"),
        Col("embedding", _arr(FL), False, "L2-normalised text vector"),
        Col("dim", I, False, "vector dimension"),
        Col(
            "text_chars",
            I,
            False,
            "characters of text embedded (before truncation to the model's max tokens)",
        ),
        Col("updated_at", TS, False, "when the vector was computed"),
    ),
    keys=("item_id", "model_name"),
    doc="Transformer text vector per item and model; recomputed only when the text hash changes.",
)

EVALUATION_METRICS = TableSpec(
    "evaluation_metrics",
    (
        Col("snapshot_date", DT, False, "snapshot the evaluation is about"),
        Col("dataset", S, False, "dataset / protocol name"),
        Col(
            "model",
            S,
            False,
            "model or baseline name (ours, most_popular, als, recency, ...; "
            "`next_horizon_items`: the items the evaluated users touched in (T, T+H], a "
            "reference for the lists' popularity bias)",
        ),
        Col("model_version", S, False, "artifact version, or the baseline's name"),
        Col("task", S, False, "next_item, next_item_unseen, long_horizon, churn, value, catalog"),
        Col("metric", S, False, "metric name, e.g. hit@10"),
        Col("value", D, True, "metric value (for a model-vs-model row: ours minus the baseline)"),
        Col("evaluated_at", TS, False, "when it was computed"),
        Col("n_users", L, True, "users the metric was computed on"),
        Col("ci_low", D, True, "2.5th percentile of the bootstrap over users (95% interval)"),
        Col("ci_high", D, True, "97.5th percentile of the bootstrap over users (95% interval)"),
        Col(
            "verdict",
            S,
            True,
            "model-vs-model rows: 'ours better', 'baseline better' or 'inconclusive' (the "
            "difference's interval spans 0)",
        ),
    ),
    partition_by=("snapshot_date",),
    keys=("snapshot_date", "dataset", "model", "task", "metric"),
    doc="Quality metrics of our model and baselines, per snapshot and dataset.",
)

_ITEM_WEIGHT = T.ArrayType(T.StructType([T.StructField("item_id", S), T.StructField("weight", D)]))

USER_INTERESTS = TableSpec(
    "user_interests",
    (
        Col("snapshot_date", DT, False, "as-of date D"),
        Col("user_id", S, False, "user identifier"),
        Col(
            "interest_vector",
            _arr(FL),
            False,
            "user vector from the sequence model (same space as item vectors)",
        ),
        Col(
            "top_categories",
            T.ArrayType(T.StructType([T.StructField("category", S), T.StructField("weight", D)])),
            False,
            "up to 3 categories with the share of the user's softmax score mass (0..1)",
        ),
        Col("model_version", S, False, "artifact version that produced the row"),
        Col("scored_at", TS, False, "when the row was computed"),
    ),
    partition_by=("snapshot_date",),
    keys=("snapshot_date", "user_id"),
    doc="User interest vector and top categories as of D.",
)

RETENTION_SCORES = TableSpec(
    "retention_scores",
    (
        Col("snapshot_date", DT, False, "as-of date D"),
        Col("user_id", S, False, "user identifier"),
        Col("stage", S, False, "lifecycle stage at D (user_lifecycle)"),
        Col("churn_probability", D, False, "P(no event in (D, D+H]), 0..1"),
        Col("retention_score", D, False, "1 - churn_probability"),
        Col(
            "predicted_value",
            D,
            False,
            "expected value of value-type events in (D, D+H], currency units (or rating points)",
        ),
        Col("horizon_days", I, False, "H, days"),
        Col(
            "because_items",
            _ITEM_WEIGHT,
            False,
            "history items that raised the recommendations most through the attention pooling "
            "(share, 0..1)",
        ),
        Col(
            "top_features",
            T.ArrayType(T.StructType([T.StructField("feature", S), T.StructField("effect", D)])),
            False,
            "features that moved churn_probability most: change when set to the training users' "
            "mean (signed)",
        ),
        Col("model_version", S, False, "artifact version"),
        Col("scored_at", TS, False, "when the row was computed"),
    ),
    partition_by=("snapshot_date",),
    keys=("snapshot_date", "user_id"),
    checks={
        "churn_probability_range": "churn_probability >= 0 AND churn_probability <= 1",
        "predicted_value_non_negative": "predicted_value >= 0",
    },
    doc="Churn probability, retention score and predicted value per user as of D, with "
    "explanations.",
)

RECOMMENDATIONS = TableSpec(
    "recommendations",
    (
        Col("snapshot_date", DT, False, "as-of date D"),
        Col("user_id", S, False, "user identifier"),
        Col("rank", I, False, "1..K, 1 = best"),
        Col("item_id", S, False, "recommended item"),
        Col(
            "score",
            D,
            False,
            "ranking score (higher is better; comparable within a user and strategy)",
        ),
        Col("strategy", S, False, " | ".join(STRATEGIES)),
        Col(
            "because_items",
            _ITEM_WEIGHT,
            False,
            "history items that raised the recommendations most through the attention pooling: "
            "'because you ...'",
        ),
        Col("model_version", S, False, "artifact version"),
        Col("scored_at", TS, False, "when the row was computed"),
    ),
    partition_by=("snapshot_date",),
    keys=("snapshot_date", "user_id", "rank"),
    checks={"rank_positive": "rank >= 1"},
    doc="Top-K items per user as of D, lifecycle-aware, seen items filtered where configured and "
    "re-consumption is not expected (docs/stages.md, Recommendations), category-capped.",
)

PIPELINE_RUNS = TableSpec(
    "pipeline_runs",
    (
        Col("run_id", S, False, "one id per invocation of the nightly job"),
        Col(
            "snapshot_date",
            DT,
            True,
            "D of the run (null for an ingest run without --date: D is known only after it)",
        ),
        Col("stage", S, False, "the stage, or 'run' for the run's last row"),
        Col(
            "status",
            S,
            False,
            "succeeded / failed (a stage); published / partial (the run: every stage of the conf "
            "has succeeded for D, or not yet)",
        ),
        Col("started_at", TS, False, "when the stage (or run) started, UTC"),
        Col("finished_at", TS, False, "when it ended, UTC"),
        Col("seconds", D, False, "wall time"),
        Col(
            "input_versions",
            T.MapType(S, L),
            True,
            "Delta version of every pipeline table when the stage started",
        ),
        Col(
            "output_versions",
            T.MapType(S, L),
            True,
            "Delta version of each table the stage committed to",
        ),
        Col("counts", S, True, "the stage's result (counts, model version, ...) as JSON"),
        Col("model_version", S, True, "the artifact the stage trained or scored with"),
        Col(
            "error",
            S,
            True,
            "a failed stage's exception type and first line, paths and URLs replaced",
        ),
    ),
    keys=("run_id", "stage"),
    doc="One row per stage and one per run, appended last. Consumers read the last published "
    "snapshot date (status 'published'): its rows in every snapshot table are complete.",
)

TABLES: Dict[str, TableSpec] = {
    t.name: t
    for t in (
        EVENTS,
        EVENTS_QUARANTINE,
        ITEMS,
        USER_DAYS,
        USER_BASE,
        USER_SEQUENCES,
        USER_LIFECYCLE,
        ITEM_EMBEDDINGS,
        EVALUATION_METRICS,
        USER_INTERESTS,
        RETENTION_SCORES,
        RECOMMENDATIONS,
        PIPELINE_RUNS,
    )
}


# Rows between Spark and the Spark-free core (``mapInPandas`` output schemas):
# the column names are the ml modules' (``ml.scorer.SCORED_COLUMNS``,
# ``ml.features.EXAMPLE_COLUMNS``); a test checks they agree.
SCORED_SCHEMA = (
    "user_id string, stage string, interest_vector array<float>, top_category_names "
    "array<string>, top_category_weights array<double>, churn_probability double, predicted_value "
    "double, because_item_ids array<string>, because_weights array<double>, feature_names "
    "array<string>, feature_effects array<double>, rec_items array<string>, rec_scores "
    "array<double>, strategy string"
)
EXAMPLE_SCHEMA = (
    "user_id string, items array<int>, events array<int>, gaps array<float>, values array<float>, "
    "targets array<int>, length int, feats array<float>, churn float, value float, label_w float, "
    "eval_target int, split string"
)


def ddl_names(ddl: str):
    """Column names of a DDL schema string (top-level commas only)."""
    names, depth, start = [], 0, 0
    for i, ch in enumerate(ddl + ","):
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "," and depth == 0:
            names.append(ddl[start:i].strip().split()[0])
            start = i + 1
    return names


def spec(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown table '{name}'; known tables: {sorted(TABLES)}") from None


def markdown(names: Optional[List[str]] = None) -> str:
    """Render the table contracts as Markdown (``docs/tables.md``)."""
    out = []
    for name in names or list(TABLES):
        t = TABLES[name]
        out.append(f"### `{t.name}`\n\n{t.doc}")
        extra = []
        if t.partition_by:
            extra.append("partitioned by " + ", ".join(f"`{p}`" for p in t.partition_by))
        if t.keys:
            extra.append("key " + ", ".join(f"`{k}`" for k in t.keys))
        if t.checks:
            extra.append("CHECK " + "; ".join(f"`{v}`" for v in t.checks.values()))
        if extra:
            out.append(" — ".join(extra) + ".")
        out.append("\n| column | type | null | meaning |\n|---|---|---|---|")
        for c in t.columns:
            out.append(
                f"| `{c.name}` | {c.dtype.simpleString()} | {'yes' if c.nullable else 'no'} | "
                f"{c.doc} |"
            )
        out.append("")
    return "\n".join(out)


BEGIN, END = "<!-- SCHEMAS:BEGIN -->", "<!-- SCHEMAS:END -->"


def write_doc(path: str) -> None:
    """Replace the generated section of the table contracts page at ``path``."""
    with open(path) as fh:
        text = fh.read()
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    with open(path, "w") as fh:
        fh.write(text[:a] + "\n" + markdown() + "\n" + text[b:])


if __name__ == "__main__":  # pragma: no cover
    import sys

    if sys.argv[1:2] == ["--write"]:
        write_doc(sys.argv[2] if len(sys.argv) > 2 else "docs/tables.md")
    else:
        print(markdown())
