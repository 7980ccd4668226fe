"""Stage ``score``: score every user of D with the latest artifact and write
``user_interests``, ``retention_scores`` and ``recommendations`` for D."""

from __future__ import annotations

import dataclasses
import logging
from typing import Dict

from pyspark import StorageLevel

from lifecycle_recs.adapters import btyd
from lifecycle_recs.adapters.scoring_input import seen_items_policy, users_to_score
from lifecycle_recs.adapters.udfs import score_users, scored_outputs
from lifecycle_recs.context import RunContext
from lifecycle_recs.dates import utc_now
from lifecycle_recs.evaluation.gate import losing_strategies
from lifecycle_recs.io import tables
from lifecycle_recs.ml import artifacts, registry

log = logging.getLogger(__name__)
OUTPUTS = ("user_interests", "retention_scores", "recommendations")


def run(ctx: RunContext) -> Dict[str, object]:
    spark, cfg, d = ctx.spark, ctx.cfg, ctx.require_date()
    art_dir = registry.artifact_for(cfg, d)
    art = artifacts.load(art_dir)
    users = users_to_score(
        tables.read(spark, cfg, "user_sequences", d),
        tables.read(spark, cfg, "user_lifecycle", d),
        art,
        lambda: btyd.summaries(
            tables.read(spark, cfg, "events"), d, cfg.sequences.value_event_types
        ),
    )
    policy, share = seen_items_policy(spark, cfg, art)
    if policy.filter_seen != cfg.recommend.filter_seen:
        log.info(
            "seen items are kept: %.1f%% of the items the training users of %s touched next were "
            "already in their sequences (recommend.keep_seen_repeat_share %s)",
            100 * share,
            art.version,
            cfg.recommend.keep_seen_repeat_share,
        )
    gated = losing_strategies(spark, cfg, d)
    off = {s: "recommend.strategies_off" for s in cfg.recommend.strategies_off}
    off.update(gated)
    policy = dataclasses.replace(policy, strategies_off=tuple(sorted(off)))
    scored = score_users(users, art_dir, policy, cfg.train.device).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    try:
        n = scored.count()
        outs = scored_outputs(scored, d, art.version, utc_now(), cfg.lifecycle.horizon_days)
        metrics = {t: tables.write_snapshot(spark, cfg, t, outs[t], d) for t in OUTPUTS}
        strategies = {
            r["strategy"]: r["count"] for r in scored.groupBy("strategy").count().collect()
        }
    finally:
        scored.unpersist()
    return {
        "users": n,
        "recommendation_rows": metrics["recommendations"].get("numOutputRows", 0),
        "model_version": art.version,
        "strategies": strategies,
        "seen_items_filtered": policy.filter_seen,
        "strategies_off": off,
    }
