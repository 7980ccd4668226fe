"""Stage ``sequences``: ``events`` -> the state ``user_days`` -> ``user_sequences`` for each
snapshot of the run.

The night's plan (:mod:`io.state`) says how: incremental rebuilds the ``user_days`` rows of
only the dates whose events changed since the state's events version and aggregates the
snapshots from ``user_days``; full rebuilds ``user_days`` from all events and the snapshots
from the events themselves. Both give the same rows. The mode, and why a night is full,
go to the log and to this stage's ``pipeline_runs`` row.
"""

from __future__ import annotations

import logging
from typing import Dict

from pyspark.sql import functions as F

from lifecycle_recs.context import RunContext
from lifecycle_recs.data.sequences import SORT_AGGREGATE, build_sequences
from lifecycle_recs.data.user_days import build_user_days, sequences_from_days
from lifecycle_recs.io import state, tables
from lifecycle_recs.spark import sql_conf

log = logging.getLogger(__name__)


def run(ctx: RunContext) -> Dict[str, object]:
    spark, cfg = ctx.spark, ctx.cfg
    plan = state.plan(spark, cfg)
    log.info("sequences: %s", plan.describe())
    events = tables.read_version(spark, cfg, "events", plan.events_version)
    meta = state.metadata(spark, cfg, plan.events_version, plan.mode)
    if plan.mode == "full":
        with sql_conf(spark, SORT_AGGREGATE):
            days = build_user_days(events, cfg.sequences)
            tables.replace_dates(spark, cfg, state.STATE_TABLE, days, None, meta)
    elif plan.dates or state.recorded_version(spark, cfg) != plan.events_version:
        changed = events.where(F.col("event_date").isin(list(plan.dates)))  # those partitions
        with sql_conf(spark, SORT_AGGREGATE):
            days = build_user_days(changed, cfg.sequences)
            tables.replace_dates(spark, cfg, state.STATE_TABLE, days, plan.dates, meta)
    info: Dict[str, object] = plan.info()
    all_days = tables.read(spark, cfg, state.STATE_TABLE)
    for d in ctx.snapshot_dates:
        with sql_conf(spark, SORT_AGGREGATE):
            df = (
                build_sequences(events, d, cfg.sequences)
                if plan.mode == "full"
                else sequences_from_days(all_days, d, cfg.sequences)
            )
            m = tables.write_snapshot(spark, cfg, "user_sequences", df, d)
        info[d] = {"rows": m.get("numOutputRows", 0)}
    return info
