"""Stage ``score``: score every user of D with the latest artifact and write
``user_interests``, ``retention_scores`` and ``recommendations`` for D."""
from __future__ import annotations

import dataclasses
import logging
from typing import Dict

from pyspark import StorageLevel

from .. import btyd, tables, tracking
from ..context import RunContext
from ..dates import utc_now
from ..feeding import artifact_repeat_share
from ..lifecycle import users_with_stage
from ..ml import artifacts
from ..ml.recommend import seen_policy
from ..strategy_gate import losing_strategies
from ..udfs import score_users, scored_outputs

log = logging.getLogger(__name__)
OUTPUTS = ("user_interests", "retention_scores", "recommendations")


def run(ctx: RunContext) -> Dict[str, object]:
    spark, cfg, d = ctx.spark, ctx.cfg, ctx.require_date()
    art_dir = tracking.artifact_for(cfg, d)
    art = artifacts.load(art_dir)
    users = btyd.scoring_rows(
        users_with_stage(tables.read(spark, cfg, "user_sequences", d), tables.read(spark, cfg, "user_lifecycle", d)),
        art.config.get("stack"),
        lambda: btyd.summaries(tables.read(spark, cfg, "events"), d, cfg.sequences.value_event_types))
    share = artifact_repeat_share(spark, cfg, art) if cfg.recommend.filter_seen else None
    policy = seen_policy(cfg.recommend, share)
    if policy.filter_seen != cfg.recommend.filter_seen:
        log.info("seen items are kept: %.1f%% of the items the training users of %s touched next were "
                 "already in their sequences (recommend.keep_seen_repeat_share %s)",
                 100 * share, art.version, cfg.recommend.keep_seen_repeat_share)
    gated = losing_strategies(spark, cfg, d)
    off = {s: "recommend.strategies_off" for s in cfg.recommend.strategies_off}
    off.update(gated)
    policy = dataclasses.replace(policy, strategies_off=tuple(sorted(off)))
    scored = score_users(users, art_dir, policy, cfg.train.device).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n = scored.count()
        outs = scored_outputs(scored, d, art.version, utc_now(), cfg.lifecycle.horizon_days)
        metrics = {t: tables.write_snapshot(spark, cfg, t, outs[t], d) for t in OUTPUTS}
        strategies = {r["strategy"]: r["count"] for r in scored.groupBy("strategy").count().collect()}
    finally:
        scored.unpersist()
    return {"users": n, "recommendation_rows": metrics["recommendations"].get("numOutputRows", 0),
            "model_version": art.version, "strategies": strategies, "seen_items_filtered": policy.filter_seen,
            "strategies_off": off}
