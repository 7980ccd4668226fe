"""Spark -> the Spark-free trainer: the vocabulary and text vectors, the example
rows (built on the workers by ``ml.features.encode_users``), per-item statistics
for the artifact, and the training feed: example rows written once as Parquet and
streamed by ``ml.feed.ParquetExampleStream`` (default), or petastorm (optional)."""

from __future__ import annotations

import logging
import os
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lifecycle_recs import schemas
from lifecycle_recs.config import Config
from lifecycle_recs.io import tables
from lifecycle_recs.ml import artifacts
from lifecycle_recs.ml.artifacts import Artifact, ItemStats
from lifecycle_recs.ml.features import Batch, encode_users
from lifecycle_recs.ml.feed import FEED_COLUMNS, ParquetExampleStream
from lifecycle_recs.ml.recommend import ltv_association
from lifecycle_recs.ml.vocab import Vocab
from lifecycle_recs.spark import sql_conf

log = logging.getLogger(__name__)


def has_catalog(spark: SparkSession, cfg: Config) -> bool:
    """Whether the ``items`` table exists and holds at least one item."""
    return (
        tables.exists(spark, cfg, "items") and tables.read(spark, cfg, "items").limit(1).count() > 0
    )


def build_vocab(
    spark: SparkSession, cfg: Config, sequences: Optional[DataFrame] = None
) -> Tuple[Vocab, Optional[np.ndarray]]:
    """Vocabulary from the items table (small: one row per item) and the text
    vectors of the configured model aligned to it (zeros where missing).

    Without a catalog, the distinct item ids of ``sequences`` (no categories);
    without either (an order-level log), an empty vocabulary: the model then
    trains without its next-item head."""
    if has_catalog(spark, cfg):
        items = (
            tables.read(spark, cfg, "items")
            .select("item_id", "category")
            .orderBy("item_id")
            .collect()
        )
    elif sequences is not None:  # one row per distinct item: small
        items = (
            sequences.select(F.explode("item_ids").alias("item_id"))
            .where(F.col("item_id").isNotNull())
            .distinct()
            .orderBy("item_id")
            .withColumn("category", F.lit(None).cast("string"))
            .collect()
        )
    else:
        items = []
    vocab = Vocab(
        [r["item_id"] for r in items],
        list(cfg.validation.event_types),
        [r["category"] for r in items],
    )
    if not items:
        return vocab, None
    text = None
    if cfg.model.use_text and tables.exists(spark, cfg, "item_embeddings"):
        emb = (
            tables.read(spark, cfg, "item_embeddings")
            .where(F.col("model_name") == cfg.embedding.model_name)
            .select("item_id", "embedding")
            .collect()
        )
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
        "user_id",
        "stage",
        "has_labels",
        "churned_within_horizon",
        "value_next_horizon",
        "items_next_horizon",
        "value_last_horizon",
    )
    return seq.join(lab, on="user_id", how="inner")


