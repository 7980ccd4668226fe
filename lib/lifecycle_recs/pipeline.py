"""The nightly pipeline for one snapshot date D: stages in order, each an
atomic, idempotent write, with per-stage counts and timings."""
from __future__ import annotations

import datetime as dt
import importlib
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

from pyspark.sql import SparkSession

from . import tables
from .config import Config

log = logging.getLogger(__name__)


@dataclass
class StageResult:
    stage: str
    seconds: float
    info: Dict[str, object] = field(default_factory=dict)


@dataclass
class RunContext:
    spark: SparkSession
    cfg: Config
    snapshot_date: Optional[str]
    results: List[StageResult] = field(default_factory=list)

    @property
    def training_date(self) -> Optional[str]:
        """Training snapshot T = D - H: its labels (T, D] are known on the night of D."""
        if self.snapshot_date is None:
            return None
        d = dt.date.fromisoformat(self.snapshot_date)
        return (d - dt.timedelta(days=self.cfg.lifecycle.horizon_days)).isoformat()

    def snapshot_dates(self) -> List[str]:
        out = [self.snapshot_date]
        if "train" in self.cfg.stages or "evaluate" in self.cfg.stages:
            out.append(self.training_date)
        return out


def stage_ingest(ctx: RunContext) -> Dict[str, object]:
    from .ingest import ingest

    counts = ingest(ctx.spark, ctx.cfg)
    if ctx.snapshot_date is None:
        last = tables.last_partition_date(ctx.spark, ctx.cfg, "events")
        if last is None:
            raise RuntimeError("events table is empty after ingest; nothing to build")
        ctx.snapshot_date = last.isoformat()
        log.info("no --date given: using the last event date %s", ctx.snapshot_date)
    return asdict(counts)


def _ensure_date(ctx: RunContext) -> None:
    if ctx.snapshot_date is None:
        last = tables.last_partition_date(ctx.spark, ctx.cfg, "events")
        if last is None:
            raise RuntimeError("events table is empty: ingest first")
        ctx.snapshot_date = last.isoformat()


def stage_sequences(ctx: RunContext) -> Dict[str, object]:
    from .sequences import SORT_AGGREGATE, build_sequences
    from .spark import sql_conf

    _ensure_date(ctx)
    events = tables.read(ctx.spark, ctx.cfg, "events")
    info = {}
    for d in ctx.snapshot_dates():
        with sql_conf(ctx.spark, SORT_AGGREGATE):
            m = tables.write_snapshot(ctx.spark, ctx.cfg, "user_sequences",
                                      build_sequences(events, d, ctx.cfg.sequences), d)
        info[d] = {"rows": m.get("numOutputRows", 0)}
    return info


def stage_lifecycle(ctx: RunContext) -> Dict[str, object]:
    from .lifecycle import build_lifecycle, labels_known

    _ensure_date(ctx)
    events = tables.read(ctx.spark, ctx.cfg, "events")
    last = tables.last_partition_date(ctx.spark, ctx.cfg, "events")
    info = {}
    for d in ctx.snapshot_dates():
        seqs = tables.read(ctx.spark, ctx.cfg, "user_sequences", d)
        known = labels_known(events, d, ctx.cfg.lifecycle, last_date=last)
        df = build_lifecycle(events, seqs, d, ctx.cfg.lifecycle, ctx.cfg.sequences, known)
        m = tables.write_snapshot(ctx.spark, ctx.cfg, "user_lifecycle", df, d)
        info[d] = {"rows": m.get("numOutputRows", 0), "labels": known}
    return info


# Stage name -> function, or "module:function" imported when the stage runs
# (the model modules must stay importable where Spark is absent, e.g. a GPU box).
STAGES: Dict[str, object] = {
    "ingest": stage_ingest,
    "sequences": stage_sequences,
    "lifecycle": stage_lifecycle,
    "embeddings": "embeddings:run_stage",
    "train": "training:run_stage",
    "score": "scoring:run_stage",
    "evaluate": "evaluation:run_stage",
}


def _stage_fn(name: str) -> Callable[[RunContext], Dict[str, object]]:
    fn = STAGES[name]
    if isinstance(fn, str):
        mod, attr = fn.split(":")
        fn = getattr(importlib.import_module(f"{__package__}.{mod}"), attr)
    return fn


def run_nightly(spark: SparkSession, cfg: Config, snapshot_date: Optional[str] = None,
                stages: Optional[List[str]] = None) -> RunContext:
    """Run the configured stages for D (default: the last event date after ingest)."""
    stages = stages or cfg.stages
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown} in config 'stages'; known: {list(STAGES)}")
    if snapshot_date is not None:
        snapshot_date = dt.date.fromisoformat(str(snapshot_date)).isoformat()
    ctx = RunContext(spark, cfg, snapshot_date)
    for name in stages:
        t0 = time.perf_counter()
        log.info("stage %s: start (D=%s)", name, ctx.snapshot_date)
        info = _stage_fn(name)(ctx) or {}
        res = StageResult(name, time.perf_counter() - t0, info)
        ctx.results.append(res)
        log.info("stage %s: done in %.1fs %s", name, res.seconds, info)
    return ctx
