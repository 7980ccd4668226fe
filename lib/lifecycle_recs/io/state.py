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

import datetime as dt
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
    since: Optional[int] = None  # the events version the state reflected before the night

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
        return Plan("incremental", version, dates=dates, since=recorded_version(spark, cfg))
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
    return _changed_since(spark, cfg, since, version)


def _changed_since(spark: SparkSession, cfg: Config, since: int, version: int):
    """(None, the dates of events changed in versions since+1..version), or (the reason,
    None) when the change data feed does not cover them."""
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


BASE_TABLE = "user_base"


@dataclass(frozen=True)
class BasePlan:
    """What a night does with ``user_base``: ``keep`` it (only the events version it
    reflects moves), ``advance`` it from ``since`` to ``as_of`` by folding in the days
    between, or ``rebuild`` it from ``user_days`` (``reason`` says why)."""

    action: str
    as_of: dt.date
    since: Optional[dt.date] = None
    reason: Optional[str] = None

    def info(self) -> dict:
        out = {"base": self.action, "base_as_of": self.as_of.isoformat()}
        if self.reason:
            out["base_reason"] = self.reason
        return out


def plan_base(spark: SparkSession, cfg: Config, night: Plan, as_of: dt.date) -> BasePlan:
    """How ``user_base`` reaches ``as_of`` after the night's ``user_days`` update: it can
    move forward while no events dated on or before its own date changed since the events
    version it reflects (the change data feed says; a crash between the two commits only
    widens the versions read)."""
    if night.mode == "full":
        return BasePlan("rebuild", as_of, reason=f"{STATE_TABLE} was rebuilt in full")
    rec = versions.recorded(spark, cfg, BASE_TABLE)
    if rec is None:
        return BasePlan("rebuild", as_of, reason=f"no {BASE_TABLE} yet")
    if rec.get("fingerprint") != fingerprint(cfg) or rec.get("events_table_id") != (
        versions.table_id(spark, cfg, "events")
    ):
        return BasePlan("rebuild", as_of, reason=f"{BASE_TABLE} has other settings or events")
    since = dt.date.fromisoformat(str(rec["as_of"]))
    if since > as_of:
        return BasePlan(
            "rebuild", as_of, reason=f"the night's snapshots read days after {as_of} < {since}"
        )
    v = int(rec["events_version"])
    if v == night.since:
        reason, changed = None, night.dates or []
    else:
        reason, changed = _changed_since(spark, cfg, v, night.events_version)
    if reason is not None:
        return BasePlan("rebuild", as_of, reason=reason)
    old = [x for x in changed if x <= since]
    if old:
        return BasePlan(
            "rebuild",
            as_of,
            reason=f"events of {len(old)} date(s) on or before {since} changed (from {old[0]})",
        )
    return BasePlan("advance" if since < as_of else "keep", as_of, since=since)


def base_metadata(spark: SparkSession, cfg: Config, events_version: int, as_of: dt.date) -> dict:
    """What a ``user_base`` commit records: as ``user_days`` (:func:`metadata`), and its
    date."""
    return {**metadata(spark, cfg, events_version, "base"), "as_of": as_of.isoformat()}


def base_usable(spark: SparkSession, cfg: Config, as_of: dt.date) -> Optional[str]:
    """None when ``user_base`` reflects the current events, settings and a date on or
    before ``as_of``; else why not."""
    rec = versions.recorded(spark, cfg, BASE_TABLE)
    now = versions.current_version(spark, cfg, "events")
    if rec is None or rec.get("fingerprint") != fingerprint(cfg):
        return f"no {BASE_TABLE} of the current settings"
    if rec.get("events_table_id") != versions.table_id(spark, cfg, "events"):
        return f"{BASE_TABLE} was built from another events table"
    if int(rec["events_version"]) != now:
        return f"{BASE_TABLE} reflects events version {rec['events_version']}, not {now}"
    if dt.date.fromisoformat(str(rec["as_of"])) > as_of:
        return f"{BASE_TABLE} folds days up to {rec['as_of']}, after {as_of}"
    return None


def base_as_of(spark: SparkSession, cfg: Config) -> dt.date:
    rec = versions.recorded(spark, cfg, BASE_TABLE)
    return dt.date.fromisoformat(str(rec["as_of"]))
