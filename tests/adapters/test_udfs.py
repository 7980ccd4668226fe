"""The mapInPandas wrappers give what the Spark-free functions give."""

import datetime as dt

import numpy as np
import pytest

from lifecycle_recs import schemas
from lifecycle_recs.adapters.udfs import (
    embed_items,
    item_text,
    score_users,
    scored_outputs,
    worker_cached,
)
from lifecycle_recs.config import EmbeddingConf, RecommendConf
from lifecycle_recs.ml.scorer import SCORED_COLUMNS, load_scorer, score_batch
from lifecycle_recs.ml.text_encoder import TextEncoder, embed_pandas
from lifecycle_recs.spark import sql_conf
from tests.helpers import AWKWARD_TEXTS, make_artifact, repart, scoring_users

TEXTS = AWKWARD_TEXTS


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return make_artifact(tmp_path_factory.mktemp("art"))


def test_scored_schema_names_match_the_scorer():
    assert schemas.ddl_names(schemas.SCORED_SCHEMA) == list(SCORED_COLUMNS)


def test_worker_cache_keys_by_everything_given():
    calls = []
    a = worker_cached(("t", "path", "cpu"), lambda: calls.append(1) or "cpu-model")
    b = worker_cached(("t", "path", "cpu"), lambda: calls.append(1) or "again")
    c = worker_cached(("t", "path", "cuda"), lambda: calls.append(1) or "cuda-model")
    assert (a, b, c) == ("cpu-model", "cpu-model", "cuda-model") and len(calls) == 2


def test_spark_scoring_equals_batch_function(spark, artifact):
    sc = load_scorer(artifact, "cpu")
    df = scoring_users(40, seed=2)
    conf = RecommendConf(k=5)
    plain = score_batch(df, sc, conf).set_index("user_id")
    sdf = repart(spark.createDataFrame(df.astype({"monetary_total": float})), 3)
    scored = score_users(sdf, artifact, conf, "cpu")
    got = scored.toPandas().set_index("user_id")
    assert set(got.index) == set(plain.index)
    for u in plain.index:
        assert got.loc[u, "rec_items"].tolist() == list(plain.loc[u, "rec_items"])
        assert got.loc[u, "churn_probability"] == pytest.approx(
            plain.loc[u, "churn_probability"], abs=1e-6
        )
        assert np.allclose(
            got.loc[u, "interest_vector"], plain.loc[u, "interest_vector"], atol=1e-5
        )
    outs = scored_outputs(scored, "2026-02-01", "v1", dt.datetime(2026, 2, 2), 30)
    for name, out in outs.items():
        assert set(schemas.spec(name).names) == set(out.columns), name
    recs = outs["recommendations"].where("user_id = 'u5'").orderBy("rank").collect()
    assert [r["item_id"] for r in recs] == list(plain.loc["u5", "rec_items"])
    assert [r["rank"] for r in recs] == list(range(1, len(recs) + 1))


def items_frame(spark, titles):
    rows = [(f"I{i}", t, "Cat" if i % 2 else None, None) for i, t in enumerate(titles)]
    return repart(
        spark.createDataFrame(
            rows, "item_id string, title string, category string, description string"
        )
    )


@pytest.mark.slow
def test_spark_embedding_equals_plain_function(spark):
    conf = EmbeddingConf(batch_size=4, arrow_batch_size=3)
    texts = item_text(items_frame(spark, TEXTS), ["title", "category", "description"])
    with sql_conf(spark, {"spark.sql.execution.arrow.maxRecordsPerBatch": "3"}):
        got = {r["item_id"]: np.array(r["embedding"]) for r in embed_items(texts, conf).collect()}
    plain = embed_pandas(texts.toPandas(), conf, TextEncoder(device="cpu", batch_size=3))
    assert len(got) == len(TEXTS)
    for _, row in plain.iterrows():
        assert np.abs(got[row["item_id"]] - row["embedding"]).max() < 1e-5


def test_item_text_skips_nulls_and_hashes(spark):
    t = {
        r["item_id"]: r
        for r in item_text(items_frame(spark, ["T0", None, " "]), ["title", "category"]).collect()
    }
    assert t["I0"]["text"] == "T0" and t["I1"]["text"] == "Cat" and t["I2"]["text"] == ""
    assert len(t["I0"]["text_hash"]) == 64
