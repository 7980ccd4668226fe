"""One session-scoped Spark (with Delta) for the whole suite: 2 cores, few
shuffle partitions, UI off, two task retries allowed (local[2,3]: fault-injection tests fail a task once)."""
from __future__ import annotations

import pytest

from lifecycle_recs.config import SparkSettings, config_from_dict, merge_dicts
from tests.helpers import ROOT


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from lifecycle_recs.spark import get_spark

    wh = tmp_path_factory.mktemp("warehouse")
    conf = SparkSettings(master="local[2,3]", shuffle_partitions=2, driver_memory="3g",
                         extra={"spark.sql.warehouse.dir": str(wh)})
    s = get_spark(conf)
    yield s
    s.stop()


@pytest.fixture
def make_cfg(tmp_path):
    """Build a Config whose lakehouse is a fresh temp dir. Fixtures are small and
    mostly bad rows, so the quarantine-rate expectation only warns unless a test
    sets it (sections are merged, not replaced)."""
    def _make(**overrides):
        data = {"lakehouse": str(tmp_path / "lake"), "artifacts": str(tmp_path / "artifacts"),
                "reports": str(tmp_path / "reports"), "validation": {"on_quarantine_excess": "warn"},
                "mlflow": {"enabled": False}, "evaluation": {"bootstrap": 20}}
        return config_from_dict(merge_dicts(data, overrides), base=str(ROOT))
    return _make


@pytest.fixture(autouse=True)
def torch_threads_unchanged():
    """A test must leave torch's (process-wide) thread count as it found it: a later test
    that trains would otherwise train other weights in the suite than alone (float sums
    split over another number of threads)."""
    import torch

    before = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == before, f"the test left torch at {torch.get_num_threads()} threads, not {before}"
