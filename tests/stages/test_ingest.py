import datetime as dt
import json
from dataclasses import replace

import pytest
from pyspark.sql import functions as F

from lifecycle_recs.config import IngestConf
from lifecycle_recs.data.sources import read_source
from lifecycle_recs.io import tables
from lifecycle_recs.stages.ingest import (
    ParsingSettingsChanged,
    QuarantineRateExceeded,
    ingest,
    ingest_source,
)
from tests import helpers
from tests.helpers import deliver, repart, same_rows, sorted_rows, stream_cfg

RAW_COLS = [
    "raw_user_id",
    "raw_item_id",
    "raw_event_type",
    "raw_event_ts",
    "raw_value",
    "raw_quantity",
]

ROWS = [
    ("u1", "i1", "view", "2026-03-01 10:00:00", "0", "1"),
    ("u1", "i1", "view", "2026-03-01 10:00:00", "0", "1"),  # exact duplicate
    ("u1", "i1", "purchase", "2026-03-01 10:05:00", "19.5", "1"),
    ("u2", "i2", "click", "2026-03-02 00:00:00", None, None),  # null value -> 0
    (None, "i2", "view", "2026-03-02 00:00:00", "0", "1"),  # missing user
    ("  ", "i2", "view", "2026-03-02 00:00:00", "0", "1"),  # blank user
    ("u3", "i3", "view", "yesterday", "0", "1"),  # bad timestamp
    ("u3", "i3", "hover", "2026-03-02 00:00:00", "0", "1"),  # unknown type
    ("u3", "i3", "purchase", "2026-03-02 00:00:00", "-4", "1"),  # negative
    ("u3", "i3", "purchase", "2026-03-02 00:00:00", "abc", "1"),  # wrong type
    ("u3", "i3", "purchase", "1850-03-02 00:00:00", "1", "1"),  # out of range
    ("u4", None, "purchase", "2026-03-03 12:00:00", "7", "x"),  # bad quantity
    ("u4", None, "purchase", "2026-03-03 12:00:00", "7", "2"),  # no item: ok
]


def raw_source(spark, rows, **kw):
    df = repart(spark.createDataFrame(rows, schema=", ".join(f"{c} string" for c in RAW_COLS)))
    return helpers.raw_source(df, **kw)


@pytest.mark.slow
def test_ingest_quarantines_dedupes_and_counts_add_up(spark, make_cfg):
    cfg = make_cfg()
    counts = ingest(spark, cfg, raw_source(spark, ROWS))
    assert counts.rows_in == len(ROWS)
    assert counts.quarantined == 8
    assert counts.quarantine_reasons == {
        "bad_quantity": 1,
        "bad_timestamp": 1,
        "bad_value": 1,
        "missing_user_id": 2,
        "negative_value": 1,
        "timestamp_out_of_range": 1,
        "unknown_event_type": 1,
    }
    assert counts.duplicates_in_batch == 1
    assert counts.written == 4
    events = tables.read(spark, cfg, "events")
    quarantine = tables.read(spark, cfg, "events_quarantine")
    # conservation, read back from the tables themselves
    assert events.count() + quarantine.count() + counts.duplicates_in_batch == len(ROWS)
    assert events.where(F.col("user_id") == "u2").first()["value"] == 0.0
    assert events.where(F.col("item_id").isNull()).count() == 1
    assert {r["event_date"] for r in events.select("event_date").collect()} == {
        dt.date(2026, 3, 1),
        dt.date(2026, 3, 2),
        dt.date(2026, 3, 3),
    }
    assert set(events.columns) == set(tables.spec("events").names)


@pytest.mark.slow
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
    more = ingest(
        spark,
        cfg,
        raw_source(spark, ROWS[:3] + [("u9", "i9", "view", "2026-03-05 01:00:00", "0", "1")]),
    )
    assert (more.written, more.already_present, more.duplicates_in_batch) == (1, 2, 1)


@pytest.mark.slow
def test_output_constraints_reject_bad_rows(spark, make_cfg):
    cfg = make_cfg()
    ingest(spark, cfg, raw_source(spark, ROWS[:3]))
    bad = (
        tables.read(spark, cfg, "events")
        .limit(1)
        .withColumn("value", F.lit(-1.0))
        .withColumn("user_id", F.lit("x"))
    )
    with pytest.raises(Exception, match="(?i)check|constraint"):
        bad.write.format("delta").mode("append").save(tables.path(cfg, "events"))


