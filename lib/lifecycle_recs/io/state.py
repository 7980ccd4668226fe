"""Whether the incremental night can use its state, and what it must rebuild.

The state is the ``user_days`` table. Each of its writes records, in the commit itself
(Delta ``userMetadata``), the ``events`` version it reflects and the fingerprint of the
settings that shape its rows. A night compares them with the current ones:

* usable: the dates to rebuild are those of every ``events`` row inserted, updated or
  deleted since that version (Delta's change data feed; new, late, corrected and
  restated events alike);
* not usable, with the reason: no state yet, other settings, another ``events`` table
  than the state's (dropped and created again: its Delta id differs), or a change feed
  that no longer covers the versions since (cleaned up, or enabled after the state was
  written).

``state.mode`` decides what happens then: ``incremental`` refuses to go on, ``auto``
rebuilds in full and says why, ``full`` always rebuilds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import List, Optional

from pyspark.sql import SparkSession

from lifecycle_recs.config import Config
from lifecycle_recs.io import tables, versions

STATE_TABLE = "user_days"
# bumped when the meaning of a user_days row changes: older states are rebuilt
LAYOUT = 1


class IncrementalUnavailable(RuntimeError):
    """``state.mode: incremental`` and the state cannot be used (the message says why)."""


def fingerprint(cfg: Config) -> str:
    """Everything that shapes a ``user_days`` row."""
    shape = {
        "layout": LAYOUT,
        "max_length": int(cfg.sequences.max_length),
        "value_event_types": sorted(cfg.sequences.value_event_types),
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Plan:
    """What a night does: ``mode`` full or incremental; ``reason`` why it is full (None
    when asked for); ``dates`` to rebuild when incremental; ``events_version`` the version
    of ``events`` the night reads."""

    mode: str
    events_version: int
    reason: Optional[str] = None
    dates: Optional[List] = None

    def info(self) -> dict:
        out = {"mode": self.mode, "events_version": self.events_version}
        if self.reason:
            out["mode_reason"] = self.reason
        if self.dates is not None:
            out["dates_rebuilt"] = len(self.dates)
        return out

    def describe(self) -> str:
        if self.mode == "full":
            return f"mode=full ({self.reason or 'asked for'})"
        return f"mode=incremental ({len(self.dates or [])} date(s) of events changed)"


def plan(spark: SparkSession, cfg: Config) -> Plan:
    """The night's plan under ``state.mode``; raises :class:`IncrementalUnavailable` when
    the mode is ``incremental`` and the state cannot be used."""
    version = versions.current_version(spark, cfg, "events")
    mode = cfg.state.mode
    if mode == "full":
        return Plan("full", version)
    reason, dates = _unusable(spark, cfg, version)
    if reason is None:
        return Plan("incremental", version, dates=dates)
    if mode == "incremental":
        raise IncrementalUnavailable(
            f"state.mode is incremental but the state ({STATE_TABLE}) cannot be used: {reason}. "
            "Run once with --mode full (or auto) to rebuild it"
        )
    return Plan("full", version, reason=reason)


def _unusable(spark: SparkSession, cfg: Config, version: int):
    """(reason, None) when the state cannot be used, else (None, the dates to rebuild)."""
    rec = versions.recorded(spark, cfg, STATE_TABLE)
    if rec is None:
        return f"no {STATE_TABLE} state yet", None
    if rec.get("fingerprint") != fingerprint(cfg):
        return (
            f"the settings that shape {STATE_TABLE} (sequences.max_length, "
            "sequences.value_event_types) changed since it was built",
            None,
        )
    since = int(rec["events_version"])
    if rec.get("events_table_id") != versions.table_id(spark, cfg, "events") or since > version:
        return (
            f"{STATE_TABLE} was built from another events table (the events table was replaced "
            "since: its Delta table id differs)",
            None,
        )
    if since == version:
        return None, []
    try:
        return None, tables.changed_dates(spark, cfg, "events", since + 1, version)
    except Exception as e:  # the feed does not cover the versions: say so, rebuild
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        return (
            f"the change data feed of events does not cover versions {since + 1}..{version} "
            f"({first})",
            None,
        )


def recorded_version(spark: SparkSession, cfg: Config) -> Optional[int]:
    """The events version the state reflects, when it is the current settings' state of the
    current events table."""
    rec = versions.recorded(spark, cfg, STATE_TABLE)
    if rec is None or rec.get("fingerprint") != fingerprint(cfg):
        return None
    if rec.get("events_table_id") != versions.table_id(spark, cfg, "events"):
        return None
    return int(rec["events_version"])


def metadata(spark: SparkSession, cfg: Config, events_version: int, mode: str) -> dict:
    """What a ``user_days`` commit records: the events table (its Delta id) and version it
    reflects, the settings fingerprint, the mode that wrote it."""
    return {
        "events_table_id": versions.table_id(spark, cfg, "events"),
        "events_version": int(events_version),
        "fingerprint": fingerprint(cfg),
        "mode": mode,
    }
