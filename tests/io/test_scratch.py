"""Scratch directories: one per run step, removed afterwards even when the step fails;
a materialised frame reads back the same rows from its files."""

import os

import pytest
from pyspark.sql import functions as F

from lifecycle_recs.io import scratch


def test_each_step_gets_its_own_directory_removed_even_on_failure(make_cfg):
    cfg = make_cfg()
    with (
        scratch.directory(cfg, "evaluate-2026-01-01") as a,
        scratch.directory(cfg, "evaluate-2026-01-01") as b,
    ):
        assert a != b and os.path.dirname(a) == scratch.root(cfg)
        os.makedirs(os.path.join(a, "x"))
    assert not os.path.exists(a)
    with pytest.raises(RuntimeError), scratch.directory(cfg, "train-2026-01-01") as c:
        os.makedirs(c)
        raise RuntimeError("the step failed")
    assert not os.path.exists(c) and os.listdir(scratch.root(cfg)) == []


def test_a_materialised_frame_is_the_same_rows_read_from_its_files(spark, tmp_path):
    df = (
        spark.range(50)
        .select(
            F.col("id").alias("user_id"),
            (F.col("id") * 0.5).alias("x"),
            F.array(F.col("id"), F.lit(1)).alias("arr"),
        )
        .where(F.col("user_id") % 3 != 0)
    )
    out = scratch.materialised(df, str(tmp_path / "per_user"))
    assert sorted(out.collect()) == sorted(df.collect())
    assert out.inputFiles() and all(str(tmp_path / "per_user") in f for f in out.inputFiles())
