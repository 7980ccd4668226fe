"""End-to-end: the nightly job on small synthetic data, every table read back."""

import math
import os

import pytest
from pyspark.sql import functions as F

from lifecycle_recs import schemas
from lifecycle_recs.io import runs, scratch, tables
from lifecycle_recs.ml import artifacts, registry
from lifecycle_recs.pipeline import run_nightly
from lifecycle_recs.summary import print_run
from tests.helpers import ML100K, CrashAfterCommit, InjectedCrash, assert_close, sorted_rows

SMALL = {"seed": 3, "n_users": 60, "n_items": 120, "days": 150, "partitions": 3}
BASE_STAGES = ["ingest", "sequences", "lifecycle"]


def check_schema(spark, cfg, name):
    df = tables.read(spark, cfg, name)
    want = schemas.spec(name)
    got = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    assert got == {c.name: c.dtype.simpleString() for c in want.columns}, name
    return df


@pytest.mark.slow
def test_nightly_end_to_end_and_rerun_identical(spark, make_cfg):
    cfg = make_cfg(synthetic=SMALL)
    ctx = run_nightly(spark, cfg, stages=BASE_STAGES, training_snapshot=True)  # also builds T = D-H
    d = ctx.snapshot_date
    assert ctx.context.snapshot_dates == (d, ctx.context.training_date)
    counts = ctx.results[0].info
    events = check_schema(spark, cfg, "events")
    quarantine = check_schema(spark, cfg, "events_quarantine")
    check_schema(spark, cfg, "items")
    assert counts["rows_in"] == events.count() + quarantine.count() + counts["duplicates_in_batch"]
    assert counts["quarantined"] > 0 and counts["duplicates_in_batch"] > 0
    seqs = check_schema(spark, cfg, "user_sequences")
    lc = check_schema(spark, cfg, "user_lifecycle")
    n_users = events.where(F.col("event_date") <= d).select("user_id").distinct().count()
    assert seqs.where(F.col("snapshot_date") == d).count() == n_users
    assert lc.where(F.col("snapshot_date") == d).count() == n_users
    # the training snapshot D-H carries labels, D does not
    assert {r["has_labels"] for r in lc.where(F.col("snapshot_date") == d).collect()} == {False}
    assert {
        r["has_labels"]
        for r in lc.where(F.col("snapshot_date") == ctx.context.training_date).collect()
    } == {True}
    assert seqs.where(F.col("sequence_length") > cfg.sequences.max_length).count() == 0

    before = {
        t: sorted_rows(tables.read(spark, cfg, t).drop("ingested_at", "updated_at"))
        for t in ("events", "user_sequences", "user_lifecycle")
    }
    run_nightly(spark, cfg, d, stages=BASE_STAGES, training_snapshot=True)
    after = {
        t: sorted_rows(tables.read(spark, cfg, t).drop("ingested_at", "updated_at"))
        for t in ("events", "user_sequences", "user_lifecycle")
    }
    assert after == before


