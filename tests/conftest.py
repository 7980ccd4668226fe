"""One session-scoped Spark (with Delta) for the whole suite: 2 cores, few
shuffle partitions, UI off, one task retry allowed (local[2,2])."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
ML100K = SHARED / "datasets" / "ml-100k"
sys.path.insert(0, str(ROOT / "lib"))

from lifecycle_recs.config import SparkConf, config_from_dict  # noqa: E402


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from lifecycle_recs.spark import get_spark

    wh = tmp_path_factory.mktemp("warehouse")
    conf = SparkConf(master="local[2,2]", shuffle_partitions=2, driver_memory="3g",
                     extra={"spark.sql.warehouse.dir": str(wh)})
    s = get_spark(conf)
    yield s
    s.stop()


@pytest.fixture
def make_cfg(tmp_path):
    """Build a Config whose lakehouse is a fresh temp dir."""
    def _make(**overrides):
        data = {"lakehouse": str(tmp_path / "lake"), "artifacts": str(tmp_path / "artifacts"),
                "reports": str(tmp_path / "reports")}
        for k, v in overrides.items():
            data[k] = v
        return config_from_dict(data, base=str(ROOT))
    return _make


def repart(df, n=3):
    """Spread fixture rows over several partitions: bugs that need >1 partition show up."""
    return df.repartition(n)


def sorted_rows(df, *cols):
    return [r.asDict(recursive=True) for r in df.orderBy(*(cols or df.columns)).collect()]
