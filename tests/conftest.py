"""One session-scoped Spark (with Delta) for the whole suite: 2 cores, few shuffle
partitions, UI off, two task retries allowed (local[2,3]: fault-injection tests fail a
task once)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from lifecycle_recs.config import SparkSettings, config_from_dict, merge_dicts
from tests.helpers import ROOT

SYSTEM = ROOT / "tests" / "system"


def pytest_collection_modifyitems(items):
    """Everything under tests/system/ is a system test (``make check`` leaves them out)."""
    for item in items:
        if SYSTEM in item.path.parents:
            item.add_marker(pytest.mark.system)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from lifecycle_recs.spark import get_spark

    wh = tmp_path_factory.mktemp("warehouse")
    conf = SparkSettings(
        master="local[2,3]",
        shuffle_partitions=2,
        driver_memory="3g",
        extra={"spark.sql.warehouse.dir": str(wh)},
    )
    s = get_spark(conf)
    yield s
    s.stop()


def cfg_under(root, **overrides):
    """A Config whose lakehouse, artifacts and reports are under ``root``. Fixtures are
    small and mostly bad rows, so the quarantine-rate expectation only warns unless a
    test sets it (sections are merged, not replaced)."""
    data = {
        "lakehouse": str(root / "lake"),
        "artifacts": str(root / "artifacts"),
        "reports": str(root / "reports"),
        "validation": {"on_quarantine_excess": "warn"},
        "mlflow": {"enabled": False},
        "evaluation": {"bootstrap": 20},
    }
    return config_from_dict(merge_dicts(data, overrides), base=str(ROOT))


@pytest.fixture
def make_cfg(tmp_path):
    """Build a Config whose lakehouse is a fresh temp dir (:func:`cfg_under`)."""
    return lambda **overrides: cfg_under(tmp_path, **overrides)


@dataclass
class Reference:
    """A clean night of the fault and deployment tests' data: ``conf`` (synthetic raw
    files, a promoted small artifact) is what every lake compared with it uses, ``cfg``
    its lake, ``date`` the night D (with its training snapshot T), ``stages`` what ran."""

    conf: dict
    cfg: object
    date: str
    stages: tuple


REFERENCE_STAGES = ("ingest", "sequences", "lifecycle", "score")


@pytest.fixture(scope="session")
def reference(spark, tmp_path_factory):
    """One clean run (ingest .. score, D and T) shared by the tests that compare a
    crashed, killed, clustered or catalog-table run with a clean one: they only read it.
    Every such lake reads the same raw files (quarantine ids include the file name)."""
    from lifecycle_recs.ml import artifacts
    from lifecycle_recs.pipeline import run_nightly
    from tests.helpers import make_artifact

    root = tmp_path_factory.mktemp("reference")
    art_root = root / "artifacts"
    version = os.path.basename(make_artifact(art_root))
    artifacts.promote_version(str(art_root), version, "2000-01-01")  # valid for any night
    conf = {
        "source": {"kind": "synthetic", "raw_path": str(root / "raw")},
        "synthetic": {"seed": 6, "n_users": 40, "n_items": 60, "days": 90, "partitions": 2},
        "artifacts": str(art_root),
        "recommend": {"k": 5},
        "train": {"device": "cpu"},
    }
    # its own stages in the conf: the night is published when they have all succeeded
    cfg = cfg_under(
        root, **{**conf, "lakehouse": str(root / "clean"), "stages": list(REFERENCE_STAGES)}
    )
    d = run_nightly(spark, cfg, stages=list(REFERENCE_STAGES), training_snapshot=True).snapshot_date
    from lifecycle_recs.io import tables

    before = tables.versions(spark, cfg, tables.TABLE_NAMES)  # every table it has, at its version
    yield Reference(conf, cfg, d, REFERENCE_STAGES)
    # the tests that share it only read it: a commit to it (or a new table) would make later
    # comparisons moot
    assert tables.versions(spark, cfg, tables.TABLE_NAMES) == before, (
        "a test wrote to the shared reference lake"
    )


@pytest.fixture(autouse=True)
def torch_threads_unchanged():
    """A test must leave torch's (process-wide) thread count as it found it: a later test
    that trains would otherwise train other weights in the suite than alone (float sums
    split over another number of threads)."""
    import torch

    before = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == before, (
        f"the test left torch at {torch.get_num_threads()} threads, not {before}"
    )