def examples(
    df: DataFrame,
    vocab: Vocab,
    max_len: int,
    mode: str = "last",
    holdout: int = 0,
    stride: Optional[int] = None,
    btyd_params: Optional[Dict] = None,
) -> DataFrame:
    """user rows -> example rows (``schemas.EXAMPLE_SCHEMA``), built on the workers."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for b in batches:
            yield encode_users(b, vocab, max_len, mode, holdout, stride, btyd_params)

    return df.mapInPandas(run, schemas.EXAMPLE_SCHEMA)


def repeat_share(frame: DataFrame) -> Optional[float]:
    """Share of the items the labelled users of a training frame touched in the next H
    days (``items_next_horizon``) that were already in their sequence (``item_ids``, the
    items a seen-item filter removes); None without any such item. One aggregate."""
    r = (
        frame.select("item_ids", F.explode("items_next_horizon").alias("i"))
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(
                F.coalesce(F.array_contains("item_ids", F.col("i")), F.lit(False)).cast("long")
            ).alias("seen"),
        )
        .first()
    )
    return float(r["seen"]) / r["n"] if r["n"] else None


def artifact_repeat_share(spark: SparkSession, cfg: Config, art: Artifact) -> Optional[float]:
    """The repeat share train measured for ``art`` (score and evaluate decide on it:
    ``ml.recommend.seen_policy``). An artifact saved before train measured it is measured
    now, on its own training snapshot, and the figure is recorded beside it
    (``ml.artifacts.record_measured``), so this happens once per artifact. None (seen
    items filtered) without items, or when that snapshot is no longer in the lake."""
    if "repeat_share" in art.config:
        return art.config["repeat_share"]
    if art.vocab.n_items <= 2:
        return None
    t = art.config.get("training_date")
    try:
        frame = training_frame(spark, cfg, t)
        if t is None or frame.limit(1).count() == 0:
            raise FileNotFoundError(f"no rows of user_sequences/user_lifecycle at {t}")
    except FileNotFoundError as e:
        log.warning(
            "artifact %s has no repeat share and its training snapshot cannot be read (%s): seen "
            "items are filtered",
            art.version,
            e,
        )
        return None
    share = repeat_share(frame)
    artifacts.record_measured(
        os.path.dirname(os.path.abspath(art.path)), art.version, {"repeat_share": share}
    )
    art.config["repeat_share"] = share
    log.info(
        "artifact %s was saved before train measured its repeat share: measured now on %s (%s) "
        "and recorded beside it",
        art.version,
        t,
        "none" if share is None else f"{100 * share:.1f}%",
    )
    return share


def item_stats(
    sequences: DataFrame, labels: DataFrame, vocab: Vocab, prior_users: float
) -> ItemStats:
    """Per item index: popularity (events in the training ``sequences``) and long-term
    value association (share of its users not churned within H days in ``labels``,
    shrunk towards the mean by ``prior_users``; items never seen get the mean)."""
    seq = sequences.select("user_id", "item_ids")
    lab = labels.select("user_id", "churned_within_horizon")
    per_item = (
        seq.select("user_id", F.explode("item_ids").alias("item_id"))
        .where(F.col("item_id").isNotNull())
        .groupBy("item_id", "user_id")
        .count()
        .join(lab, "user_id", "left")
        .groupBy("item_id")
        .agg(
            F.sum("count").alias("n"),
            F.count("*").alias("users"),
            F.sum(F.when(F.col("churned_within_horizon") == F.lit(False), 1).otherwise(0)).alias(
                "retained"
            ),
            F.sum(F.when(F.col("churned_within_horizon").isNotNull(), 1).otherwise(0)).alias(
                "labelled"
            ),
        )
    )
    rows = per_item.collect()  # one row per catalog item: small
    stats = ItemStats.empty(vocab.n_items)
    if rows:
        idx = vocab.item_index([r["item_id"] for r in rows])
        assoc, prior = ltv_association(
            np.array([r["labelled"] for r in rows], float),
            np.array([r["retained"] for r in rows], float),
            prior_users,
        )
        stats.popularity[idx] = [r["n"] for r in rows]
        stats.ltv[:] = prior  # items never seen get the mean
        stats.ltv[idx] = assoc
    stats.popularity[:2] = 0
    return stats


# -- the training feed ------------------------------------------------------------------
def write_examples(df: DataFrame, path: str, files: int, row_group_bytes: int = 16 << 20) -> str:
    """Write example rows as Parquet under ``path`` (replacing what is there), spread
    over ``files`` files by user and sorted by user within each, so the files' content
    does not depend on how the input was partitioned; row groups of about
    ``row_group_bytes`` are the units the stream shuffles."""
    (
        df.select("user_id", *FEED_COLUMNS)
        .repartition(max(1, files), "user_id")
        .sortWithinPartitions("user_id", "length", "eval_target")
        .write.mode("overwrite")
        .option("parquet.block.size", row_group_bytes)
        .parquet(path)
    )
    return path


def example_feed(
    spark: SparkSession, cfg: Config, df: DataFrame, name: str, shuffle: bool, root: str
):
    """Example rows -> a source of Batches for the trainer, by ``train.feeder``:
    ``parquet`` writes them once under ``<root>/<name>`` (``root``: the run's
    ``scratch.directory``) and streams them; ``petastorm`` converts them with
    petastorm (pyarrow < 15 environments)."""
    tconf = cfg.train
    if tconf.feeder == "petastorm":
        cache = tconf.petastorm_cache_dir or os.path.join(cfg.artifacts, "_petastorm")
        return PetastormStream(spark, df, cache, tconf.batch_size, shuffle, tconf.seed)
    path = os.path.join(root, name)
    write_examples(df, path, cfg.spark.shuffle_partitions)
    return ParquetExampleStream(
        path,
        tconf.batch_size,
        shuffle=shuffle,
        seed=tconf.seed,
        buffer_rows=tconf.shuffle_buffer_rows,
    )


# -- petastorm (optional) ------------------------------------------------------------------
class PetastormStream:
    """Example rows materialised once by petastorm (``make_spark_converter``) and
    streamed each epoch through ``make_torch_dataloader`` (never concatenated).
    Needs the ``[petastorm]`` extra: petastorm 0.13.1 imports APIs that pyarrow 15
    removed, so it runs only where pyarrow < 15 (see docs/running-elsewhere.md)."""

    def __init__(
        self,
        spark: SparkSession,
        df: DataFrame,
        cache_dir: str,
        batch_size: int,
        shuffle: bool,
        seed: int,
    ):
        try:
            from petastorm.spark import SparkDatasetConverter, make_spark_converter
            from petastorm.spark import spark_dataset_converter as sdc
        except (
            ImportError
        ) as e:  # pyarrow >= 15 removed pyarrow.filesystem, which petastorm imports
            raise ImportError(
                f"train.feeder: petastorm needs the [petastorm] extra on pyarrow < 15 ({e}); use "
                "train.feeder: parquet"
            ) from e
        os.makedirs(cache_dir, exist_ok=True)
        # petastorm 0.13.1 reuses a cached conversion when it judges two plans equal;
        # every conversion here is deleted after use, so forget them all before a new one
        with sdc._cache_df_meta_list_lock:
            sdc._cache_df_meta_list.clear()
        url = "file://" + os.path.abspath(cache_dir)
        with sql_conf(spark, {SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF: url}):
            self.converter = make_spark_converter(df.select(*FEED_COLUMNS))
        self.rows = len(self.converter)
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        kw = (
            {"shuffling_queue_capacity": 4 * self.batch_size, "seed": self.seed + self.epoch}
            if self.shuffle
            else {"shuffling_queue_capacity": 0}
        )
        with self.converter.make_torch_dataloader(
            batch_size=self.batch_size,
            num_epochs=1,
            workers_count=1,
            shuffle_row_groups=self.shuffle,
            **kw,
        ) as loader:
            for b in loader:
                yield Batch.from_arrays({c: b[c].numpy() for c in FEED_COLUMNS})

    def close(self) -> None:
        self.converter.delete()
