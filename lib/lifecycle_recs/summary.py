"""Human-readable run report (small: per-table counts and a few sample rows)."""

from __future__ import annotations

import json

from pyspark.sql import functions as F
from pyspark.sql.window import Window

from lifecycle_recs.context import RunContext
from lifecycle_recs.evaluation.report import quality_table
from lifecycle_recs.io import runs, tables
from lifecycle_recs.pipeline import NightlyRun

TABLE_ORDER = [
    "events",
    "events_quarantine",
    "items",
    "user_days",
    "user_base",
    "user_sequences",
    "user_lifecycle",
    "item_embeddings",
    "user_interests",
    "retention_scores",
    "recommendations",
    "evaluation_metrics",
]

# tables whose latest snapshot is the training snapshot T, not D
ABOUT_TRAINING_SNAPSHOT = ("evaluation_metrics",)

SAMPLE_COLUMNS = {
    "events": ["user_id", "item_id", "event_type", "event_ts", "value"],
    "events_quarantine": ["reason", "raw_user_id", "raw_event_type", "raw_event_ts", "raw_value"],
    "items": ["item_id", "title", "category", "price"],
    "user_sequences": [
        "snapshot_date",
        "user_id",
        "sequence_length",
        "n_events",
        "monetary_total",
        "days_since_last_event",
        "active_days",
    ],
    "user_lifecycle": [
        "snapshot_date",
        "user_id",
        "stage",
        "previous_stage",
        "days_since_last_event",
        "churned_within_horizon",
        "value_next_horizon",
    ],
    "item_embeddings": ["item_id", "model_name", "dim", "text_hash"],
    "retention_scores": [
        "user_id",
        "stage",
        "churn_probability",
        "retention_score",
        "predicted_value",
    ],
    "recommendations": ["user_id", "rank", "item_id", "score", "strategy"],
    "user_interests": ["user_id", "top_categories", "model_version"],
    "evaluation_metrics": [
        "model",
        "task",
        "metric",
        "value",
        "n_users",
        "ci_low",
        "ci_high",
        "verdict",
    ],
}


def night_line(run: NightlyRun) -> str:
    """One line per night: its date, the data stages' mode (and why a night is full), the
    seconds of each stage and in all."""
    info = {r.stage: r.info for r in run.results}
    seq = info.get("sequences", {})
    mode = f"mode={seq['mode']}" if "mode" in seq else "mode=-"
    if seq.get("mode_reason"):
        mode += f" ({seq['mode_reason']})"
    times = " ".join(f"{r.stage}={r.seconds:.1f}s" for r in run.results)
    total = sum(r.seconds for r in run.results)
    return f"night {run.snapshot_date}: {mode}  {times}  total={total:.1f}s"


def print_run(run: NightlyRun, samples: bool = False) -> None:
    ctx = run.context
    spark, cfg = ctx.spark, ctx.cfg
    print("\n=== nightly run: snapshot date D =", ctx.snapshot_date, "===")
    print(f"{'stage':<12}{'seconds':>9}  details")
    for r in run.results:
        print(f"{r.stage:<12}{r.seconds:>9.1f}  {json.dumps(r.info, default=str)[:300]}")
    print(f"{'total':<12}{sum(r.seconds for r in run.results):>9.1f}")
    print("\nlast published night (what consumers read):", runs.last_published_date(spark, cfg))
    print("\n=== tables (Delta, under", cfg.lakehouse, ") ===")
    for row in tables.summary(spark, cfg, TABLE_ORDER):
        print(
            f"{row['table']:<20} rows={row['rows']:>9}  version={row['version']:<4} {row['path']}"
        )
    if not samples:
        return
    for t in TABLE_ORDER:
        if not tables.exists(spark, cfg, t):
            continue
        df = tables.read(spark, cfg, t)
        shown = ctx.snapshot_date
        if t in ABOUT_TRAINING_SNAPSHOT:  # evaluation is about T = D - H, not about D
            shown = (tables.snapshots(spark, cfg, t) or [None])[-1]
        if "snapshot_date" in df.columns and shown:
            df = df.where(F.col("snapshot_date") == F.lit(shown).cast("date"))
        cols = [c for c in SAMPLE_COLUMNS.get(t, df.columns) if c in df.columns]
        print(f"\n--- {t} (sample{', snapshot ' + shown if shown else ''}) ---")
        df.select(*cols).orderBy(*cols[:2]).show(5, truncate=60)
    if tables.exists(spark, cfg, "user_lifecycle"):
        print("--- lifecycle stages at D ---")
        (
            tables.read(spark, cfg, "user_lifecycle", ctx.snapshot_date)
            .groupBy("stage")
            .count()
            .orderBy("stage")
            .show()
        )
    if tables.exists(spark, cfg, "retention_scores") and tables.exists(
        spark, cfg, "recommendations"
    ):
        print_users(ctx)
    print_quality(ctx)