@pytest.mark.slow
def test_full_nightly_with_model_and_rerun_identical(spark, make_cfg, capsys, tmp_path):
    """All stages on tiny synthetic data: embeddings, training through petastorm,
    scoring, recommendations, evaluation; then a rerun of D changes nothing."""
    cfg = make_cfg(
        synthetic={"seed": 5, "n_users": 80, "n_items": 60, "days": 120, "partitions": 2},
        train={"epochs": 2, "patience": 2, "batch_size": 64},
        model={"hidden_dim": 16, "item_dim": 16},
        recommend={"k": 5},
        mlflow={
            "enabled": True,
            "tracking_uri": (tmp_path / "mlruns").as_uri(),
            "registered_model": "lc_nightly",
        },
    )
    # the first night crashes in score after its first commit (user_interests of D);
    # nothing is published and the rerun below lands the whole night
    with CrashAfterCommit("user_interests"), pytest.raises(InjectedCrash):
        run_nightly(spark, cfg)
    assert runs.last_published_date(spark, cfg) is None
    assert not tables.exists(spark, cfg, "recommendations")
    ctx = run_nightly(spark, cfg)
    d, t = ctx.snapshot_date, ctx.context.training_date
    assert runs.last_published_date(spark, cfg) == d
    info = {r.stage: r.info for r in ctx.results}
    # the crashed night embedded the catalog already: the rerun skips every unchanged text
    assert (info["embeddings"]["embedded"], info["embeddings"]["skipped"]) == (0, 60)
    assert tables.read(spark, cfg, "item_embeddings").count() == 60
    assert info["train"]["train_rows"] > 0
    # the crashed night trained from the same rows, config and code: its artifact is reused
    assert info["train"]["reused"] is True and info["train"]["fingerprint_seconds"] > 0
    for name in (
        "item_embeddings",
        "user_interests",
        "retention_scores",
        "recommendations",
        "evaluation_metrics",
    ):
        check_schema(spark, cfg, name)
    n_users = tables.read(spark, cfg, "user_sequences", d).count()
    assert tables.read(spark, cfg, "retention_scores", d).count() == n_users
    assert tables.read(spark, cfg, "user_interests", d).count() == n_users
    recs = tables.read(spark, cfg, "recommendations", d)
    per_user = (
        recs.groupBy("user_id")
        .agg(F.count("*").alias("n"), F.min("rank").alias("lo"), F.max("rank").alias("hi"))
        .collect()
    )
    assert len(per_user) == n_users and all(
        r["lo"] == 1 and r["hi"] == r["n"] <= 5 for r in per_user
    )
    seen = (
        recs.join(
            tables.read(spark, cfg, "user_sequences", d).select("user_id", "item_ids"), "user_id"
        )
        .where(F.array_contains("item_ids", F.col("item_id")))
        .count()
    )
    # seen items are filtered unless the training users' next items were often re-touches (60 items
    # here)
    share = artifacts.load(os.path.join(cfg.artifacts, info["train"]["artifact"])).config[
        "repeat_share"
    ]
    assert (
        share >= cfg.recommend.keep_seen_repeat_share
        and info["score"]["seen_items_filtered"] is False
    )
    assert seen > 0
    assert info["evaluate"]["seen_items_filtered"] is False  # ours and most popular alike
    # every user's strategy follows the lifecycle rule (new or few events; at risk; the rest)
    users = (
        tables.read(spark, cfg, "retention_scores", d)
        .select("user_id", "stage")
        .join(tables.read(spark, cfg, "user_sequences", d).select("user_id", "n_events"), "user_id")
        .join(recs.select("user_id", "strategy").distinct(), "user_id")
        .collect()
    )
    assert len(users) == n_users
    for r in users:
        want = (
            "new_user_content_popularity"
            if r["stage"] == "new" or r["n_events"] <= cfg.recommend.new_user_max_events
            else "at_risk_long_term_value"
            if r["stage"] in ("at_risk", "churned")
            else "personalized"
        )
        assert r["strategy"] == want, r
    metric_rows = (
        tables.read(spark, cfg, "evaluation_metrics").where(F.col("snapshot_date") == t).collect()
    )
    metrics = {(r["model"], r["task"], r["metric"]): r["value"] for r in metric_rows}
    n_users = {(r["model"], r["task"], r["metric"]): r["n_users"] for r in metric_rows}
    assert n_users[("ours", "long_horizon", "recall@5")] > 0
    assert all(math.isfinite(v) for v in metrics.values())  # no NaN where users were evaluated
    for key in [
        ("bgnbd", "churn", "brier"),
        ("bgnbd_gamma_gamma", "value", "rmse"),
        ("ours-vs-most_popular", "long_horizon", "recall@5"),
        ("ours-vs-bgnbd", "churn", "brier"),
    ]:
        assert key in metrics, key
    assert 0 <= metrics[("ours", "long_horizon", "recall@5")] <= 1
    assert 0 <= metrics[("most_popular", "long_horizon", "recall@5")] <= 1
    assert 0 < metrics[("ours", "catalog", "coverage")] <= 1
    for model in (
        "ours",
        "most_popular",
        "next_horizon_items",
    ):  # popularity bias, with its reference lists
        assert 0 <= metrics[(model, "catalog", "mean_popularity_percentile")] <= 1, model
        assert 0 <= metrics[(model, "catalog", "long_tail_share")] <= 1, model
        assert n_users[(model, "catalog", "long_tail_share")] > 0, model
    # evaluate scores T in memory: what was served (only D was scored) is never written for T
    for name in ("user_interests", "retention_scores", "recommendations"):
        assert tables.snapshots(spark, cfg, name) == [d], name
    # the demo's report shows the evaluation metrics of T (it used to print an empty sample)
    print_run(ctx, samples=True)
    out = capsys.readouterr().out
    section = out.split(f"--- evaluation_metrics (sample, snapshot {t}) ---")[1].split("\n--- ")[0]
    assert (
        len([line for line in section.splitlines() if line.startswith("|")]) >= 2
    )  # header + metrics

    if registry.enabled(
        cfg.mlflow
    ):  # MLflow where it is installed (the dev extras; Databricks ML runtimes)
        import mlflow

        run = mlflow.MlflowClient().get_run(info["train"]["mlflow_run"])
        assert run.data.params["model.hidden_dim"] == "16" and "train_loss" in run.data.metrics
        finite = {
            registry.metric_name(f"eval.{task}.{model}.{metric}"): v
            for (model, task, metric), v in metrics.items()
            if math.isfinite(v)
        }
        assert finite and all(run.data.metrics[k] == pytest.approx(v) for k, v in finite.items())
        assert mlflow.MlflowClient().get_model_version_by_alias("lc_nightly", "champion")

    volatile = ("ingested_at", "updated_at", "scored_at", "evaluated_at")
    names = (
        "events",
        "user_sequences",
        "user_lifecycle",
        "item_embeddings",
        "user_interests",
        "retention_scores",
        "recommendations",
    )
    metric_key = ("snapshot_date", "dataset", "model", "task", "metric")

    def metrics_rows():
        return sorted_rows(
            tables.read(spark, cfg, "evaluation_metrics").drop(*volatile), *metric_key
        )

    before = {n: sorted_rows(tables.read(spark, cfg, n).drop(*volatile)) for n in names}
    before_metrics = metrics_rows()
    rerun = {r.stage: r.info for r in run_nightly(spark, cfg, d).results}
    assert rerun["train"]["reused"] and rerun["train"]["artifact"] == info["train"]["artifact"]
    assert rerun["train"]["mlflow_run"] == info["train"]["mlflow_run"]
    after = {n: sorted_rows(tables.read(spark, cfg, n).drop(*volatile)) for n in names}
    for n in names:
        assert after[n] == before[n], n
    # the evaluate stage reruns too: the same rows, sums of doubles within the order a shuffle
    # merges them in
    assert_close(metrics_rows(), before_metrics, 1e-9, "evaluation_metrics")
    # the training feeds and the evaluated users' files of every run were removed
    assert os.listdir(scratch.root(cfg)) == []


