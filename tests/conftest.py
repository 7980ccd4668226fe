"""One session-scoped Spark (with Delta) for the whole suite: 2 cores, few
shuffle partitions, UI off, one task retry allowed (local[2,2])."""
from __future__ import annotations

import pytest

from lifecycle_recs.config import SparkSettings, config_from_dict
from tests.helpers import ROOT


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from lifecycle_recs.spark import get_spark

    wh = tmp_path_factory.mktemp("warehouse")
    conf = SparkSettings(master="local[2,2]", shuffle_partitions=2, driver_memory="3g",
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
        data.update(overrides)
        return config_from_dict(data, base=str(ROOT))
    return _make