@pytest.mark.slow
def test_generic_csv_with_timezone_epoch_and_mapping(spark, make_cfg, tmp_path):
    p = tmp_path / "log.csv"
    p.write_text(
        "customer,sku,action,at,amount\nc1,s1,pageview,2026-06-01 "
        "01:30:00,\n"  # Berlin summer time = UTC+2
        "c1,s1,order,2026-06-01 02:30:00,12.5\nc2,s2,bogus,2026-06-01 02:30:00,\n"
    )
    cfg = make_cfg(
        source={
            "kind": "generic",
            "name": "test-src",
            "format": "csv",
            "path": str(p),
            "columns": {
                "user_id": "customer",
                "item_id": "sku",
                "event_type": "action",
                "event_ts": "at",
                "value": "amount",
            },
            "event_type_map": {"pageview": "view", "order": "purchase"},
            "timestamp_kind": "datetime",
            "timezone": "Europe/Berlin",
        }
    )
    counts = ingest(spark, cfg)
    assert (counts.written, counts.quarantined) == (2, 1)
    ev = tables.read(spark, cfg, "events").orderBy("event_ts").collect()
    assert ev[0]["event_type"] == "view" and ev[1]["event_type"] == "purchase"
    assert ev[0]["event_ts"] == dt.datetime(2026, 5, 31, 23, 30)  # shifted to UTC, crosses a date
    assert ev[0]["event_date"] == dt.date(2026, 5, 31)


@pytest.mark.slow
def test_a_local_time_in_the_repeated_daylight_saving_hour_is_quarantined(
    spark, make_cfg, tmp_path
):
    """02:30 on 2026-10-25 happens twice in Europe/Berlin: which instant it was cannot be
    known, and two such events (one each pass) collapsed into one. The hour skipped in spring
    and a time with its own offset are not ambiguous."""
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "log.csv").write_text(
        "customer,sku,action,at,amount\n"
        "c1,s1,order,2026-10-25 02:30:00,5\n"
        "c1,s1,order,2026-10-25 01:59:59,5\n"
        "c1,s1,order,2026-10-25 03:00:00,5\n"
        "c1,s1,order,2026-10-25 02:30:00+01:00,5\n"
        "c1,s1,order,2026-03-29 04:00:00,5\n"
    )
    src = {
        "kind": "generic",
        "name": "berlin",
        "format": "csv",
        "path": str(tmp_path / "o"),
        "columns": {"user_id": "customer", "item_id": "sku", "event_type": "action",
                    "event_ts": "at", "value": "amount"},
        "event_type_map": {"order": "purchase"},
        "timezone": "Europe/Berlin",
    }  # fmt: skip
    cfg = make_cfg(source=src)
    counts = ingest(spark, cfg)
    assert counts.quarantine_reasons == {"ambiguous_local_time": 1}
    bad = tables.read(spark, cfg, "events_quarantine").first()
    assert bad["raw_event_ts"] == "2026-10-25 02:30:00"
    assert tables.read(spark, cfg, "events").count() == 4


@pytest.mark.slow
def test_a_date_only_source_keeps_its_dates_in_any_time_zone(spark, make_cfg, tmp_path):
    """A date names a day: with source.timezone Europe/Berlin it was shifted to 22:00 UTC of
    the day before, moving every event (and the night's D) a day back."""
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "orders.csv").write_text(
        "customer,kind,day,amount,qty\nc1,purchase,2026-06-01,30.0,1\nc2,purchase,2026-01-15,5,1\n"
    )
    cfg = make_cfg(source={**ORDERS_SRC, "path": str(tmp_path / "o"), "timezone": "Europe/Berlin"})
    ingest(spark, cfg)
    ev = tables.read(spark, cfg, "events").orderBy("event_ts").collect()
    assert [(r["event_date"], r["event_ts"]) for r in ev] == [
        (dt.date(2026, 1, 15), dt.datetime(2026, 1, 15)),
        (dt.date(2026, 6, 1), dt.datetime(2026, 6, 1)),
    ]


@pytest.mark.slow
def test_generic_json_epoch_seconds_without_item_id(spark, make_cfg, tmp_path):
    p = tmp_path / "orders.jsonl"
    p.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"uid": "a", "t": 1767225600, "kind": "purchase", "rev": 10.0},
                {"uid": "a", "t": 1767312000.5, "kind": "purchase", "rev": 5.0},
                {"uid": "b", "t": "nan-time", "kind": "purchase", "rev": 1.0},
            ]
        )
    )
    cfg = make_cfg(
        source={
            "kind": "generic",
            "name": "test-src",
            "format": "json",
            "path": str(p),
            "columns": {
                "user_id": "uid",
                "item_id": None,
                "event_type": "kind",
                "event_ts": "t",
                "value": "rev",
            },
            "timestamp_kind": "epoch_seconds",
        }
    )
    counts = ingest(spark, cfg)
    assert (counts.written, counts.quarantined) == (2, 1)
    ev = tables.read(spark, cfg, "events").orderBy("event_ts").collect()
    assert ev[0]["event_ts"] == dt.datetime(2026, 1, 1) and ev[0]["item_id"] is None


