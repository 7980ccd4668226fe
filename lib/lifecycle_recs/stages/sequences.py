"""Stage ``sequences``: ``events`` -> ``user_sequences`` for each snapshot of the run."""

from __future__ import annotations

from typing import Dict

from lifecycle_recs.context import RunContext
from lifecycle_recs.data.sequences import SORT_AGGREGATE, build_sequences
from lifecycle_recs.io import tables
from lifecycle_recs.spark import sql_conf


def run(ctx: RunContext) -> Dict[str, object]:
    events = tables.read(ctx.spark, ctx.cfg, "events")
    info = {}
    for d in ctx.snapshot_dates:
        with sql_conf(ctx.spark, SORT_AGGREGATE):
            m = tables.write_snapshot(
                ctx.spark,
                ctx.cfg,
                "user_sequences",
                build_sequences(events, d, ctx.cfg.sequences),
                d,
            )
        info[d] = {"rows": m.get("numOutputRows", 0)}
    return info