@pytest.mark.skipif(
    not ML100K.exists(),
    reason=f"MovieLens-100K not found at {ML100K} "
    "(../shared/datasets is only beside the project in development and CI)",
)
@pytest.mark.slow
def test_warm_up_embeds_the_catalog_before_training_the_model_evaluate_uses(spark, make_cfg):
    # evaluate measures the warm-up model: it must be built like the nightly one, text vectors
    # included
    from lifecycle_recs.pipeline import warm_up

    cfg = make_cfg(
        synthetic={"seed": 3, "n_users": 40, "n_items": 30, "days": 120, "partitions": 2},
        train={"epochs": 1, "patience": 1, "batch_size": 64, "heads_steps": 20},
        model={"hidden_dim": 8, "item_dim": 8},
    )
    stages, d = warm_up(spark, cfg)
    art = artifacts.load(cfg.artifacts)  # the model of night T, trained on T - H
    assert art.config["training_date"] < d and art.model.spec.text_dim > 0
    assert tables.read(spark, cfg, "item_embeddings").count() == 30
    assert stages == [
        s for s in cfg.stages if s != "ingest"
    ]  # night D still runs embeddings (nothing new)


def test_movielens_100k_ingest_and_sequences(spark, make_cfg):
    cfg = make_cfg(
        source={"kind": "recbole", "recbole_dir": str(ML100K), "recbole_dataset": "ml-100k"},
        validation={"event_types": ["rating"]},
        sequences={"max_length": 50, "value_event_types": ["rating"]},
        stages=BASE_STAGES,
    )
    run = run_nightly(spark, cfg, "1998-04-22", stages=BASE_STAGES)
    info = run.results[0].info
    assert info["rows_in"] == 100000
    # RecBole's ml-100k has no exact duplicate (user, item, time) ratings
    assert info["written"] + info["quarantined"] + info["duplicates_in_batch"] == 100000
    assert info["items_in"] == 1682
    seqs = tables.read(spark, cfg, "user_sequences", "1998-04-22")
    assert seqs.count() == 943
    assert seqs.agg(F.max("sequence_length")).first()[0] == 50
    items = tables.read(spark, cfg, "items").where(F.col("item_id") == "1").first()
    assert items["title"] == "Toy Story" and items["year"] == 1995