def test_generic_source_names_missing_column(spark, make_cfg, tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    cfg = make_cfg(
        source={
            "kind": "generic",
            "name": "test-src",
            "format": "csv",
            "path": str(p),
            "columns": {"user_id": "a", "event_type": "b", "event_ts": "when"},
        }
    )
    with pytest.raises(ValueError, match="when"):
        read_source(spark, cfg)


@pytest.mark.slow
def test_rows_that_differ_in_value_are_distinct_events_on_any_partitioning(
    spark, make_cfg, tmp_path
):
    """Rows that disagree on value were merged, keeping the largest."""
    rows = [
        ("u1", "i1", "purchase", "2026-03-01 10:00:00", v, "1") for v in ("5", "9", "7", "9")
    ] + [("u1", "i1", "purchase", "2026-03-01 10:00:01", "1", "1")]
    kept = []
    for n in (1, 4):
        cfg = make_cfg(lakehouse=str(tmp_path / f"lake{n}"))
        df = repart(
            spark.createDataFrame(rows, schema=", ".join(f"{c} string" for c in RAW_COLS)), n
        )
        counts = ingest(spark, cfg, raw_source(spark, rows, events=df))
        assert (counts.written, counts.duplicates_in_batch, counts.quarantined) == (4, 1, 0)
        kept.append(sorted_rows(tables.read(spark, cfg, "events").select("event_ts", "value")))
    assert kept[0] == kept[1]
    assert sorted(r["value"] for r in kept[0]) == [1.0, 5.0, 7.0, 9.0]


@pytest.mark.slow
def test_events_files_store_event_times_without_a_dictionary(spark, make_cfg):
    import pyarrow.parquet as pq

    cfg = make_cfg()
    # enough rows on one date that a dictionary pays off for the repetitive columns
    rows = [
        (f"u{i % 3}", f"i{i % 5}", "view", f"2026-03-01 10:{i // 60:02d}:{i % 60:02d}", "0", "1")
        for i in range(600)
    ]
    ingest(spark, cfg, raw_source(spark, rows))
    files = [f.replace("file:", "") for f in tables.read(spark, cfg, "events").inputFiles()]
    assert files
    for f in files:
        meta = pq.ParquetFile(f).metadata
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        enc = {
            c: "".join(meta.row_group(0).column(names.index(c)).encodings)
            for c in ("event_ts", "user_id")
        }
        assert "DICTIONARY" not in enc["event_ts"], f"{f}: event_ts written with a dictionary"
        assert "DICTIONARY" in enc["user_id"]  # the setting is for event_ts alone


def test_a_table_of_another_schema_is_a_clear_error(spark, make_cfg):
    cfg = make_cfg()
    old = tables.spec("events").schema.add("legacy_id", "string")  # as written by another version
    spark.createDataFrame([], old).write.format("delta").partitionBy("event_date").save(
        tables.path(cfg, "events")
    )
    with pytest.raises(ValueError, match=r"table 'events'.*unexpected \['legacy_id'\]"):
        ingest(spark, cfg, raw_source(spark, ROWS))
    assert not tables.exists(spark, cfg, "events_quarantine")  # nothing written before the check


@pytest.mark.slow
def test_source_name_comes_from_the_conf_so_moved_files_are_not_reinserted(
    spark, make_cfg, tmp_path
):
    """It was the folder's name: one folder per night re-inserted every event."""
    rows = (
        "customer,action,at,amount\n"
        "c1,purchase,2026-06-01 10:00:00,5\n"
        "c2,purchase,2026-06-02 10:00:00,7\n"
    )
    for night in ("night1", "night2"):
        (tmp_path / night).mkdir()
        (tmp_path / night / "log.csv").write_text(rows)
    src = {
        "kind": "generic",
        "name": "orders",
        "format": "csv",
        "columns": {
            "user_id": "customer",
            "event_type": "action",
            "event_ts": "at",
            "value": "amount",
        },
    }
    cfg = make_cfg(source={**src, "path": str(tmp_path / "night1")})
    first = ingest(spark, cfg)
    again = ingest(spark, make_cfg(source={**src, "path": str(tmp_path / "night2")}))
    assert (first.written, again.written, again.already_present) == (2, 0, 2)
    assert {r["source"] for r in tables.read(spark, cfg, "events").collect()} == {"orders"}
    unnamed = make_cfg(
        source={k: v for k, v in src.items() if k != "name"} | {"path": str(tmp_path / "night1")}
    )
    with pytest.raises(ValueError, match="source.name must be set"):
        read_source(spark, unnamed)


@pytest.mark.slow
def test_events_later_than_the_run_are_quarantined(spark, make_cfg):
    """An event dated 2099 passed validation (max 2100) and became D."""
    cfg = make_cfg()
    future = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(days=3)
    rows = ROWS[:2] + [
        ("u8", "i1", "view", "2099-01-01 00:00:00", "0", "1"),
        ("u8", "i1", "view", future.strftime("%Y-%m-%d %H:%M:%S"), "0", "1"),
    ]
    counts = ingest(spark, cfg, raw_source(spark, rows))
    assert counts.quarantine_reasons.get("timestamp_in_future") == 2
    assert tables.last_partition_date(spark, cfg, "events") < dt.date(2030, 1, 1)


def test_table_paths_are_quoted_in_sql():
    """Paths went unescaped into ALTER TABLE. (Delta's own table builder rejects a path
    with a backquote before our SQL runs, so this is checked on the quoting itself.)"""
    assert tables.quote_identifier("/lake/a`b") == "`/lake/a``b`"
    assert tables.quote_identifier("/lake/events") == "`/lake/events`"


# ---- nothing lost, nothing corrupted ------------------------------------------

ORDERS_SRC = {
    "kind": "generic",
    "name": "orders",
    "format": "csv",
    "timestamp_kind": "date",
    "columns": {
        "user_id": "customer",
        "event_type": "kind",
        "event_ts": "day",
        "value": "amount",
        "quantity": "qty",
    },
}


def _no_time(rows, drop=("ingested_at",)):
    return sorted(
        (tuple((k, v) for k, v in sorted(r.items()) if k not in drop) for r in rows), key=repr
    )


@pytest.mark.slow
def test_two_same_day_orders_of_one_customer_are_two_events(spark, make_cfg, tmp_path):
    """Item 1: an order log with day-precision dates and no item lost the smaller of two orders."""
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "orders.csv").write_text(
        "customer,kind,day,amount,qty\nc1,purchase,2026-06-01,30.0,1\nc1,purchase,2026-06-01,12.5,1\nc1,purchase,2026-06-01,12.5,2\nc1,purchase,2026-06-01,12.5,2\n"
    )
    cfg = make_cfg(source={**ORDERS_SRC, "path": str(tmp_path / "o")})
    counts = ingest(spark, cfg)
    assert (counts.rows_in, counts.written, counts.duplicates_in_batch) == (4, 3, 1)
    ev = tables.read(spark, cfg, "events")
    assert sorted((r["value"], r["quantity"]) for r in ev.collect()) == [
        (12.5, 1),
        (12.5, 2),
        (30.0, 1),
    ]
    assert ev.agg(F.sum("value")).first()[0] == 55.0  # no revenue vanishes


