"""What a night scores, built once for the score stage and the evaluation alike: the
user rows of a snapshot (sequence + lifecycle stage, with BG/NBD x Gamma-Gamma's
purchase summary where the artifact's value blend needs it) and the seen-items policy
the artifact's measured repeat share decides."""

from __future__ import annotations

from typing import Callable, Optional, Tuple

from pyspark.sql import DataFrame, SparkSession

from lifecycle_recs.adapters.btyd import scoring_rows
from lifecycle_recs.adapters.feeding import artifact_repeat_share
from lifecycle_recs.config import Config, RecommendConf
from lifecycle_recs.data.lifecycle import users_with_stage
from lifecycle_recs.ml.artifacts import Artifact
from lifecycle_recs.ml.recommend import seen_policy


def users_to_score(
    sequences: DataFrame, lifecycle: DataFrame, art: Artifact, summaries: Callable[[], DataFrame]
) -> DataFrame:
    """One row per user of the snapshot of ``sequences``/``lifecycle`` (same date), with
    the purchase-days summary (``summaries()``, read only when the artifact's stack
    blends BG/NBD x Gamma-Gamma's value in)."""
    return scoring_rows(users_with_stage(sequences, lifecycle), art.config.get("stack"), summaries)


def seen_items_policy(
    spark: SparkSession, cfg: Config, art: Artifact
) -> Tuple[RecommendConf, Optional[float]]:
    """``cfg.recommend`` with seen items filtered or kept as ``art``'s repeat share decides
    (``ml.recommend.seen_policy``), and that share (None when filtering is off or unknown)."""
    share = artifact_repeat_share(spark, cfg, art) if cfg.recommend.filter_seen else None
    return seen_policy(cfg.recommend, share), share
