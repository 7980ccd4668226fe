"""Shared vocabularies, with no dependency at all (importable by ``ml/`` and by
the Spark side alike): pipeline stages, lifecycle stages, recommendation
strategies and the funnel order of event types."""

from __future__ import annotations

# The nightly pipeline's stages, in the order they run. ``pipeline.py`` maps each
# to its module under ``stages/``; ``config.py`` checks ``stages:`` against it.
PIPELINE_STAGES = ("ingest", "sequences", "lifecycle", "embeddings", "train", "score", "evaluate")

# The event fields a source maps its columns to (``source.columns`` keys), and the catalog's
# (``source.items_columns`` keys).
EVENT_FIELDS = ("user_id", "item_id", "event_type", "event_ts", "value", "quantity", "event_id")
ITEM_FIELDS = ("item_id", "title", "category", "description", "price", "year")

# The tables the pipeline writes (``schemas.TABLES`` defines them; a test keeps the two equal):
# the keys ``tables:`` in a conf may name.
TABLE_NAMES = (
    "events",
    "events_quarantine",
    "items",
    "user_days",
    "user_base",
    "user_sequences",
    "user_lifecycle",
    "item_embeddings",
    "evaluation_metrics",
    "user_interests",
    "retention_scores",
    "recommendations",
    "pipeline_runs",
)

# A user's lifecycle stage as of a snapshot date (``user_lifecycle.stage``).
LIFECYCLE_STAGES = ("new", "active", "at_risk", "churned", "reactivated")
NEW_STAGE = "new"
AT_RISK_STAGES = ("at_risk", "churned")

# Recommendation strategies (``recommendations.strategy``).
STRATEGY_PERSONALIZED = "personalized"
STRATEGY_NEW_USER = "new_user_content_popularity"
STRATEGY_AT_RISK = "at_risk_long_term_value"
STRATEGIES = (STRATEGY_PERSONALIZED, STRATEGY_NEW_USER, STRATEGY_AT_RISK)

# Tie-break for events with the same timestamp: the funnel order (unknown types last).
EVENT_FUNNEL_ORDER = {"view": 0, "click": 1, "add_to_cart": 2, "purchase": 3, "rating": 4}
