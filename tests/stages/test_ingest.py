import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from tests.helpers import repart, sorted_rows
from lifecycle_recs import tables
from lifecycle_recs.stages.ingest import ingest
from lifecycle_recs.sources import RawSource, read_source

RAW_COLS = ["raw_user_id", "raw_item_id", "raw_event_type", "raw_event_ts", "raw_value", "raw_quantity"]

ROWS = [
    ("u1", "i1", "view", "2026-03-01 10:00:00", "0", "1"),
    ("u1", "i1", "view", "2026-03-01 10:00:00", "0", "1"),          # exact duplicate
    ("u1", "i1", "purchase", "2026-03-01 10:05:00", "19.5", "1"),
    ("u2", "i2", "click", "2026-03-02 00:00:00", None, None),       # null value -> 0
    (None, "i2", "view", "2026-03-02 00:00:00", "0", "1"),          # missing user
    ("  ", "i2", "view", "2026-03-02 00:00:00", "0", "1"),          # blank user
    ("u3", "i3", "view", "yesterday", "0", "1"),                     # bad timestamp
    ("u3", "i3", "hover", "2026-03-02 00:00:00", "0", "1"),         # unknown type
    ("u3", "i3", "purchase", "2026-03-02 00:00:00", "-4", "1"),     # negative
    ("u3", "i3", "purchase", "2026-03-02 00:00:00", "abc", "1"),    # wrong type
    ("u3", "i3", "purchase", "1850-03-02 00:00:00", "1", "1"),      # out of range
    ("u4", None, "purchase", "2026-03-03 12:00:00", "7", "x"),      # bad quantity
    ("u4", None, "purchase", "2026-03-03 12:00:00", "7", "2"),      # no item: ok
]


def raw_source(spark, rows, **kw):
    df = repart(spark.createDataFrame(rows, schema=", ".join(f"{c} string" for c in RAW_COLS)))
    args = dict(name="test", events=df, timestamp_kind="datetime", timestamp_format=None, timezone="UTC",
                event_type_map={}, items=None)
    args.update(kw)
    return RawSource(**args)


def test_ingest_quarantines_dedupes_and_counts_add_up(spark, make_cfg):
    cfg = make_cfg()
    counts = ingest(spark, cfg, raw_source(spark, ROWS))
    assert counts.rows_in == len(ROWS)
    assert counts.quarantined == 8
    assert counts.quarantine_reasons == {"bad_quantity": 1, "bad_timestamp": 1, "bad_value": 1,
                                         "missing_user_id": 2, "negative_value": 1,
                                         "timestamp_out_of_range": 1, "unknown_event_type": 1}
    assert counts.duplicates_in_batch == 1
    assert counts.written == 4
    events = tables.read(spark, cfg, "events")
    quarantine = tables.read(spark, cfg, "events_quarantine")
    # conservation, read back from the tables themselves
    assert events.count() + quarantine.count() + counts.duplicates_in_batch == len(ROWS)
    assert events.where(F.col("user_id") == "u2").first()["value"] == 0.0
    assert events.where(F.col("item_id").isNull()).count() == 1
    assert {r["event_date"] for r in events.select("event_date").collect()} == {
        dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)}
    assert set(events.columns) == set(tables.spec("events").names)


def test_reingest_changes_nothing(spark, make_cfg):
    cfg = make_cfg()
    ingest(spark, cfg, raw_source(spark, ROWS))
    before = sorted_rows(tables.read(spark, cfg, "events"))
    qbefore = tables.read(spark, cfg, "events_quarantine").count()
    again = ingest(spark, cfg, raw_source(spark, ROWS))
    assert again.written == 0
    assert again.already_present == 4
    assert sorted_rows(tables.read(spark, cfg, "events")) == before
    assert tables.read(spark, cfg, "events_quarantine").count() == qbefore
    # a new batch overlapping the old one adds only the new event
    more = ingest(spark, cfg, raw_source(spark, ROWS[:3] + [("u9", "i9", "view", "2026-03-05 01:00:00", "0", "1")]))
    assert (more.written, more.already_present, more.duplicates_in_batch) == (1, 2, 1)


