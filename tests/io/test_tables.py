"""The only Delta reader/writer: snapshot replace, insert-only merge, upsert, metric rows."""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from lifecycle_recs.evaluation.report import metric_rows
from lifecycle_recs.io import tables
from lifecycle_recs.stages.ingest import ingest
from tests.helpers import sorted_rows
from tests.stages.test_ingest import ROWS, raw_source


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_metric_rows_replace_their_dataset_only_and_names_are_checked(spark, make_cfg):
    cfg = make_cfg()
    r = lambda ds, v: metric_rows("2026-01-01", ds, "ours", "v", "churn", {"roc_auc": v})  # noqa: E731
    tables.replace_metric_rows(spark, cfg, r("a", 0.1), "2026-01-01", "a")
    tables.replace_metric_rows(spark, cfg, r("b", 0.2), "2026-01-01", "b")
    tables.replace_metric_rows(spark, cfg, r("a", 0.3), "2026-01-01", "a")
    assert sorted((x["dataset"], x["value"]) for x in _metrics(spark, cfg).collect()) == [
        ("a", 0.3),
        ("b", 0.2),
    ]
    with pytest.raises(ValueError, match="evaluation dataset name"):
        tables.replace_metric_rows(spark, cfg, r("a", 0.1), "2026-01-01", "a' OR '1'='1")


@pytest.mark.slow
def test_upsert_changes_only_changed_rows_and_merge_new_inserts_once(spark, make_cfg):
    cfg = make_cfg()
    items = spark.createDataFrame(
        [("a", "A", None, None, None, None, "s"), ("b", "B", None, None, None, None, "s")],
        "item_id string, title string, category string, description string, price double, "
        "year int, source string",
    ).withColumn("updated_at", F.current_timestamp())
    first = tables.upsert(spark, cfg, "items", items, ["item_id"], ["title"])
    assert (first["inserted"], first["updated"]) == (2, 0)
    again = tables.upsert(spark, cfg, "items", items, ["item_id"], ["title"])
    assert (again["inserted"], again["updated"]) == (0, 0)
    changed = items.withColumn(
        "title", F.when(F.col("item_id") == "b", "B2").otherwise(F.col("title"))
    )
    third = tables.upsert(spark, cfg, "items", changed, ["item_id"], ["title"])
    assert (third["inserted"], third["updated"]) == (0, 1)
    assert [
        r["title"] for r in sorted_rows(tables.read(spark, cfg, "items").select("item_id", "title"))
    ] == ["A", "B2"]


def test_missing_table_is_a_clear_error(spark, make_cfg):
    with pytest.raises(FileNotFoundError, match="table 'user_sequences' does not exist"):
        tables.read(spark, make_cfg(), "user_sequences")


def _metric_df(spark, d, values):
    rows = [
        r
        for i, v in enumerate(values)
        for r in metric_rows(d, f"x{i}", "ours", "v1", "churn", {"roc_auc": v})
    ]
    return spark.createDataFrame(rows, tables.spec("evaluation_metrics").schema)


@pytest.mark.slow
def test_an_empty_or_sharply_shrunk_snapshot_does_not_replace_good_output(spark, make_cfg):
    """Item 5: an empty upstream used to wipe D's partition; now it is refused
    (the same date, and a new date against the last earlier one), unless allowed."""
    cfg = make_cfg()
    tables.write_snapshot(
        spark,
        cfg,
        "evaluation_metrics",
        _metric_df(spark, "2026-01-01", [0.1, 0.2, 0.3, 0.4]),
        "2026-01-01",
    )
    empty = _metric_df(spark, "2026-01-01", [])
    with pytest.raises(
        tables.ShrinkRefused, match="refusing to replace snapshot 2026-01-01 .* with 0 rows"
    ):
        tables.write_snapshot(spark, cfg, "evaluation_metrics", empty, "2026-01-01")
    with pytest.raises(tables.ShrinkRefused, match="with 1 rows"):
        tables.write_snapshot(
            spark, cfg, "evaluation_metrics", _metric_df(spark, "2026-01-01", [0.5]), "2026-01-01"
        )
    with pytest.raises(tables.ShrinkRefused, match="the snapshot of 2026-01-01 has 4"):
        tables.write_snapshot(
            spark, cfg, "evaluation_metrics", _metric_df(spark, "2026-01-02", []), "2026-01-02"
        )
    assert _metrics(spark, cfg).count() == 4  # nothing was committed
    # a moderate drop (3 of 4) passes; an explicit allow_shrink accepts the empty one
    tables.write_snapshot(
        spark,
        cfg,
        "evaluation_metrics",
        _metric_df(spark, "2026-01-02", [0.1, 0.2, 0.3]),
        "2026-01-02",
    )
    allowed = make_cfg(publish={"allow_shrink": True})
    tables.write_snapshot(
        spark, allowed, "evaluation_metrics", _metric_df(spark, "2026-01-01", []), "2026-01-01"
    )
    assert tables.snapshots(spark, cfg, "evaluation_metrics") == ["2026-01-02"]


def test_two_dates_written_at_once_both_land(spark, make_cfg):
    """Item 8 / concurrency: two writers held at a barrier right before their commits
    replace two different dates of one table at the same moment; both land."""
    import threading

    cfg = make_cfg()
    tables.ensure_table(spark, cfg, tables.spec("evaluation_metrics"))
    barrier = threading.Barrier(2, timeout=600)  # generous: a loaded CI machine is slow
    tables.BEFORE_COMMIT_HOOKS.append(lambda t: barrier.wait())
    errors = []

    def write(d, v):
        try:
            tables.write_snapshot(spark, cfg, "evaluation_metrics", _metric_df(spark, d, [v, v]), d)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    try:
        threads = [
            threading.Thread(target=write, args=(d, v))
            for d, v in (("2026-02-01", 0.1), ("2026-02-02", 0.2))
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        tables.BEFORE_COMMIT_HOOKS.clear()
    assert not errors, errors
    got = sorted((str(r["snapshot_date"]), r["value"]) for r in _metrics(spark, cfg).collect())
    assert got == [("2026-02-01", 0.1)] * 2 + [("2026-02-02", 0.2)] * 2


def test_a_new_table_carries_its_constraints_from_its_first_commit(spark, make_cfg):
    """Item 8: constraints used to be added in later commits (a crash in between left
    the table unconstrained forever). Now version 0 has them, and nothing else came after."""
    from delta.tables import DeltaTable

    cfg = make_cfg()
    tables.ensure_table(spark, cfg, tables.spec("events"))
    t = DeltaTable.forPath(spark, tables.path(cfg, "events"))
    assert [r["version"] for r in t.history().collect()] == [0]
    props = t.detail().first()["properties"]
    assert set(tables.spec("events").checks) <= {
        k.split("delta.constraints.")[1] for k in props if k.startswith("delta.constraints.")
    }


def test_a_state_write_of_no_rows_still_records_what_it_reflects(spark, make_cfg):
    """Delta skips a commit that changes no file by default: the metadata of an empty
    ``replace_dates`` (a night whose events changed no date) would be lost."""
    from lifecycle_recs.io import versions

    cfg = make_cfg()
    empty = spark.createDataFrame([], tables.spec("user_base").schema)
    tables.replace_dates(spark, cfg, "user_base", empty, None, {"events_version": 3})
    assert versions.recorded(spark, cfg, "user_base") == {"events_version": 3}
    tables.replace_dates(spark, cfg, "user_base", empty, [], {"events_version": 4})
    assert versions.recorded(spark, cfg, "user_base") == {"events_version": 4}
