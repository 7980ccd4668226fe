"""The only Delta reader/writer: snapshot replace, insert-only merge, upsert, metric rows."""
import datetime as dt

import pytest
from pyspark.sql import functions as F

from lifecycle_recs import tables
from lifecycle_recs.evaluation import metric_rows
from lifecycle_recs.stages.ingest import ingest
from tests.helpers import sorted_rows
from tests.stages.test_ingest import ROWS, raw_source


def test_last_partition_date_reads_the_delta_log(spark, make_cfg):
    cfg = make_cfg()
    tables.ensure_table(spark, cfg, tables.spec("events"))
    assert tables.last_partition_date(spark, cfg, "events") is None
    ingest(spark, cfg, raw_source(spark, ROWS))
    assert tables.last_partition_date(spark, cfg, "events") == dt.date(2026, 3, 3)
    with pytest.raises(ValueError, match="not partitioned"):
        tables.last_partition_date(spark, cfg, "items")


def _metrics(spark, cfg):
    return tables.read(spark, cfg, "evaluation_metrics")


def test_snapshot_write_replaces_only_its_date(spark, make_cfg):
    cfg = make_cfg()
    rows = lambda d, v: metric_rows(d, "x", "ours", "v1", "churn", {"roc_auc": v})  # noqa: E731
    df = lambda d, v: spark.createDataFrame(rows(d, v), tables.spec("evaluation_metrics").schema)  # noqa: E731
    tables.write_snapshot(spark, cfg, "evaluation_metrics", df("2026-01-01", 0.5), "2026-01-01")
    tables.write_snapshot(spark, cfg, "evaluation_metrics", df("2026-01-02", 0.6), "2026-01-02")
    tables.write_snapshot(spark, cfg, "evaluation_metrics", df("2026-01-02", 0.7), "2026-01-02")
    got = {str(r["snapshot_date"]): r["value"] for r in _metrics(spark, cfg).collect()}
    assert got == {"2026-01-01": 0.5, "2026-01-02": 0.7}
    assert tables.snapshots(spark, cfg, "evaluation_metrics") == ["2026-01-01", "2026-01-02"]


def test_metric_rows_replace_their_dataset_only_and_names_are_checked(spark, make_cfg):
    cfg = make_cfg()
    r = lambda ds, v: metric_rows("2026-01-01", ds, "ours", "v", "churn", {"roc_auc": v})  # noqa: E731
    tables.replace_metric_rows(spark, cfg, r("a", 0.1), "2026-01-01", "a")
    tables.replace_metric_rows(spark, cfg, r("b", 0.2), "2026-01-01", "b")
    tables.replace_metric_rows(spark, cfg, r("a", 0.3), "2026-01-01", "a")
    assert sorted((x["dataset"], x["value"]) for x in _metrics(spark, cfg).collect()) == [("a", 0.3), ("b", 0.2)]
    with pytest.raises(ValueError, match="evaluation dataset name"):
        tables.replace_metric_rows(spark, cfg, r("a", 0.1), "2026-01-01", "a' OR '1'='1")


def test_upsert_changes_only_changed_rows_and_merge_new_inserts_once(spark, make_cfg):
    cfg = make_cfg()
    items = spark.createDataFrame([("a", "A", None, None, None, None, "s"), ("b", "B", None, None, None, None, "s")],
                                  "item_id string, title string, category string, description string, price double, "
                                  "year int, source string").withColumn("updated_at", F.current_timestamp())
    first = tables.upsert(spark, cfg, "items", items, ["item_id"], ["title"])
    assert (first["inserted"], first["updated"]) == (2, 0)
    again = tables.upsert(spark, cfg, "items", items, ["item_id"], ["title"])
    assert (again["inserted"], again["updated"]) == (0, 0)
    changed = items.withColumn("title", F.when(F.col("item_id") == "b", "B2").otherwise(F.col("title")))
    third = tables.upsert(spark, cfg, "items", changed, ["item_id"], ["title"])
    assert (third["inserted"], third["updated"]) == (0, 1)
    assert [r["title"] for r in sorted_rows(tables.read(spark, cfg, "items").select("item_id", "title"))] == ["A", "B2"]


def test_missing_table_is_a_clear_error(spark, make_cfg):
    with pytest.raises(FileNotFoundError, match="table 'user_sequences' does not exist"):
        tables.read(spark, make_cfg(), "user_sequences")