def print_quality(ctx: RunContext, dataset: str = "nightly") -> None:
    """The last evaluated snapshot's quality table: ours vs each baseline with n and
    95% intervals, and every paired difference with its verdict (a few dozen rows)."""
    spark, cfg = ctx.spark, ctx.cfg
    if not tables.exists(spark, cfg, "evaluation_metrics"):
        return
    t = (tables.snapshots(spark, cfg, "evaluation_metrics") or [None])[-1]
    if t is None:
        return
    rows = [
        r.asDict()
        for r in tables.read(spark, cfg, "evaluation_metrics", t)
        .where(F.col("dataset") == dataset)
        .orderBy("task", "metric", "model")
        .collect()
    ]
    print(
        f"\n=== model quality on snapshot {t} (ours vs baselines; value [95% interval]; n users) "
        "==="
    )
    print("\n".join(quality_table(rows)))


def print_users(ctx: RunContext, per_stage: int = 1) -> None:
    """A few users of D (one per stage) with scores and recommended titles."""
    spark, cfg, d = ctx.spark, ctx.cfg, ctx.snapshot_date
    rs = tables.read(spark, cfg, "retention_scores", d)
    picked = (
        rs.withColumn("_r", F.row_number().over(Window.partitionBy("stage").orderBy("user_id")))
        .where(F.col("_r") <= per_stage)
        .orderBy("stage")
        .collect()
    )  # a handful of rows
    if not tables.exists(spark, cfg, "items"):  # an order-level log: no catalog, no titles
        titles = spark.createDataFrame([], "item_id string, title string")
    else:
        titles = tables.read(spark, cfg, "items").select("item_id", "title")
    recs = (
        tables.read(spark, cfg, "recommendations", d)
        .where(F.col("user_id").isin([r["user_id"] for r in picked]))
        .join(titles, "item_id", "left")
        .orderBy("user_id", "rank")
        .collect()
    )
    print("\n=== a few users at D: stage, scores, recommendations ===")
    for r in picked:
        because = ", ".join(f"{b['item_id']} ({b['weight']:.2f})" for b in r["because_items"])
        feats = ", ".join(f"{f['feature']} {f['effect']:+.3f}" for f in r["top_features"])
        print(
            f"\nuser {r['user_id']}  stage={r['stage']}  "
            f"churn_probability={r['churn_probability']:.3f}  "
            f"retention_score={r['retention_score']:.3f}  "
            f"predicted_value_{r['horizon_days']}d={r['predicted_value']:.2f}"
        )
        print(f"  because of: {because or '-'}   churn drivers: {feats}")
        for x in [x for x in recs if x["user_id"] == r["user_id"]]:
            print(
                f"  {x['rank']:>2}. {x['item_id']}  {str(x['title'])[:55]:<55} "
                f"score={x['score']:+.3f} [{x['strategy']}]"
            )
