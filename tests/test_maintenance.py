"""Weekly upkeep on a real lakehouse: the tables keep every row, their small files are
compacted and the unneeded ones deleted, the incremental state still reads what it needs,
leaked feeds go and a running night's feed stays, and the run log says what was done."""

import json
import os
import time
from dataclasses import replace

import pytest
from pyspark.sql import functions as F

from lifecycle_jobs import maintenance as job
from lifecycle_recs.config import MaintenanceConf
from lifecycle_recs.io import scratch, tables
from lifecycle_recs.maintenance import erase_users, run_maintenance, user_columns
from lifecycle_recs.pipeline import run_nightly
from tests.helpers import deliver, same_rows, stream_cfg

ROWS = [
    ("u1", "i1", "view", "2026-06-01 10:00:00", "0"),
    ("u1", "i2", "order", "2026-06-01 11:00:00", "12.5"),
    ("u2", "i1", "view", "2026-06-02 12:00:00", "0"),
]
MORE = [("u3", "i2", "view", "2026-06-02 13:00:00", "0")]


def _files(root):
    return sum(f.endswith(".parquet") for _, _, fs in os.walk(root) for f in fs)


@pytest.mark.slow
def test_maintenance_keeps_every_row_and_the_next_night_incremental(spark, make_cfg, tmp_path):
    landing = tmp_path / "landing"
    deliver(landing, "a.csv", ROWS)
    cfg = replace(
        stream_cfg(make_cfg, landing),
        lakehouse=str(tmp_path / "lake"),
        maintenance=MaintenanceConf(retain_days=0, feed_max_age_hours=1),
    )
    for d in ("2026-06-01", "2026-06-02"):  # two nights: replaced snapshots leave old files
        run_nightly(spark, cfg, d, ["ingest", "sequences", "lifecycle"])
    names = ["events", "events_quarantine", "user_days", "user_sequences", "user_lifecycle"]
    before = {t: tables.read(spark, cfg, t).localCheckpoint() for t in names}
    on_disk = _files(cfg.lakehouse)
    leaked = os.path.join(scratch.root(cfg), "feed-leaked")
    running = os.path.join(scratch.root(cfg), "feed-running")
    for d in (leaked, running):
        os.makedirs(d)
    old = time.time() - 3 * 3600
    os.utime(leaked, (old, old))

    info = run_maintenance(spark, cfg)

    for t in names:
        assert same_rows(tables.read(spark, cfg, t), before[t]), t
    assert _files(cfg.lakehouse) < on_disk
    assert info["tables"]["user_sequences"]["files_removed"] >= 1
    assert info["feeds_removed"] == 1 and not os.path.exists(leaked) and os.path.exists(running)
    row = tables.read(spark, cfg, "pipeline_runs").where(F.col("stage") == "maintenance").first()
    assert row["status"] == "succeeded" and json.loads(row["counts"]) == info
    # events kept what the incremental state reads: the next night is incremental
    deliver(landing, "b.csv", MORE)
    run = run_nightly(spark, cfg, "2026-06-02", ["ingest", "sequences", "lifecycle"])
    modes = {r.stage: r.info.get("mode") for r in run.results}
    assert modes == {"ingest": None, "sequences": "incremental", "lifecycle": "incremental"}


def test_the_command_refuses_a_bad_conf_before_spark_starts(monkeypatch, capsys):
    monkeypatch.setattr(
        "lifecycle_recs.spark.get_spark", lambda *a: (_ for _ in ()).throw(AssertionError)
    )
    with pytest.raises(SystemExit) as e:
        job.main(["--set", "maintenance.retain_days=-1"])
    assert e.value.code == 2
    assert "maintenance.retain_days" in capsys.readouterr().err


@pytest.mark.slow
def test_an_erased_user_is_in_no_table_and_no_file_and_the_next_night_stays_incremental(
    spark, make_cfg, tmp_path
):
    import pyarrow.parquet as pq

    landing = tmp_path / "landing"
    bad = ("u1", "i3", "view", "2026-06-02 09:00:00", "not-a-number")  # quarantined
    deliver(landing, "a.csv", ROWS + [bad])
    cfg = replace(
        stream_cfg(make_cfg, landing),
        lakehouse=str(tmp_path / "lake"),
        maintenance=MaintenanceConf(retain_days=0),
    )
    for d in ("2026-06-01", "2026-06-02"):
        run_nightly(spark, cfg, d, ["ingest", "sequences", "lifecycle"], training_snapshot=True)
    columns = user_columns()
    assert set(columns) >= {"events", "events_quarantine", "user_days", "user_base"}
    others = {t: tables.read(spark, cfg, t).where(F.col(c) != "u1").count() for t, c in
              columns.items() if tables.exists(spark, cfg, t)}  # fmt: skip
    assert tables.read(spark, cfg, "events_quarantine").where("raw_user_id = 'u1'").count() == 1

    info = erase_users(spark, cfg, ["u1", " ", "u1"])
    run_maintenance(spark, cfg)

    assert info["users"] == 1 and info["deleted"]["events"] == 2
    for table, column in columns.items():
        if tables.exists(spark, cfg, table):
            df = tables.read(spark, cfg, table)
            assert df.where(F.trim(F.col(column)) == "u1").count() == 0, table
            assert df.where(F.col(column) != "u1").count() == others[table], table  # no one else
    for root, _, files in os.walk(cfg.lakehouse):  # no data file holds the user any more
        for f in files:
            if f.endswith(".parquet"):
                t = pq.read_table(os.path.join(root, f))
                for c in {"user_id", "raw_user_id"} & set(t.column_names):
                    assert "u1" not in t.column(c).to_pylist(), os.path.join(root, f)
    row = tables.read(spark, cfg, "pipeline_runs").where(F.col("stage") == "erase").first()
    assert "u1" not in row["counts"] and json.loads(row["counts"])["users"] == 1
    deliver(landing, "b.csv", MORE)
    run = run_nightly(spark, cfg, "2026-06-02", ["ingest", "sequences", "lifecycle"])
    assert {r.stage: r.info.get("mode") for r in run.results}["sequences"] == "incremental"
    assert tables.read(spark, cfg, "user_sequences").where("user_id = 'u1'").count() == 0


def test_erase_users_refuses_an_empty_list_before_spark_starts(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(
        "lifecycle_recs.spark.get_spark", lambda *a: (_ for _ in ()).throw(AssertionError)
    )
    empty = tmp_path / "users.txt"
    empty.write_text("\n  \n")
    with pytest.raises(SystemExit) as e:
        job.main(["--erase-users", str(empty)])
    assert e.value.code == 2 and "holds no user id" in capsys.readouterr().err