def _write_batches(tmp_path, name, batches):
    """Each batch: {file name: csv text} written into its own folder."""
    dirs = []
    for i, files in enumerate(batches):
        d = tmp_path / f"{name}{i}"
        d.mkdir()
        for fname, text in files.items():
            (d / fname).write_text(text)
        dirs.append(d)
    return dirs


@pytest.mark.slow
def test_stored_result_does_not_depend_on_how_the_input_arrived(spark, make_cfg, tmp_path):
    """A re-sent event id kept the first value on a later night but the largest in a
    rebuild; identical bad rows of two files were kept twice by a rebuild but once by
    nightly runs."""
    header = "id,customer,kind,at,amount\n"
    a = (
        header + "e1,c1,purchase,2026-06-01 10:00:00,5\ne2,c2,purchase,2026-06-01 11:00:00,7\n"
        "x,c9,purchase,not-a-time,1\n"
    )
    b = (
        header + "e1,c1,purchase,2026-06-01 10:00:00,9\ne3,c3,view,2026-06-02 09:00:00,0\n"
        "x,c9,purchase,not-a-time,1\n"
    )
    src = {
        "kind": "generic",
        "name": "shop",
        "format": "csv",
        "columns": {
            "event_id": "id",
            "user_id": "customer",
            "event_type": "kind",
            "event_ts": "at",
            "value": "amount",
        },
    }
    arrivals = {
        "one_batch": [{"a.csv": a, "b.csv": b}],
        "a_then_b": [{"a.csv": a}, {"b.csv": b}],
        "b_then_a": [{"b.csv": b}, {"a.csv": a}],
    }
    results = {}
    for name, batches in arrivals.items():
        cfg = make_cfg(lakehouse=str(tmp_path / f"lake_{name}"))
        for d in _write_batches(tmp_path, name, batches):
            ingest(spark, make_cfg(lakehouse=cfg.lakehouse, source={**src, "path": str(d)}))
        results[name] = (
            _no_time(sorted_rows(tables.read(spark, cfg, "events"))),
            _no_time(sorted_rows(tables.read(spark, cfg, "events_quarantine"))),
        )
    assert results["one_batch"] == results["a_then_b"] == results["b_then_a"]
    events, quarantine = results["one_batch"]
    assert sorted(dict(r)["value"] for r in events) == [
        0.0,
        7.0,
        9.0,
    ]  # e1: the larger row, any order
    assert sorted(dict(r)["source_file"] for r in quarantine) == ["a.csv", "b.csv"]


