"""Stage ``lifecycle``: ``user_base`` + the ``user_days`` after it (or, in a full night,
``events``) + ``user_sequences`` -> ``user_lifecycle`` for each snapshot of the run.

Incremental when the state reflects the current events and ``user_base`` folds no day a
window of the night's snapshots reads (the ``sequences`` stage of the same dates brought
them there); full otherwise (``state.mode: auto`` says why, ``incremental`` refuses). Both
give the same rows.
"""

from __future__ import annotations

import logging
from typing import Dict

from lifecycle_recs.context import RunContext
from lifecycle_recs.data.lifecycle import build_lifecycle
from lifecycle_recs.data.splits import labels_known
from lifecycle_recs.data.user_days import base_date, history, lifecycle_from_days
from lifecycle_recs.dates import add_days
from lifecycle_recs.io import state, tables, versions

log = logging.getLogger(__name__)


def _mode(ctx: RunContext) -> Dict[str, object]:
    spark, cfg = ctx.spark, ctx.cfg
    if cfg.state.mode == "full":
        return {"mode": "full"}
    have = state.recorded_version(spark, cfg)
    now = versions.current_version(spark, cfg, "events")
    if have == now:
        reason = state.base_usable(spark, cfg, base_date(ctx.snapshot_dates, cfg.lifecycle))
        if reason is None:
            return {"mode": "incremental", "events_version": now}
    elif have is not None:
        reason = (
            f"{state.STATE_TABLE} reflects events version {have}, not the current {now} "
            "(the sequences stage brings it up to date)"
        )
    else:
        reason = f"no {state.STATE_TABLE} state of the current settings"
    if cfg.state.mode == "incremental":
        raise state.IncrementalUnavailable(f"state.mode is incremental but {reason}")
    return {"mode": "full", "mode_reason": reason}


def run(ctx: RunContext) -> Dict[str, object]:
    spark, cfg = ctx.spark, ctx.cfg
    info = _mode(ctx)
    log.info(
        "lifecycle: mode=%s%s",
        info["mode"],
        f" ({info['mode_reason']})" if "mode_reason" in info else "",
    )
    events = tables.read(spark, cfg, "events")
    last = tables.last_partition_date(spark, cfg, "events")
    incremental = info["mode"] == "incremental"
    for d in ctx.snapshot_dates:
        seqs = tables.read(spark, cfg, "user_sequences", d)
        known = labels_known(events, d, cfg.lifecycle, last_date=last)
        if incremental:
            upper = add_days(d, cfg.lifecycle.horizon_days) if known else d
            rows = history(
                tables.read(spark, cfg, state.STATE_TABLE),
                upper,
                tables.read(spark, cfg, state.BASE_TABLE),
                state.base_as_of(spark, cfg),
            )
            df = lifecycle_from_days(rows, seqs, d, cfg.lifecycle, known)
        else:
            df = build_lifecycle(events, seqs, d, cfg.lifecycle, cfg.sequences, known)
        m = tables.write_snapshot(spark, cfg, "user_lifecycle", df, d)
        info[d] = {"rows": m.get("numOutputRows", 0), "labels": known}
    return info
