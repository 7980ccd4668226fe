"""Spark -> the Spark-free trainer: the vocabulary and text vectors, the example
rows (built on the workers by ``ml.features.encode_users``), per-item statistics
for the artifact, and the petastorm feed that turns example rows into a
:class:`~lifecycle_recs.ml.features.Batch`."""
from __future__ import annotations

import logging
import os
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from . import schemas, tables
from .config import Config
from .ml.artifacts import ItemStats
from .ml.features import STEP_ARRAYS, Batch, encode_users
from .ml.recommend import ltv_association
from .ml.vocab import Vocab
from .spark import sql_conf

log = logging.getLogger(__name__)


def build_vocab(spark: SparkSession, cfg: Config) -> Tuple[Vocab, Optional[np.ndarray]]:
    """Vocabulary from the items table (small: one row per item) and the text
    vectors of the configured model aligned to it (zeros where missing)."""
    items = tables.read(spark, cfg, "items").select("item_id", "category").orderBy("item_id").collect()
    vocab = Vocab([r["item_id"] for r in items], list(cfg.validation.event_types), [r["category"] for r in items])
    text = None
    if cfg.model.use_text and tables.exists(spark, cfg, "item_embeddings"):
        emb = (tables.read(spark, cfg, "item_embeddings")
               .where(F.col("model_name") == cfg.embedding.model_name).select("item_id", "embedding").collect())
        if emb:
            dim = len(emb[0]["embedding"])
            text = np.zeros((vocab.n_items, dim), np.float32)
            idx = vocab.item_index([r["item_id"] for r in emb])
            text[idx] = np.asarray([r["embedding"] for r in emb], np.float32)
            text[:2] = 0
    return vocab, text


def training_frame(spark: SparkSession, cfg: Config, snapshot_date: str) -> DataFrame:
    """user_sequences ⋈ user_lifecycle labels for one snapshot."""
    seq = tables.read(spark, cfg, "user_sequences", snapshot_date)
    lab = tables.read(spark, cfg, "user_lifecycle", snapshot_date).select(
        "user_id", "stage", "has_labels", "churned_within_horizon", "value_next_horizon", "items_next_horizon",
        "value_last_horizon")
    return seq.join(lab, on="user_id", how="inner")


def examples(df: DataFrame, vocab: Vocab, max_len: int, mode: str = "last", holdout: int = 0,
             stride: Optional[int] = None) -> DataFrame:
    """user rows -> example rows (``schemas.EXAMPLE_SCHEMA``), built on the workers."""
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for b in batches:
            yield encode_users(b, vocab, max_len, mode, holdout, stride)

    return df.mapInPandas(run, schemas.EXAMPLE_SCHEMA)


def item_stats(sequences: DataFrame, labels: DataFrame, vocab: Vocab, prior_users: float) -> ItemStats:
    """Per item index: popularity (events in the training ``sequences``) and long-term
    value association (share of its users not churned within H days in ``labels``,
    shrunk towards the mean by ``prior_users``; items never seen get the mean)."""
    seq = sequences.select("user_id", "item_ids")
    lab = labels.select("user_id", "churned_within_horizon")
    per_item = (seq.select("user_id", F.explode("item_ids").alias("item_id")).where(F.col("item_id").isNotNull())
                .groupBy("item_id", "user_id").count()
                .join(lab, "user_id", "left")
                .groupBy("item_id").agg(F.sum("count").alias("n"), F.count("*").alias("users"),
                                        F.sum(F.when(F.col("churned_within_horizon") == F.lit(False), 1)
                                              .otherwise(0)).alias("retained"),
                                        F.sum(F.when(F.col("churned_within_horizon").isNotNull(), 1)
                                              .otherwise(0)).alias("labelled")))
    rows = per_item.collect()  # one row per catalog item: small
    stats = ItemStats.empty(vocab.n_items)
    if rows:
        idx = vocab.item_index([r["item_id"] for r in rows])
        assoc, prior = ltv_association(np.array([r["labelled"] for r in rows], float),
                                       np.array([r["retained"] for r in rows], float), prior_users)
        stats.popularity[idx] = [r["n"] for r in rows]
        stats.ltv[:] = prior  # items never seen get the mean
        stats.ltv[idx] = assoc
    stats.popularity[:2] = 0
    return stats


# -- petastorm ---------------------------------------------------------------------------
FEED_COLUMNS = (*STEP_ARRAYS, "length", "feats", "churn", "value", "label_w", "eval_target")


def _read_materialised(cache_dir_url: str, cols) -> Dict[str, List[torch.Tensor]]:
    import pyarrow.parquet as pq

    path = cache_dir_url.replace("file://", "")
    parts: Dict[str, List[torch.Tensor]] = {c: [] for c in cols}
    files = sorted(f for f in os.listdir(path) if f.endswith(".parquet"))
    for f in files:
        for rb in pq.ParquetFile(os.path.join(path, f)).iter_batches(batch_size=4096, columns=list(cols)):
            t = rb.to_pydict()
            if not t[cols[0]]:
                continue
            for c in cols:
                parts[c].append(torch.as_tensor(np.asarray(t[c])))
    return parts


def tensors_via_petastorm(spark: SparkSession, df: DataFrame, cache_dir: str, batch_size: int = 1024) -> Batch:
    """Read an example DataFrame into a Batch through petastorm
    (``make_spark_converter`` -> ``make_torch_dataloader``), one pass, in a fixed order."""
    from petastorm.spark import SparkDatasetConverter, make_spark_converter
    from petastorm.spark import spark_dataset_converter as sdc

    os.makedirs(cache_dir, exist_ok=True)
    cols = list(FEED_COLUMNS)
    # petastorm 0.13.1 reuses a cached conversion when it judges two plans equal; every
    # conversion here is deleted after use, so forget them all before a new one
    with sdc._cache_df_meta_list_lock:
        sdc._cache_df_meta_list.clear()
    with sql_conf(spark, {SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF: "file://" + os.path.abspath(cache_dir)}):
        conv = make_spark_converter(df.select(*cols))
    parts: Dict[str, List[torch.Tensor]] = {c: [] for c in cols}
    try:
        with conv.make_torch_dataloader(batch_size=batch_size, num_epochs=1, workers_count=1,
                                        shuffling_queue_capacity=0) as loader:
            for batch in loader:
                for c in cols:
                    parts[c].append(torch.as_tensor(batch[c]))
        if not parts["length"]:
            # Seen here, intermittently (several conversions in one session): the
            # reader yields nothing from a non-empty materialisation. Read the files
            # petastorm wrote directly rather than lose the data.
            parts = _read_materialised(conv.cache_dir_url, cols)
            if parts["length"]:
                log.warning("petastorm reader returned no rows; read its %d materialised rows directly",
                            sum(len(x) for x in parts["length"]))
    finally:
        conv.delete()
    if not parts["length"]:
        raise ValueError("no training examples: the training snapshot has no users with sequences")
    out = {c: torch.cat(v) for c, v in parts.items()}
    # petastorm row-group order is not fixed: sort rows by content for a reproducible order
    key = (out["items"].long() * 1000003 + out["length"][:, None]).sum(1) + out["targets"].long().sum(1) * 7
    order = torch.argsort(key * 1000 + out["length"], stable=True)
    return Batch.from_arrays({c: v[order].numpy() for c, v in out.items()})