def test_output_constraints_reject_bad_rows(spark, make_cfg):
    cfg = make_cfg()
    ingest(spark, cfg, raw_source(spark, ROWS[:3]))
    bad = tables.read(spark, cfg, "events").limit(1).withColumn("value", F.lit(-1.0)) \
        .withColumn("user_id", F.lit("x"))
    with pytest.raises(Exception, match="(?i)check|constraint"):
        bad.write.format("delta").mode("append").save(tables.path(cfg, "events"))


def test_generic_csv_with_timezone_epoch_and_mapping(spark, make_cfg, tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("customer,sku,action,at,amount\n"
                 "c1,s1,pageview,2026-06-01 01:30:00,\n"        # Berlin summer time = UTC+2
                 "c1,s1,order,2026-06-01 02:30:00,12.5\n"
                 "c2,s2,bogus,2026-06-01 02:30:00,\n")
    cfg = make_cfg(source={"kind": "generic", "name": "test-src", "format": "csv", "path": str(p),
                           "columns": {"user_id": "customer", "item_id": "sku", "event_type": "action",
                                       "event_ts": "at", "value": "amount"},
                           "event_type_map": {"pageview": "view", "order": "purchase"},
                           "timestamp_kind": "datetime", "timezone": "Europe/Berlin"})
    counts = ingest(spark, cfg)
    assert (counts.written, counts.quarantined) == (2, 1)
    ev = tables.read(spark, cfg, "events").orderBy("event_ts").collect()
    assert ev[0]["event_type"] == "view" and ev[1]["event_type"] == "purchase"
    assert ev[0]["event_ts"] == dt.datetime(2026, 5, 31, 23, 30)  # shifted to UTC, crosses a date
    assert ev[0]["event_date"] == dt.date(2026, 5, 31)


def test_generic_json_epoch_seconds_without_item_id(spark, make_cfg, tmp_path):
    p = tmp_path / "orders.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [
        {"uid": "a", "t": 1767225600, "kind": "purchase", "rev": 10.0},
        {"uid": "a", "t": 1767312000.5, "kind": "purchase", "rev": 5.0},
        {"uid": "b", "t": "nan-time", "kind": "purchase", "rev": 1.0},
    ]))
    cfg = make_cfg(source={"kind": "generic", "name": "test-src", "format": "json", "path": str(p),
                           "columns": {"user_id": "uid", "item_id": None, "event_type": "kind",
                                       "event_ts": "t", "value": "rev"},
                           "timestamp_kind": "epoch_seconds"})
    counts = ingest(spark, cfg)
    assert (counts.written, counts.quarantined) == (2, 1)
    ev = tables.read(spark, cfg, "events").orderBy("event_ts").collect()
    assert ev[0]["event_ts"] == dt.datetime(2026, 1, 1) and ev[0]["item_id"] is None


