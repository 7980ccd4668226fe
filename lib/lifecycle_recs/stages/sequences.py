"""Stage ``sequences``: ``events`` -> the state (``user_days``, folded into ``user_base``)
-> ``user_sequences`` for each snapshot of the run.

The night's plan (:mod:`io.state`) says how: incremental rebuilds the ``user_days`` rows of
only the dates whose events changed since the state's events version, moves ``user_base``
forward to the day before the night's windows (or rebuilds it when events on or before its
date changed), and aggregates the snapshots from ``user_base`` + the ``user_days`` after it;
full rebuilds ``user_days`` and ``user_base`` from all events and the snapshots from the
events themselves. Both give the same rows. The mode, and why a night is full, go to the log
and to this stage's ``pipeline_runs`` row.
"""

from __future__ import annotations

import logging
from typing import Dict

from pyspark.sql import functions as F

from lifecycle_recs.context import RunContext
from lifecycle_recs.data.sequences import SORT_AGGREGATE, build_sequences
from lifecycle_recs.data.user_days import (
    base_date,
    build_user_days,
    fold,
    history,
    sequences_from_days,
)
from lifecycle_recs.io import state, tables
from lifecycle_recs.spark import sql_conf

log = logging.getLogger(__name__)


def _update_base(ctx: RunContext, plan: state.Plan) -> state.BasePlan:
    """``user_base`` brought to the night's date (after ``user_days`` is)."""
    spark, cfg = ctx.spark, ctx.cfg
    as_of = base_date(ctx.snapshot_dates, cfg.lifecycle)
    bp = state.plan_base(spark, cfg, plan, as_of)
    if bp.reason:
        log.info("sequences: %s rebuilt (%s)", state.BASE_TABLE, bp.reason)
    meta = state.base_metadata(spark, cfg, plan.events_version, as_of)
    days = tables.read(spark, cfg, state.STATE_TABLE)
    if bp.action == "keep":  # an empty commit records the events version
        empty = tables.read(spark, cfg, state.BASE_TABLE).limit(0)
        tables.replace_dates(spark, cfg, state.BASE_TABLE, empty, [], meta)
        return bp
    if bp.action == "advance":
        rows = history(days, as_of, tables.read(spark, cfg, state.BASE_TABLE), bp.since)
    else:
        rows = history(days, as_of)
    with sql_conf(spark, SORT_AGGREGATE):
        tables.replace_dates(
            spark, cfg, state.BASE_TABLE, fold(rows, as_of, cfg.sequences), None, meta
        )
    return bp


def run(ctx: RunContext) -> Dict[str, object]:
    spark, cfg = ctx.spark, ctx.cfg
    plan = state.plan(spark, cfg)
    log.info("sequences: %s", plan.describe())
    events = tables.read_version(spark, cfg, "events", plan.events_version)
    meta = state.metadata(spark, cfg, plan.events_version, plan.mode)
    if (
        plan.mode == "full"
        or plan.dates
        or state.recorded_version(spark, cfg) != plan.events_version
    ):
        dates = None if plan.mode == "full" else plan.dates
        changed = events if dates is None else events.where(F.col("event_date").isin(list(dates)))
        with sql_conf(spark, SORT_AGGREGATE):
            # one file per date: a night reads a window of dates, each once
            days = build_user_days(changed, cfg.sequences).repartition("event_date")
            tables.replace_dates(spark, cfg, state.STATE_TABLE, days, dates, meta)
    bp = _update_base(ctx, plan)
    info: Dict[str, object] = {**plan.info(), **bp.info()}
    all_days = tables.read(spark, cfg, state.STATE_TABLE)
    base = tables.read(spark, cfg, state.BASE_TABLE)
    for d in ctx.snapshot_dates:
        with sql_conf(spark, SORT_AGGREGATE):
            df = (
                build_sequences(events, d, cfg.sequences)
                if plan.mode == "full"
                else sequences_from_days(history(all_days, d, base, bp.as_of), d, cfg.sequences)
            )
            m = tables.write_snapshot(spark, cfg, "user_sequences", df, d)
        info[d] = {"rows": m.get("numOutputRows", 0)}
    return info