@pytest.mark.slow
def test_an_event_id_column_with_a_blank_id_is_quarantined(spark, make_cfg, tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "x.csv").write_text(
        "id,customer,kind,at\n,c1,view,2026-06-01 10:00:00\ne1,c1,view,2026-06-01 10:00:00\n"
    )
    cfg = make_cfg(
        source={
            "kind": "generic",
            "name": "s",
            "format": "csv",
            "path": str(tmp_path / "e"),
            "columns": {
                "event_id": "id",
                "user_id": "customer",
                "event_type": "kind",
                "event_ts": "at",
            },
        }
    )
    counts = ingest(spark, cfg)
    assert counts.quarantine_reasons == {"missing_event_id": 1} and counts.written == 1


def test_counts_are_measured_independently_so_the_check_can_fail():
    """Item 2: duplicates_in_batch was the remainder, so the reconciliation held by algebra."""
    from lifecycle_recs.data.validation import IngestCounts

    ok = IngestCounts(
        rows_in=10,
        valid=8,
        quarantined=2,
        quarantine_reasons={"bad_value": 2},
        distinct=7,
        duplicates_in_batch=1,
        new=5,
        already_present=2,
        written=5,
    )
    ok.check()
    for field, wrong in [
        ("valid", 9),
        ("distinct", 6),
        ("new", 4),
        ("written", 6),
        ("quarantine_reasons", {}),
    ]:
        bad = IngestCounts(**{**ok.__dict__, field: wrong})
        with pytest.raises(RuntimeError, match="do not add up"):
            bad.check()


@pytest.mark.slow
def test_the_source_is_read_from_the_file_list_taken_when_it_was_opened(spark, make_cfg, tmp_path):
    """Item 2: a file landing mid-run was absorbed by a later scan of the folder."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text(
        "customer,kind,day,amount,qty\nc1,purchase,2026-06-01,3,1\n"
    )
    cfg = make_cfg(source={**ORDERS_SRC, "path": str(tmp_path / "in")})
    raw = read_source(spark, cfg)
    (tmp_path / "in" / "late.csv").write_text(
        "customer,kind,day,amount,qty\nc2,purchase,2026-06-01,4,1\n"
    )
    counts = ingest(spark, cfg, raw)
    assert (counts.files, counts.rows_in, counts.written) == (1, 1, 1)
    assert [r["user_id"] for r in tables.read(spark, cfg, "events").collect()] == ["c1"]


def test_a_reordered_csv_file_fails_naming_the_column(spark, make_cfg, tmp_path):
    """Item 4: CSV columns were matched by position, so a reordered file swapped them."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text(
        "customer,kind,day,amount,qty\nc1,purchase,2026-06-01,3,1\n"
    )
    (tmp_path / "in" / "b.csv").write_text(
        "customer,kind,day,qty,amount\nc2,purchase,2026-06-01,1,4\n"
    )
    cfg = make_cfg(source={**ORDERS_SRC, "path": str(tmp_path / "in")})
    with pytest.raises(Exception, match="(?s)(amount|qty).*b.csv|b.csv.*(amount|qty)"):
        ingest(spark, cfg)
    assert tables.read(spark, cfg, "events").count() == 0


