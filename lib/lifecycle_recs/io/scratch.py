"""Private scratch directories for one run's intermediate files (the training feed,
the evaluated users), under ``train.feed_dir`` (default ``<artifacts>/_feed``): a
path every node writes and reads like the artifacts (a local or mounted path, or a
``pyarrow.fs`` URI: ``s3://``, ``gs://``, ``abfs://``), which the driver removes.
Each run gets its own directory, so two nights at once never share files, and it
is removed when the run's step ends, failed or not."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from lifecycle_recs.config import Config
from lifecycle_recs.fs import remove_dir

if TYPE_CHECKING:  # no pyspark import: a module importing the ml core is not another adapter
    from pyspark.sql import DataFrame


def root(cfg: Config) -> str:
    return cfg.train.feed_dir or os.path.join(cfg.artifacts, "_feed")


@contextmanager
def directory(cfg: Config, name: str) -> Iterator[str]:
    """A new directory ``<root>/<name>-<random>`` (created by whatever writes into it)."""
    path = os.path.join(root(cfg), f"{name}-{uuid.uuid4().hex[:12]}")
    try:
        yield path
    finally:
        remove_dir(path)


def materialised(df: DataFrame, path: str) -> DataFrame:
    """``df`` written once as Parquet under ``path`` and read back: what follows plans
    against a file scan instead of the whole lineage (scoring, joins), which Spark
    re-analyses, and matches against every cached plan, at each step; unlike a local
    checkpoint it survives the loss of an executor."""
    df.write.mode("overwrite").parquet(path)
    return df.sparkSession.read.parquet(path)
