"""Task failures (fault injection as Spark's own suites do it): a task of each
stage's job fails on its first attempt; Spark retries it (the suite's session is
``local[2,3]``) and the output is identical to a run without failures."""

import os
import uuid

import numpy as np
import pytest

from lifecycle_recs.adapters.udfs import embed_items, item_text, score_users
from lifecycle_recs.config import EmbeddingConf, RecommendConf, SequenceConf
from lifecycle_recs.data.sequences import build_sequences
from lifecycle_recs.io import tables
from lifecycle_recs.stages.ingest import ingest
from tests.adapters.test_udfs import TEXTS, items_frame
from tests.data.test_sequences import ROWS as SEQ_ROWS
from tests.helpers import events_df, make_artifact, repart, scoring_users, sorted_rows
from tests.stages.test_ingest import ROWS, raw_source


def failing_first_attempt(df, marks):
    """``df`` passed through a task that raises on the first attempt of partition 0
    (of every job that reads it), leaving a file in ``marks`` per injected failure."""

    def run(batches):
        from pyspark import TaskContext

        tc = TaskContext.get()
        if tc.attemptNumber() == 0 and tc.partitionId() == 0:
            open(os.path.join(marks, uuid.uuid4().hex), "w").close()
            raise RuntimeError("injected failure of a task's first attempt")
        yield from batches

    return df.mapInPandas(run, df.schema)


@pytest.fixture
def marks(tmp_path):
    d = tmp_path / "marks"
    d.mkdir()
    yield str(d)
    assert os.listdir(str(d)), "no failure was injected"


def test_ingest_with_a_failing_task_lands_the_same_tables(spark, make_cfg, tmp_path, marks):
    clean, flaky = make_cfg(lakehouse=str(tmp_path / "a")), make_cfg(lakehouse=str(tmp_path / "b"))
    raw = raw_source(spark, ROWS)
    want = ingest(spark, clean, raw)
    got = ingest(
        spark, flaky, raw_source(spark, ROWS, events=failing_first_attempt(raw.events, marks))
    )
    assert (
        got.rows_in == want.rows_in
        and got.written == want.written
        and got.quarantined == want.quarantined
    )
    for t in ("events", "events_quarantine"):
        assert sorted_rows(tables.read(spark, flaky, t).drop("ingested_at")) == sorted_rows(
            tables.read(spark, clean, t).drop("ingested_at")
        ), t


def test_sequences_with_a_failing_task_are_the_same(spark, marks):
    ev = events_df(spark, SEQ_ROWS, 3)
    want = sorted_rows(build_sequences(ev, "2026-03-03", SequenceConf()), "user_id")
    got = sorted_rows(
        build_sequences(failing_first_attempt(ev, marks), "2026-03-03", SequenceConf()), "user_id"
    )
    assert got == want


def test_embeddings_with_a_failing_task_are_the_same(spark, marks):
    conf = EmbeddingConf(batch_size=4)
    texts = item_text(items_frame(spark, TEXTS), ["title", "category"])
    want = {r["item_id"]: np.array(r["embedding"]) for r in embed_items(texts, conf).collect()}
    got = {
        r["item_id"]: np.array(r["embedding"])
        for r in embed_items(failing_first_attempt(texts, marks), conf).collect()
    }
    assert set(got) == set(want) and all(np.abs(got[k] - want[k]).max() < 1e-5 for k in want)


def test_scoring_with_a_failing_task_is_the_same(spark, tmp_path, marks):
    art = make_artifact(tmp_path / "art")
    users = repart(
        spark.createDataFrame(scoring_users(30, seed=4).astype({"monetary_total": float})), 3
    )
    conf = RecommendConf(k=5)
    cols = ["user_id", "rec_items", "strategy", "because_item_ids"]
    want = sorted_rows(
        score_users(users, art, conf, "cpu").select(*cols, "churn_probability"), "user_id"
    )
    got = sorted_rows(
        score_users(failing_first_attempt(users, marks), art, conf, "cpu").select(
            *cols, "churn_probability"
        ),
        "user_id",
    )
    assert [{c: r[c] for c in cols} for r in got] == [{c: r[c] for c in cols} for r in want]
    assert np.allclose(
        [r["churn_probability"] for r in got], [r["churn_probability"] for r in want], atol=1e-6
    )
