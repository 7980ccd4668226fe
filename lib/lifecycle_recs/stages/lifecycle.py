"""Stage ``lifecycle``: ``events`` + ``user_sequences`` -> ``user_lifecycle`` for each snapshot of
the run."""

from __future__ import annotations

from typing import Dict

from lifecycle_recs.context import RunContext
from lifecycle_recs.data.lifecycle import build_lifecycle
from lifecycle_recs.data.splits import labels_known
from lifecycle_recs.io import tables


def run(ctx: RunContext) -> Dict[str, object]:
    spark, cfg = ctx.spark, ctx.cfg
    events = tables.read(spark, cfg, "events")
    last = tables.last_partition_date(spark, cfg, "events")
    info = {}
    for d in ctx.snapshot_dates:
        seqs = tables.read(spark, cfg, "user_sequences", d)
        known = labels_known(events, d, cfg.lifecycle, last_date=last)
        df = build_lifecycle(events, seqs, d, cfg.lifecycle, cfg.sequences, known)
        m = tables.write_snapshot(spark, cfg, "user_lifecycle", df, d)
        info[d] = {"rows": m.get("numOutputRows", 0), "labels": known}
    return info
