"""Foundation scaling benchmark: ingest + sequences + lifecycle at 10M and 50M events.

    python benchmarks/pipeline_scale.py                 # 10M and 50M (about 25 min on 2 cores)
    python benchmarks/pipeline_scale.py --millions 1 5  # quicker look

For each scale the synthetic generator first writes raw Parquet (not timed,
cached under .bench/). Then, each in its own process so peak memory is its own:

* the project's pipeline (ingest -> events Delta, sequences, lifecycle for one D),
* a naive Spark job from the same raw Parquet (last-50 by window + RFM, Parquet out),
* the sequences + RFM computation in plain pandas on the same events (Parquet out).

Ratios are taken within one run on one machine. Last line:
RESULT spark_over_pandas_50M=<x> per_event_50M_over_10M=<y> us_per_event_50M=<z>
(the largest and smallest scales run stand in for 50M and 10M when others are chosen).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from harness import ROOT

SNAPSHOT = "2026-11-01"
N_STEPS = 50


def _cfg(work: str, raw: str, millions: float):
    from lifecycle_recs.config import config_from_dict

    return config_from_dict(
        {
            "lakehouse": os.path.join(work, f"lake_{millions:g}M"),
            "spark": {"driver_memory": "10g", "shuffle_partitions": 8},
            "source": {"kind": "synthetic", "raw_path": raw},
            "synthetic": {"seed": 11, "n_items": 20000, "partitions": 16},
            "stages": ["ingest", "sequences", "lifecycle"],
        },
        base=ROOT,
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def generate(work: str, millions: float) -> str:
    from lifecycle_recs.data.synthetic import shop
    from lifecycle_recs.spark import get_spark

    raw = os.path.join(work, f"raw_{millions:g}M")
    if os.path.exists(os.path.join(raw, "_generated", "events", "_SUCCESS")):
        return raw
    cfg = _cfg(work, raw, millions)
    per_user = shop.events_per_user(cfg.synthetic, 400)
    n_users = int(millions * 1e6 / per_user)
    spark = get_spark(cfg.spark)
    t = time.perf_counter()
    shop.deliver(spark, cfg.synthetic, raw, n_users=n_users)  # every day into raw/events
    print(
        f"generated {millions:g}M target ({n_users} users) in {time.perf_counter() - t:.0f}s",
        flush=True,
    )
    return raw


def run_project(work: str, raw: str, millions: float) -> dict:
    import shutil

    from lifecycle_recs.io import tables
    from lifecycle_recs.pipeline import run_nightly
    from lifecycle_recs.spark import get_spark

    cfg = _cfg(work, raw, millions)
    shutil.rmtree(cfg.lakehouse, ignore_errors=True)
    spark = get_spark(cfg.spark)
    spark.range(1).count()  # Spark start-up is not part of the pipeline time
    t0 = time.perf_counter()
    ctx = run_nightly(spark, cfg, SNAPSHOT)
    total = time.perf_counter() - t0
    stage = {r.stage: r.seconds for r in ctx.results}
    n_events = tables.read(spark, cfg, "events").count()
    files = tables.read(spark, cfg, "events").inputFiles()
    return {
        "total_s": total,
        **{f"{k}_s": v for k, v in stage.items()},
        "rows_in": ctx.results[0].info["rows_in"],
        "events": n_events,
        "event_files": files,
        "driver_peak_rss_mb": peak_rss_mb(),
    }


def run_naive(work: str, raw: str, millions: float) -> dict:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from lifecycle_recs.spark import get_spark

    cfg = _cfg(work, raw, millions)
    spark = get_spark(cfg.spark)
    spark.range(1).count()
    t0 = time.perf_counter()
    ev = (
        spark.read.parquet(os.path.join(raw, "events"))
        .select(
            F.col("event_user").alias("user_id"),
            F.col("sku").alias("item_id"),
            F.col("action").alias("event_type"),
            F.try_to_timestamp("ts").alias("event_ts"),
            F.col("revenue").try_cast("double").alias("value"),
        )
        .where(F.col("event_ts") < F.lit("2026-11-02").cast("timestamp"))
    )
    w = Window.partitionBy("user_id").orderBy(F.col("event_ts").desc())
    last = (
        ev.withColumn("rn", F.row_number().over(w))
        .where(F.col("rn") <= N_STEPS)
        .groupBy("user_id")
        .agg(
            F.sort_array(
                F.collect_list(F.struct("event_ts", "item_id", "event_type", "value"))
            ).alias("steps")
        )
    )
    rfm = ev.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("n"),
        F.sum("value").alias("m"),
        F.max("event_ts").alias("last"),
        F.min("event_ts").alias("first"),
    )
    last.join(rfm, "user_id", "inner").write.mode("overwrite").parquet(
        os.path.join(work, "naive_out")
    )
    return {"total_s": time.perf_counter() - t0, "driver_peak_rss_mb": peak_rss_mb()}


def run_pandas(work: str, files: list, millions: float) -> dict:
    """The sequences + RFM computation of lifecycle_recs.data.sequences in plain pandas."""
    import datetime as dt

    import numpy as np
    import pandas as pd
    import pyarrow.dataset as ds

    t0 = time.perf_counter()
    d = dt.date.fromisoformat(SNAPSHOT)
    table = ds.dataset([f.replace("file:", "") for f in files], format="parquet").to_table(
        columns=["user_id", "item_id", "event_type", "event_ts", "value"],
        filter=ds.field("event_ts") < pd.Timestamp(d + dt.timedelta(days=1)),
    )
    # categoricals keep 50M rows within this machine's memory (generous to pandas:
    # the tie-break sorts item codes instead of strings, and skips event_id)
    df = table.to_pandas(strings_to_categorical=True)
    del table
    order = {"view": 0, "click": 1, "add_to_cart": 2, "purchase": 3, "rating": 4}
    df["r"] = df["event_type"].map(order).astype("float32").fillna(9).astype("int8")
    df["k"] = df["item_id"].cat.codes
    df.sort_values(["user_id", "event_ts", "r", "k"], inplace=True, kind="stable")
    df["is_value"] = df["event_type"].isin(["purchase", "rating"])
    df["vv"] = np.where(df["is_value"], df["value"], 0.0)
    df["day"] = df["event_ts"].dt.floor("D")
    g = df.groupby("user_id", sort=False, observed=True)
    rfm = g.agg(
        n_events=("event_ts", "size"),
        n_value_events=("is_value", "sum"),
        monetary_total=("vv", "sum"),
        first_event_ts=("event_ts", "min"),
        last_event_ts=("event_ts", "max"),
        active_days=("day", "nunique"),
    )
    tail = g.tail(N_STEPS).copy()
    tail["gap_h"] = (
        tail.groupby("user_id", sort=False, observed=True)["event_ts"]
        .diff()
        .dt.total_seconds()
        .fillna(0)
        / 3600
    )
    seq = tail.groupby("user_id", sort=False, observed=True).agg(
        item_ids=("item_id", list),
        event_types=("event_type", list),
        event_ts=("event_ts", list),
        time_gaps_hours=("gap_h", list),
        values=("value", list),
    )
    out = seq.join(rfm)
    end = pd.Timestamp(d + dt.timedelta(days=1))
    out["days_since_last_event"] = (end - out["last_event_ts"]).dt.total_seconds() / 86400
    out["tenure_days"] = (end - out["first_event_ts"]).dt.total_seconds() / 86400
    out["sequence_length"] = out["item_ids"].str.len()
    out.reset_index().to_parquet(os.path.join(work, "pandas_out.parquet"))
    return {"total_s": time.perf_counter() - t0, "users": len(out), "peak_rss_mb": peak_rss_mb()}


def child(kind: str, work: str, millions: float, arg: str) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        kind,
        "--work",
        work,
        "--millions",
        str(millions),
        "--arg",
        arg,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("CHILD ")]
    if out.returncode != 0 or not line:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-6000:])
        raise RuntimeError(f"{kind} at {millions}M failed (exit {out.returncode})")
    return json.loads(line[-1][6:])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--millions", type=float, nargs="+", default=[10, 50])
    p.add_argument("--work", default=os.path.join(ROOT, ".bench", "pipeline"))
    p.add_argument("--child", default=None)
    p.add_argument("--arg", default="")
    p.add_argument("--skip-naive", action="store_true")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    if args.child:
        m = args.millions[0]
        if args.child == "generate":
            res = {"raw": generate(args.work, m)}
        elif args.child == "project":
            res = run_project(args.work, args.arg, m)
        elif args.child == "naive":
            res = run_naive(args.work, args.arg, m)
        else:
            with open(args.arg) as fh:
                res = run_pandas(args.work, json.load(fh), m)
        print("CHILD " + json.dumps(res), flush=True)
        return

    rows = {}
    for m in args.millions:
        raw = child("generate", args.work, m, "")["raw"]
        proj = child("project", args.work, m, raw)
        files = proj.pop("event_files")
        naive = None if args.skip_naive else child("naive", args.work, m, raw)
        files_json = os.path.join(args.work, f"files_{m:g}M.json")
        with open(files_json, "w") as fh:
            json.dump(files, fh)
        pand = child("pandas", args.work, m, files_json)
        n = proj["rows_in"]
        rows[m] = dict(
            events_in=n,
            pipeline_s=proj["total_s"],
            ingest_s=proj["ingest_s"],
            sequences_s=proj["sequences_s"],
            lifecycle_s=proj["lifecycle_s"],
            naive_s=naive["total_s"] if naive else float("nan"),
            pandas_seq_s=pand["total_s"],
            us_per_event=proj["total_s"] / n * 1e6,
            pipeline_over_naive=proj["total_s"] / naive["total_s"] if naive else float("nan"),
            spark_seq_over_pandas=proj["sequences_s"] / pand["total_s"],
            driver_peak_rss_mb=proj["driver_peak_rss_mb"],
            pandas_peak_rss_mb=pand["peak_rss_mb"],
        )
        print(
            f"{m:g}M: "
            + json.dumps(
                {k: round(v, 3) if isinstance(v, float) else v for k, v in rows[m].items()}
            ),
            flush=True,
        )

    print(
        "\n| events in | pipeline s | ingest s | sequences s | lifecycle s | naive Spark s | "
        "pandas seq+RFM s | µs/event | pipeline/naive | seq Spark/pandas | driver py RSS MB | "
        "pandas RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m, r in rows.items():
        print(
            f"| {r['events_in']:,} | {r['pipeline_s']:.1f} | {r['ingest_s']:.1f} | "
            f"{r['sequences_s']:.1f} | {r['lifecycle_s']:.1f} | {r['naive_s']:.1f} | "
            f"{r['pandas_seq_s']:.1f} | {r['us_per_event']:.2f} | {r['pipeline_over_naive']:.2f} | "
            f"{r['spark_seq_over_pandas']:.2f} | {r['driver_peak_rss_mb']:.0f} | "
            f"{r['pandas_peak_rss_mb']:.0f} |"
        )
    big, small = rows[max(rows)], rows[min(rows)]
    print(
        f"RESULT spark_over_pandas_50M={big['spark_seq_over_pandas']:.3f} "
        f"per_event_50M_over_10M={big['us_per_event'] / small['us_per_event']:.3f} "
        f"us_per_event_50M={big['us_per_event']:.3f}"
    )


if __name__ == "__main__":
    main()
