"""The Spark side of the Spark-free core: ``mapInPandas`` wrappers that run the
``ml`` functions over Arrow batches, with one per-worker cache of loaded models
(a Python worker is reused across tasks, so a model loads once per worker and
key: artifact path *and* device, or encoder configuration)."""

from __future__ import annotations

import datetime as dt
from typing import Callable, Dict, Iterator, Sequence, TypeVar

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lifecycle_recs import schemas
from lifecycle_recs.config import EmbeddingConf, RecommendConf
from lifecycle_recs.ml.scorer import load_scorer, score_stream
from lifecycle_recs.ml.text_encoder import embed_pandas, encoder_for

V = TypeVar("V")
_WORKER_CACHE: Dict[tuple, object] = {}


def worker_cached(key: tuple, load: Callable[[], V]) -> V:
    """The object for ``key`` in this Python process, loaded on first use."""
    if key not in _WORKER_CACHE:
        _WORKER_CACHE[key] = load()
    return _WORKER_CACHE[key]  # type: ignore[return-value]


# -- scoring ---------------------------------------------------------------------------
def score_users(
    users: DataFrame, artifact_path: str, conf: RecommendConf, device: str = "auto"
) -> DataFrame:
    """(user_sequences ⋈ user_lifecycle.stage) -> ``schemas.SCORED_SCHEMA`` rows.
    ``mapInArrow``: the record batches go to the scorer as Arrow, without pandas."""

    def run(batches):
        sc = worker_cached(
            ("scorer", artifact_path, device), lambda: load_scorer(artifact_path, device)
        )
        yield from score_stream(batches, sc, conf)

    return users.mapInArrow(run, schemas.SCORED_SCHEMA)


def _pairs(a: str, b: str, name_a: str, name_b: str) -> Column:
    return F.transform(
        F.arrays_zip(a, b), lambda x: F.struct(x[a].alias(name_a), x[b].alias(name_b))
    )


def scored_outputs(
    scored: DataFrame,
    snapshot_date: str,
    model_version: str,
    scored_at: dt.datetime,
    horizon_days: int,
) -> Dict[str, DataFrame]:
    """Scored rows -> the rows of ``user_interests``, ``retention_scores`` and
    ``recommendations`` for one snapshot (one row per user; one per user and rank)."""
    base = [F.lit(snapshot_date).cast("date").alias("snapshot_date"), "user_id"]
    meta = [
        F.lit(model_version).alias("model_version"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"),
    ]
    because = _pairs("because_item_ids", "because_weights", "item_id", "weight")
    interests = scored.select(
        *base,
        "interest_vector",
        _pairs("top_category_names", "top_category_weights", "category", "weight").alias(
            "top_categories"
        ),
        *meta,
    )
    retention = scored.select(
        *base,
        "stage",
        "churn_probability",
        (1 - F.col("churn_probability")).alias("retention_score"),
        "predicted_value",
        F.lit(horizon_days).alias("horizon_days"),
        because.alias("because_items"),
        _pairs("feature_names", "feature_effects", "feature", "effect").alias("top_features"),
        *meta,
    )
    recs = scored.select(
        *base,
        "strategy",
        because.alias("because_items"),
        F.posexplode(F.arrays_zip("rec_items", "rec_scores")).alias("pos", "r"),
        *meta,
    ).select(
        "snapshot_date",
        "user_id",
        (F.col("pos") + 1).alias("rank"),
        F.col("r.rec_items").alias("item_id"),
        F.col("r.rec_scores").alias("score"),
        "strategy",
        "because_items",
        "model_version",
        "scored_at",
    )
    return {"user_interests": interests, "retention_scores": retention, "recommendations": recs}


# -- item texts and embeddings --------------------------------------------------------
def item_text(items: DataFrame, columns: Sequence[str]) -> DataFrame:
    """items -> (item_id, text, text_hash): the conf-chosen columns joined as
    'value. value. ...' (nulls and blanks skipped, so a missing field changes
    nothing), and sha2-256 of that text."""
    missing = [c for c in columns if c not in items.columns]
    if missing:
        raise ValueError(
            f"embedding.text_columns {missing} are not columns of items; it has {items.columns}"
        )
    parts = [
        F.when(F.trim(F.col(c).cast("string")) != "", F.trim(F.col(c).cast("string")))
        for c in columns
    ]
    text = F.concat_ws(". ", *parts)
    return items.select("item_id", text.alias("text")).withColumn(
        "text_hash", F.sha2(F.col("text"), 256)
    )


def embed_items(texts: DataFrame, conf: EmbeddingConf) -> DataFrame:
    """(item_id, text, text_hash) -> item_embeddings rows (without updated_at)."""
    schema = T.StructType(
        [f for f in schemas.spec("item_embeddings").schema if f.name != "updated_at"]
    )
    key = (
        "encoder",
        conf.model,
        conf.device,
        conf.batch_size,
        conf.max_length,
        conf.tokenizer_threads,
    )

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        enc = worker_cached(key, lambda: encoder_for(conf))
        for b in batches:
            if len(b):
                yield embed_pandas(b, conf, enc)

    return texts.mapInPandas(run, schema)
