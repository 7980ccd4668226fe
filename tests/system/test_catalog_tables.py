"""Tables named ``catalog.schema.table`` (Unity Catalog on Databricks; the session
catalog here: ``spark_catalog.<db>.<table>``) go through the same code as paths
and land the same rows; tables carry column comments and an explicit
``delta.enableDeletionVectors``."""

import uuid

import pytest

from lifecycle_recs import schemas
from lifecycle_recs.io import runs, tables
from lifecycle_recs.pipeline import run_nightly
from tests.helpers import sorted_rows

STAGES = ["ingest", "sequences", "lifecycle"]
DATA = ("events", "events_quarantine", "items", "user_sequences", "user_lifecycle")


@pytest.mark.slow
def test_a_nightly_run_on_catalog_tables_equals_one_on_paths(spark, make_cfg, reference, tmp_path):
    db = f"lc_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE DATABASE {db}")
    try:
        on_paths, d = reference.cfg, reference.date  # the shared clean night on paths (D and T)
        named = make_cfg(
            lakehouse=str(tmp_path / "unused"),
            table_schema=f"spark_catalog.{db}",
            tables={"pipeline_runs": f"spark_catalog.{db}.nightly_runs"},
            stages=STAGES,
            **reference.conf,
        )
        assert tables.path(named, "events") == f"spark_catalog.{db}.events"
        assert run_nightly(spark, named, stages=STAGES, training_snapshot=True).snapshot_date == d
        volatile = ("ingested_at", "updated_at")
        for t in DATA:
            assert sorted_rows(tables.read(spark, named, t).drop(*volatile)) == sorted_rows(
                tables.read(spark, on_paths, t).drop(*volatile)
            ), t
        assert runs.last_published_date(spark, named) == d
        assert spark.catalog.tableExists(f"spark_catalog.{db}.nightly_runs")
        # a rerun commits nothing new to events
        before = tables.versions(spark, named, ["events"])
        run_nightly(spark, named, d, stages=["ingest"])
        assert tables.versions(spark, named, ["events"]) == before
        # column comments from schemas.py; deletion vectors set explicitly
        cols = {
            r["col_name"]: r["comment"]
            for r in spark.sql(f"DESCRIBE TABLE spark_catalog.{db}.user_lifecycle").collect()
        }
        want = {c.name: c.doc for c in schemas.spec("user_lifecycle").columns}
        assert all(cols[k] == v for k, v in want.items())
        for t in ("events", "recommendations"):
            tables.ensure_table(spark, named, schemas.spec(t))
            props = {
                r["key"]: r["value"]
                for r in spark.sql(f"SHOW TBLPROPERTIES spark_catalog.{db}.{t}").collect()
            }
            assert (
                props["delta.enableDeletionVectors"] == str(t in schemas.DELETION_VECTORS).lower()
            ), t
    finally:
        spark.sql(f"DROP DATABASE {db} CASCADE")