def test_generic_source_names_missing_column(spark, make_cfg, tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    cfg = make_cfg(source={"kind": "generic", "name": "test-src", "format": "csv", "path": str(p),
                           "columns": {"user_id": "a", "event_type": "b", "event_ts": "when"}})
    with pytest.raises(ValueError, match="when"):
        read_source(spark, cfg)


def test_rows_that_differ_in_value_are_distinct_events_on_any_partitioning(spark, make_cfg, tmp_path):
    """Issue 10 item 1: rows that disagree on value were merged, keeping the largest."""
    rows = [("u1", "i1", "purchase", "2026-03-01 10:00:00", v, "1") for v in ("5", "9", "7", "9")] + [
        ("u1", "i1", "purchase", "2026-03-01 10:00:01", "1", "1")]
    kept = []
    for n in (1, 4):
        cfg = make_cfg(lakehouse=str(tmp_path / f"lake{n}"))
        df = repart(spark.createDataFrame(rows, schema=", ".join(f"{c} string" for c in RAW_COLS)), n)
        counts = ingest(spark, cfg, raw_source(spark, rows, events=df))
        assert (counts.written, counts.duplicates_in_batch, counts.quarantined) == (4, 1, 0)
        kept.append(sorted_rows(tables.read(spark, cfg, "events").select("event_ts", "value")))
    assert kept[0] == kept[1]
    assert sorted(r["value"] for r in kept[0]) == [1.0, 5.0, 7.0, 9.0]


def test_events_files_store_event_times_without_a_dictionary(spark, make_cfg):
    import pyarrow.parquet as pq

    cfg = make_cfg()
    # enough rows on one date that a dictionary pays off for the repetitive columns
    rows = [(f"u{i % 3}", f"i{i % 5}", "view", f"2026-03-01 10:{i // 60:02d}:{i % 60:02d}", "0", "1")
            for i in range(600)]
    ingest(spark, cfg, raw_source(spark, rows))
    files = [f.replace("file:", "") for f in tables.read(spark, cfg, "events").inputFiles()]
    assert files
    for f in files:
        meta = pq.ParquetFile(f).metadata
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        enc = {c: "".join(meta.row_group(0).column(names.index(c)).encodings) for c in ("event_ts", "user_id")}
        assert "DICTIONARY" not in enc["event_ts"], f"{f}: event_ts written with a dictionary"
        assert "DICTIONARY" in enc["user_id"]  # the setting is for event_ts alone


def test_a_table_of_another_schema_is_a_clear_error(spark, make_cfg):
    cfg = make_cfg()
    old = tables.spec("events").schema.add("legacy_id", "string")  # as written by another version
    spark.createDataFrame([], old).write.format("delta").partitionBy("event_date").save(tables.path(cfg, "events"))
    with pytest.raises(ValueError, match=r"table 'events'.*unexpected \['legacy_id'\]"):
        ingest(spark, cfg, raw_source(spark, ROWS))
    assert not tables.exists(spark, cfg, "events_quarantine")  # nothing written before the check


def test_source_name_comes_from_the_conf_so_moved_files_are_not_reinserted(spark, make_cfg, tmp_path):
    """It was the folder's name: one folder per night re-inserted every event."""
    rows = "customer,action,at,amount\nc1,purchase,2026-06-01 10:00:00,5\nc2,purchase,2026-06-02 10:00:00,7\n"
    for night in ("night1", "night2"):
        (tmp_path / night).mkdir()
        (tmp_path / night / "log.csv").write_text(rows)
    src = {"kind": "generic", "name": "orders", "format": "csv",
           "columns": {"user_id": "customer", "event_type": "action", "event_ts": "at", "value": "amount"}}
    cfg = make_cfg(source={**src, "path": str(tmp_path / "night1")})
    first = ingest(spark, cfg)
    again = ingest(spark, make_cfg(source={**src, "path": str(tmp_path / "night2")}))
    assert (first.written, again.written, again.already_present) == (2, 0, 2)
    assert {r["source"] for r in tables.read(spark, cfg, "events").collect()} == {"orders"}
    unnamed = make_cfg(source={k: v for k, v in src.items() if k != "name"} | {"path": str(tmp_path / "night1")})
    with pytest.raises(ValueError, match="source.name must be set"):
        read_source(spark, unnamed)


def test_events_later_than_the_run_are_quarantined(spark, make_cfg):
    """An event dated 2099 passed validation (max 2100) and became D."""
    cfg = make_cfg()
    future = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(days=3)
    rows = ROWS[:2] + [("u8", "i1", "view", "2099-01-01 00:00:00", "0", "1"),
                       ("u8", "i1", "view", future.strftime("%Y-%m-%d %H:%M:%S"), "0", "1")]
    counts = ingest(spark, cfg, raw_source(spark, rows))
    assert counts.quarantine_reasons.get("timestamp_in_future") == 2
    assert tables.last_partition_date(spark, cfg, "events") < dt.date(2030, 1, 1)


def test_table_paths_are_quoted_in_sql():
    """Paths went unescaped into ALTER TABLE. (Delta's own table builder rejects a path
    with a backquote before our SQL runs, so this is checked on the quoting itself.)"""
    assert tables.quote_identifier("/lake/a`b") == "`/lake/a``b`"
    assert tables.quote_identifier("/lake/events") == "`/lake/events`"