def test_a_misnamed_catalog_column_fails_instead_of_nulling_titles(spark, make_cfg, tmp_path):
    """Item 4: a typo in items_columns nulled every title and was upserted over the good catalog."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text(
        "customer,kind,day,amount,qty\nc1,purchase,2026-06-01,3,1\n"
    )
    (tmp_path / "items.csv").write_text("sku,name\ns1,Shoe\n")
    cfg = make_cfg(
        source={
            **ORDERS_SRC,
            "path": str(tmp_path / "in"),
            "items_path": str(tmp_path / "items.csv"),
            "items_format": "csv",
            "items_columns": {"item_id": "sku", "title": "nmae"},
        }
    )
    with pytest.raises(ValueError, match="nmae"):
        read_source(spark, cfg)


@pytest.mark.slow
def test_too_many_bad_rows_fail_the_run_before_anything_is_committed(spark, make_cfg):
    """Item 13: the quarantine-rate expectation."""
    from lifecycle_recs.stages.ingest import QuarantineRateExceeded

    cfg = make_cfg(validation={"on_quarantine_excess": "fail", "max_quarantine_fraction": 0.5})
    with pytest.raises(QuarantineRateExceeded, match=r"8 of 13 rows .*missing_user_id"):
        ingest(spark, cfg, raw_source(spark, ROWS))
    assert tables.read(spark, cfg, "events").count() == 0
    assert tables.read(spark, cfg, "events_quarantine").count() == 0
    ok = ingest(
        spark,
        make_cfg(validation={"on_quarantine_excess": "fail", "max_quarantine_fraction": 0.7}),
        raw_source(spark, ROWS),
    )
    assert ok.quarantined == 8


@pytest.mark.slow
def test_catalog_duplicates_resolve_the_same_way_and_a_bad_price_is_counted(
    spark, make_cfg, tmp_path
):
    """Item 14: dropDuplicates kept an arbitrary title; one bad price failed the whole run under
    ANSI."""
    items = [
        ("i1", "Old title", "Shoes", None, "10.0", "2020"),
        ("i1", "Better title", "Shoes", "desc", "12.0", "2020"),
        ("i2", "Hat", "Hats", None, "cheap", "2021"),
        ("i3", "Sock", None, None, "-3", None),
        (" ", "No id", None, None, "1", None),
    ]
    cols = (
        "item_id string, title string, category string, description string, price string, "
        "year string"
    )
    stored = []
    for n, order in ((1, items), (3, items[::-1])):
        cfg = make_cfg(lakehouse=str(tmp_path / f"lake{n}"))
        counts = ingest(
            spark,
            cfg,
            raw_source(spark, ROWS[:3], items=repart(spark.createDataFrame(order, cols), n)),
        )
        assert (counts.items_in, counts.items_missing_id, counts.items_bad_price) == (5, 1, 2)
        stored.append(sorted_rows(tables.read(spark, cfg, "items").drop("updated_at")))
    assert stored[0] == stored[1]
    by_id = {r["item_id"]: r for r in stored[0]}
    assert by_id["i1"]["title"] == "Better title" and by_id["i1"]["price"] == 12.0
    assert by_id["i2"]["price"] is None and by_id["i3"]["price"] is None and len(by_id) == 3


@pytest.mark.slow
def test_two_first_ingests_released_together_store_each_event_once(spark, make_cfg):
    """Item 8: merge_new blind-appended into an empty table, so two first ingests that both saw it
    empty each appended every event (Delta never flags conflicting blind appends)."""
    import threading

    cfg = make_cfg()
    barrier = threading.Barrier(2, timeout=600)  # generous: a loaded CI machine is slow

    def hold(table):
        if table == "events":
            barrier.wait()  # both ingests have counted and are about to commit

    tables.BEFORE_COMMIT_HOOKS.append(hold)
    outcomes = []

    def run():
        try:
            outcomes.append(ingest(spark, cfg, raw_source(spark, ROWS[:4])))
        except Exception as e:
            outcomes.append(e)
            barrier.abort()  # do not leave the other writer waiting

    try:
        threads = [threading.Thread(target=run) for _ in range(2)]
        [t.start() for t in threads]
        [t.join(300) for t in threads]
    finally:
        tables.BEFORE_COMMIT_HOOKS.remove(hold)
    ok = [o for o in outcomes if not isinstance(o, Exception)]
    failed = [o for o in outcomes if isinstance(o, Exception)]
    assert len(ok) >= 1 and len(outcomes) == 2, outcomes
    for e in failed:  # the loser gets Delta's conflict error, naming it
        assert "Concurrent" in type(e).__name__ + str(e) or "conflict" in str(e).lower(), e
    assert tables.read(spark, cfg, "events").count() == 3
    assert tables.read(spark, cfg, "events").distinct().count() == 3


@pytest.mark.slow
def test_naive_times_are_shifted_once_and_times_with_an_offset_not_again(spark, make_cfg, tmp_path):
    """Item 12: a time with an offset was shifted twice when the conf time zone was not UTC."""
    (tmp_path / "log.csv").write_text(
        "customer,action,at\nc1,view,2026-06-01T10:00:00+02:00\nc2,view,2026-06-01 "
        "10:00:00\nc3,view,2026-06-01T08:00:00Z\n"
    )
    cfg = make_cfg(
        source={
            "kind": "generic",
            "name": "t",
            "format": "csv",
            "path": str(tmp_path / "log.csv"),
            "columns": {"user_id": "customer", "event_type": "action", "event_ts": "at"},
            "timezone": "Europe/Berlin",
        }
    )
    ingest(spark, cfg)
    got = {r["user_id"]: r["event_ts"] for r in tables.read(spark, cfg, "events").collect()}
    assert got == {
        "c1": dt.datetime(2026, 6, 1, 8),
        "c2": dt.datetime(2026, 6, 1, 8),
        "c3": dt.datetime(2026, 6, 1, 8),
    }


# ---- file sources as a stream: each night reads only the new files ------------------------

DAY1 = [
    ("u1", "i1", "view", "2026-06-01 10:00:00", "0"),
    ("u1", "i1", "order", "2026-06-01 10:05:00", "12.5"),
    ("u2", "i2", "view", "2026-06-01 11:00:00", "0"),
    ("u2", "i2", "view", "2026-06-01 11:00:00", "0"),  # an exact duplicate
    ("", "i3", "view", "2026-06-01 12:00:00", "0"),  # no user: quarantined
]
DAY2 = [
    ("u2", "i2", "view", "2026-06-01 11:00:00", "0"),  # re-sent from day 1
    ("u3", "i1", "order", "2026-06-02 09:00:00", "30"),
    ("u1", "i4", "view", "2026-06-02 23:59:59", "0"),
]
DAY3 = [("u4", "i2", "view", "2026-06-03 08:00:00", "0"), ("u4", "i2", "teleport", "x", "0")]


def _stored(spark, cfg):
    ev = tables.read(spark, cfg, "events").drop("ingested_at")
    q = tables.read(spark, cfg, "events_quarantine").drop("ingested_at")
    return ev, q


@pytest.fixture
def landing(make_cfg, tmp_path):
    """An empty landing folder and the conf of a CSV source reading it, one file a batch."""
    folder = tmp_path / "landing"
    return folder, stream_cfg(make_cfg, folder)


@pytest.mark.slow
def test_each_night_reads_only_its_new_files_and_lands_what_one_read_of_all_of_them_does(
    spark, landing, tmp_path
):
    landing, cfg = landing
    deliver(landing, "day1.csv", DAY1)
    first = ingest_source(spark, cfg)
    assert (first.files, first.rows_in, first.quarantined, first.written) == (1, 5, 1, 3)
    deliver(landing, "day2.csv", DAY2)
    deliver(landing, "day3.csv", DAY3)
    second = ingest_source(spark, cfg)
    assert (second.files, second.batches, second.rows_in) == (2, 2, 5)  # day 1 is not read again
    assert (second.already_present, second.written, second.quarantined) == (1, 3, 1)
    events_version = tables.versions(spark, cfg, ["events", "events_quarantine"])
    again = ingest_source(spark, cfg)  # nothing new arrived
    assert (again.files, again.rows_in, again.written) == (0, 0, 0)
    assert tables.versions(spark, cfg, ["events", "events_quarantine"]) == events_version
    # the oracle: every file read at once, by the stream and by a whole read
    at_once = replace(cfg, lakehouse=str(tmp_path / "once"))
    whole = replace(cfg, lakehouse=str(tmp_path / "whole"), ingest=IngestConf(incremental=False))
    ingest_source(spark, at_once)
    ingest_source(spark, whole)
    nightly, once, full = _stored(spark, cfg), _stored(spark, at_once), _stored(spark, whole)
    assert same_rows(nightly[0], full[0]) and same_rows(once[0], full[0])
    assert same_rows(nightly[1], full[1]) and same_rows(once[1], full[1])
    assert nightly[0].count() == 6 and nightly[1].count() == 2


@pytest.mark.slow
def test_a_replayed_micro_batch_commits_nothing_twice(spark, landing, tmp_path):
    from tests.helpers import CrashAfterCommit, InjectedCrash

    landing, cfg = landing
    deliver(landing, "day1.csv", DAY1)
    with CrashAfterCommit("events"), pytest.raises(InjectedCrash):
        ingest_source(spark, cfg)  # the batch's writes committed, the stream's own commit not
    committed = tables.versions(spark, cfg, ["events", "events_quarantine"])
    replay = ingest_source(spark, cfg)  # the stream replays the batch: Delta skips its writes
    assert replay.batches == 1 and replay.written == 0 and replay.already_present == 3
    assert tables.versions(spark, cfg, ["events", "events_quarantine"]) == committed
    clean = replace(cfg, lakehouse=str(tmp_path / "clean"))
    ingest_source(spark, clean)
    a, b = _stored(spark, cfg), _stored(spark, clean)
    assert same_rows(a[0], b[0]) and same_rows(a[1], b[1])


@pytest.mark.slow
def test_a_changed_parsing_setting_is_refused_and_a_restatement_keeps_each_event_once(
    spark, landing, tmp_path
):
    landing, cfg = landing
    deliver(landing, "day1.csv", DAY1)
    deliver(landing, "day2.csv", DAY2)
    ingest_source(spark, cfg)
    before = tables.read(spark, cfg, "events").count()
    berlin = replace(cfg, source=replace(cfg.source, timezone="Europe/Berlin"))
    deliver(landing, "day3.csv", DAY3)
    with pytest.raises(ParsingSettingsChanged, match=r"source\.timezone: 'UTC' -> 'Europe/Berlin'"):
        ingest_source(spark, berlin)
    assert tables.read(spark, cfg, "events").count() == before  # nothing landed
    restated = replace(berlin, ingest=replace(berlin.ingest, restate=True))
    counts = ingest_source(spark, restated)
    events = tables.read(spark, cfg, "events")
    assert counts.restated and counts.files == 3
    assert events.count() == counts.stored_after == before + 1  # day 3's one valid event, once
    assert events.where(F.col("user_id") == "u3").first()["event_ts"] == dt.datetime(2026, 6, 2, 7)
    # the next night runs under the new settings and reads only what is new
    deliver(landing, "day4.csv", [("u5", "i1", "view", "2026-06-04 10:00:00", "0")])
    nxt = ingest_source(spark, berlin)
    assert (nxt.files, nxt.written) == (1, 1)


@pytest.mark.slow
def test_a_wholly_malformed_new_file_fails_however_long_the_history(spark, landing):
    landing, cfg = landing
    cfg = replace(cfg, validation=replace(cfg.validation, on_quarantine_excess="fail"))
    good = [(f"u{i}", "i1", "view", f"2026-06-01 10:{i % 60:02d}:00", "0") for i in range(60)]
    deliver(landing, "day1.csv", good)
    ingest_source(spark, cfg)
    deliver(landing, "day2.csv", [("u1", "i1", "view", "not a time", "0")] * 3)
    with pytest.raises(QuarantineRateExceeded, match="3 of 3 rows"):
        ingest_source(spark, cfg)


@pytest.mark.slow
def test_same_named_files_in_two_date_folders_keep_both_identical_bad_rows(
    spark, landing, tmp_path
):
    """A landing zone of date folders (``day=...``, read as partitions) names its files alike:
    the file's path below the source folder, not its name alone, tells their rows apart."""
    landing, cfg = landing
    bad = ("", "i9", "view", "2026-06-01 12:00:00", "0")  # no user: quarantined
    deliver(landing / "day=2026-06-01", "part-0.csv", [DAY1[0], bad])
    deliver(landing / "day=2026-06-02", "part-0.csv", [DAY2[1], bad])
    counts = ingest_source(spark, cfg)
    whole = replace(cfg, lakehouse=str(tmp_path / "whole"), ingest=IngestConf(incremental=False))
    counts_whole = ingest_source(spark, whole)
    for c, conf in ((counts, cfg), (counts_whole, whole)):
        assert (c.files, c.rows_in, c.quarantined) == (2, 4, 2)
        q = tables.read(spark, conf, "events_quarantine")
        assert sorted(r[0] for r in q.select("source_file").collect()) == [
            "day=2026-06-01/part-0.csv",
            "day=2026-06-02/part-0.csv",
        ]


