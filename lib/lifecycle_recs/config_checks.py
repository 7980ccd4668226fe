"""The checks behind :mod:`.config`: allowed values per key, positive and
fraction keys, type checks of a value against its annotation, checks that span
keys, and the table-name / remote-path tests the config and the table layer
share. Imports nothing of the project but dates and names (no cycle with
``config``)."""

from __future__ import annotations

import logging
import re
import typing
from typing import Any, Dict, Optional, Tuple

from lifecycle_recs.dates import parse_date
from lifecycle_recs.names import (
    EVENT_FIELDS,
    ITEM_FIELDS,
    PIPELINE_STAGES,
    STRATEGY_AT_RISK,
    STRATEGY_NEW_USER,
    TABLE_NAMES,
)

log = logging.getLogger(__name__)

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){1,2}$")


def is_table_name(p: Optional[str]) -> bool:
    """``catalog.schema.table`` or ``schema.table`` (a metastore / Unity Catalog
    table), not a path: no slash, two or three identifiers."""
    return p is not None and bool(_TABLE_NAME.match(p))


# Allowed values, by dotted key; ``stages`` lists are checked item by item.
CHOICES: Dict[str, Tuple[Any, ...]] = {
    "source.kind": ("synthetic", "generic", "recbole"),
    "state.mode": ("auto", "incremental", "full"),
    "source.format": ("csv", "json", "parquet"),
    "source.items_format": ("csv", "json", "parquet"),
    "source.timestamp_kind": ("epoch_seconds", "datetime", "date"),
    "embedding.device": ("auto", "cpu", "cuda"),
    "model.encoder": ("lstm", "gru", "transformer"),
    "train.feeder": ("parquet", "petastorm"),
    "validation.on_quarantine_excess": ("fail", "warn"),
    "stages": PIPELINE_STAGES,
    "recommend.strategies_off": (STRATEGY_NEW_USER, STRATEGY_AT_RISK),
}
POSITIVE = (
    "spark.shuffle_partitions",
    "ingest.max_files_per_batch",
    "sequences.max_length",
    "lifecycle.horizon_days",
    "train.epochs",
    "train.batch_size",
    "recommend.k",
    "recommend.chunk_size",
    "embedding.batch_size",
    "lifecycle.new_days",
    "lifecycle.at_risk_days",
    "lifecycle.churn_days",
    "lifecycle.transition_step_days",
    "lifecycle.reactivation_window_days",
    "lifecycle.at_risk_gap_multiplier",
    "validation.max_id_length",
    "validation.max_value",
    "evaluation.bootstrap",
    "evaluation.btyd_max_rows",
    "evaluation.jaccard_pairs",
    "model.lapsed_periods",
    "maintenance.feed_max_age_hours",
)
FRACTIONS = (
    "validation.max_quarantine_fraction",
    "publish.max_shrink_fraction",
    "train.validation_fraction",
    "evaluation.popularity_head_fraction",
)


def cross_checks(cfg: Any) -> None:  # a config.Config
    """Checks that span keys (each names the keys involved)."""
    v, src = cfg.validation, cfg.source
    lo, hi = (
        parse_date(v.min_event_date, "validation.min_event_date"),
        parse_date(v.max_event_date, "validation.max_event_date"),
    )
    if lo >= hi:
        raise ValueError(
            f"validation.min_event_date {lo} must be before validation.max_event_date {hi}"
        )
    for key, fields in (("source.columns", EVENT_FIELDS), ("source.items_columns", ITEM_FIELDS)):
        unknown = sorted(set(getattr(src, key.split(".")[1])) - set(fields))
        if unknown:
            raise ValueError(
                f"{key} has unknown key(s) {unknown}: its keys are the fields "
                f"{list(fields)}, its values the file's column names"
            )
    unknown_tables = sorted(set(cfg.tables) - set(TABLE_NAMES))
    if unknown_tables:
        raise ValueError(
            f"tables has unknown key(s) {unknown_tables}: the tables are {list(TABLE_NAMES)}"
        )
    value_types = cfg.sequences.value_event_types
    no_type = sorted(set(value_types) - set(v.event_types))
    if no_type and len(no_type) == len(set(value_types)):
        raise ValueError(
            f"sequences.value_event_types {no_type} are not in validation.event_types "
            f"{list(v.event_types)}: no event would ever count as value"
        )
    if no_type:
        log.warning(
            "sequences.value_event_types %s are not in validation.event_types %s: no event of "
            "those types is ever stored",
            no_type,
            list(v.event_types),
        )
    outside = sorted({t for t in src.event_type_map.values() if t not in v.event_types})
    if outside:
        raise ValueError(
            f"source.event_type_map maps to {outside}, which are not in validation.event_types "
            f"{list(v.event_types)}: every such row would be quarantined"
        )
    if src.event_type is not None:
        if src.columns.get("event_type"):
            raise ValueError(
                f"source.event_type ({src.event_type!r}) and source.columns.event_type "
                f"({src.columns['event_type']!r}) are both set: a constant type or a column, not "
                "both"
            )
        if src.event_type not in v.event_types:
            raise ValueError(
                f"source.event_type {src.event_type!r} is not in validation.event_types "
                f"{list(v.event_types)}: every row would be quarantined"
            )
    lc = cfg.lifecycle
    if not lc.at_risk_days < lc.churn_days:
        raise ValueError(
            f"lifecycle.at_risk_days ({lc.at_risk_days}) must be below lifecycle.churn_days "
            f"({lc.churn_days})"
        )
    if cfg.table_schema is not None and not is_table_name(cfg.table_schema + ".t"):
        raise ValueError(
            "config key 'table_schema' must be 'catalog.schema' or 'schema', got "
            f"{cfg.table_schema!r}"
        )
    share = cfg.recommend.keep_seen_repeat_share
    if share is not None and not 0 <= share <= 1:
        raise ValueError(
            "config key 'recommend.keep_seen_repeat_share' must be in [0, 1] or null, got "
            f"{share!r}"
        )
    keep = cfg.maintenance.retain_days
    if keep < 0:
        raise ValueError(f"config key 'maintenance.retain_days' must be 0 or more, got {keep}")
    for key in FRACTIONS:
        section, name = key.split(".")
        x = getattr(getattr(cfg, section), name)
        if not 0 <= x < 1:
            raise ValueError(f"config key '{key}' must be in [0, 1), got {x!r}")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_value(value: Any, tp, key: str) -> Any:
    """``value`` checked against the annotation ``tp``; lists become tuples."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_value(value, inner[0], key)
    if tp is Any:
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(
                f"config key '{key}' must be a list, got {type(value).__name__} {value!r}"
            )
        return tuple(_check_value(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(
                f"config key '{key}' must be a mapping, got {type(value).__name__} {value!r}"
            )
        return {
            _check_value(k, args[0], f"{key} (key)"): _check_value(v, args[1], f"{key}.{k}")
            for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(
                f"config key '{key}' must be a number, got {type(value).__name__} {value!r}"
            )
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(
                f"config key '{key}' must be an integer, got {type(value).__name__} {value!r}"
            )
        return value
    if (
        tp is str
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and key.endswith("_date")
    ):
        raise ValueError(f"config key '{key}' must be a date string 'YYYY-MM-DD', got {value!r}")
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. a separator or a memory size written without quotes
    if not isinstance(value, tp):
        raise ValueError(
            f"config key '{key}' must be {_type_name(tp)}, got {type(value).__name__} {value!r}"
        )
    return value
