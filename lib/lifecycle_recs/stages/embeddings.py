"""Stage ``embeddings``: embed new or changed item texts only and MERGE them
into ``item_embeddings`` (keyed by item and model; unchanged texts are skipped)."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Dict

from pyspark import StorageLevel
from pyspark.sql import functions as F

from lifecycle_recs.adapters.feeding import has_catalog
from lifecycle_recs.adapters.udfs import embed_items, item_text
from lifecycle_recs.context import RunContext
from lifecycle_recs.dates import utc_now
from lifecycle_recs.io import tables
from lifecycle_recs.ml import registry
from lifecycle_recs.spark import sql_conf

log = logging.getLogger(__name__)


def run(ctx: RunContext) -> Dict[str, object]:
    spark, cfg = ctx.spark, ctx.cfg
    conf = cfg.embedding
    if not has_catalog(spark, cfg):
        why = "no item catalog (the source has no items, e.g. an order-level log)"
        log.info(
            "stage embeddings skipped: %s; item texts are embedded once a catalog lands in 'items'",
            why,
        )
        return {"skipped_stage": why}
    if conf.model.startswith(registry.MLFLOW_MODEL_URIS):  # fetched once, read by every node
        where = registry.fetch_model_files(
            conf.model, os.path.join(cfg.artifacts, "_encoders"), cfg.mlflow
        )
        conf = dataclasses.replace(conf, model=where)
    texts = item_text(tables.read(spark, cfg, "items"), conf.text_columns)
    target = tables.ensure_table(spark, cfg, tables.spec("item_embeddings"))
    current = (
        tables.read(spark, cfg, "item_embeddings")
        .where(F.col("model_name") == conf.model_name)
        .select("item_id", "text_hash")
    )
    todo = texts.join(current, on=["item_id", "text_hash"], how="left_anti")
    n_items = texts.count()
    vecs = (
        embed_items(todo, conf)
        .withColumn("updated_at", F.lit(utc_now()).cast("timestamp"))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        # a few texts per Arrow batch keeps worker memory flat; the encoder sub-batches further
        with sql_conf(
            spark, {"spark.sql.execution.arrow.maxRecordsPerBatch": str(conf.arrow_batch_size)}
        ):
            n_todo = vecs.count()  # embeds once; the MERGE reads the persisted rows
        if n_todo:
            (
                target.alias("t")
                .merge(
                    tables.conform(vecs, tables.spec("item_embeddings")).alias("s"),
                    "t.item_id = s.item_id AND t.model_name = s.model_name",
                )
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )
    finally:
        vecs.unpersist()
    return {
        "items": n_items,
        "embedded": n_todo,
        "skipped": n_items - n_todo,
        "model": conf.model_name,
    }