@pytest.mark.slow
def test_an_event_older_than_the_allowed_lateness_of_its_file_is_quarantined_too_late(
    spark, make_cfg, tmp_path
):
    """The bound is the newest sound event of the event's own file: a night that reads the
    files one at a time and a read of all of them at once quarantine the same rows."""
    folder = tmp_path / "landing"
    late = ("u5", "i1", "view", "2026-05-29 10:00:00", "0")  # 3 days before its file's newest
    deliver(folder, "day1.csv", DAY1)
    deliver(folder, "day2.csv", [*DAY2, late, ("u5", "i1", "view", "2099-01-01 00:00:00", "0")])
    bound = {"validation": {"on_quarantine_excess": "warn", "allowed_lateness_days": 2}}
    nightly = replace(stream_cfg(make_cfg, folder, **bound), lakehouse=str(tmp_path / "a"))
    ingest_source(spark, nightly)  # each file its own batch
    once = replace(nightly, lakehouse=str(tmp_path / "b"), ingest=IngestConf(incremental=False))
    counts = ingest_source(spark, once)
    assert counts.quarantine_reasons["too_late"] == 1
    assert counts.quarantine_reasons["timestamp_in_future"] == 1  # does not move the bound
    a, b = _stored(spark, nightly), _stored(spark, once)
    assert same_rows(a[0], b[0]) and same_rows(a[1], b[1])
    late_rows = a[1].where(F.col("reason") == "too_late").collect()
    assert [r["raw_user_id"] for r in late_rows] == ["u5"]
