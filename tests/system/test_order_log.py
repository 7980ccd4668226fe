"""An order-level log (customer, date, amount, quantity: no items, no catalog, no
event-type column) through the nightly job with the default stages: the item
stages are skipped, the model trains churn and value only, retention scores and
lifecycle land, and the evaluation compares ours with BG/NBD, recency and "same
as the last H days" with intervals. Also the BTYD summaries against pandas."""

import json
import math
import os

import pandas as pd
import pytest
from pyspark.sql import functions as F

from lifecycle_recs.adapters import btyd
from lifecycle_recs.data.synthetic.orders import order_log, source_conf
from lifecycle_recs.dates import add_days
from lifecycle_recs.io import runs, tables
from lifecycle_recs.names import PIPELINE_STAGES
from lifecycle_recs.pipeline import run_nightly, warm_up


@pytest.fixture(scope="module")
def orders_csv(tmp_path_factory):
    d = tmp_path_factory.mktemp("orders")
    log = order_log(160, start_date="2025-01-01", days=200, seed=4)
    log.to_csv(d / "orders.csv", index=False)
    return d, log


def _cfg(make_cfg, path):
    return make_cfg(
        source=source_conf(path),
        train={"epochs": 2, "patience": 2, "batch_size": 64, "heads_steps": 60},
        model={"hidden_dim": 16, "item_dim": 16, "stacking": True, "lapsed_periods": 3},
    )


@pytest.mark.slow
def test_order_log_runs_every_default_stage(spark, make_cfg, orders_csv, caplog):
    path, log = orders_csv
    cfg = _cfg(make_cfg, path)
    assert cfg.stages == PIPELINE_STAGES
    with caplog.at_level("INFO"):
        stages, d = warm_up(spark, cfg)  # ingest, then the model of night T (trained on T - H)
        run = run_nightly(spark, cfg, d, stages)
    t = run.context.training_date
    assert [r.stage for r in run.results] == list(PIPELINE_STAGES[1:])
    ev = run.results[-1].info
    # evaluate measured every labelled user of T with the warm-up model, which never saw (T, D]
    assert ev["protocol"].startswith("all labelled users") and ev["model"].split("-", 1)[
        1
    ].startswith(add_days(t, -cfg.lifecycle.horizon_days))
    labelled = (
        tables.read(spark, cfg, "user_lifecycle", t)
        .where("churned_within_horizon IS NOT NULL")
        .count()
    )
    assert ev["evaluated_users"] == labelled
    assert any("stage embeddings skipped: no item catalog" in m for m in caplog.messages)
    # the second stage (model.stacking) was fitted on the training snapshot and scored with
    with open(os.path.join(cfg.artifacts, ev["model"], "config.json")) as fh:
        stack = json.load(fh)["stack"]
    assert set(stack) == {"horizon_days", "churn", "value"} and stack["churn"]["blend_users"] > 0
    assert {"kept", "out_of_fold"} <= set(stack["churn"]) and {"kept", "out_of_fold"} <= set(
        stack["value"]
    )
    assert any(m.startswith("stack churn: ") for m in caplog.messages)
    # BG/NBD x Gamma-Gamma of T's purchase days: fitted into the artifact, an input of the value
    # blend
    with open(os.path.join(cfg.artifacts, ev["model"], "config.json")) as fh:
        assert {"active", "purchase", "spend"} <= set(json.load(fh)["btyd"])
    assert len(stack["value"]["blend"]) == 3
    # the lapsed users' silence model (model.lapsed_churn, on by default) was fitted or said why not
    with open(os.path.join(cfg.artifacts, ev["model"], "config.json")) as fh:
        lapsed_params = json.load(fh)["lapsed"]
    assert any(m.startswith("lapsed churn: ") for m in caplog.messages)
    assert not lapsed_params or (
        lapsed_params["slope"] >= 0
        and lapsed_params["returned"] >= 5
        and lapsed_params["min_silence_days"] == cfg.lifecycle.churn_days
        and lapsed_params["periods"] == 3
    )
    # with the lapsed customers of the two periods of H days before the training snapshot
    t_train = add_days(t, -cfg.lifecycle.horizon_days)
    earlier = ", ".join(add_days(t_train, -k * cfg.lifecycle.horizon_days) for k in (1, 2))
    assert any(
        m.startswith("lapsed churn: ") and f"at the 2 cutoffs before {t_train} ({earlier})" in m
        for m in caplog.messages
    )
    assert runs.last_published_date(spark, cfg) == d
    customers = log[log.order_date <= d].customer_id.nunique()
    assert tables.read(spark, cfg, "retention_scores", d).count() == customers
    assert tables.read(spark, cfg, "user_lifecycle", d).count() == customers
    assert tables.read(spark, cfg, "recommendations", d).count() == 0
    assert not tables.exists(spark, cfg, "items")
    rows = (
        tables.read(spark, cfg, "evaluation_metrics").where(F.col("snapshot_date") == t).collect()
    )
    got = {(r["model"], r["task"], r["metric"]): r for r in rows}
    for key in [
        ("ours", "churn", "roc_auc"),
        ("bgnbd", "churn", "roc_auc"),
        ("recency", "churn", "roc_auc"),
        ("same_as_last_h", "churn", "roc_auc"),
        ("ours", "value", "rmse"),
        ("bgnbd_gamma_gamma", "value", "rmse"),
        ("same_as_last_h", "value", "rmse"),
        ("ours-vs-bgnbd", "churn", "roc_auc"),
        ("ours-vs-bgnbd_gamma_gamma", "value", "rmse"),
    ]:
        r = got[key]
        assert r["n_users"] > 0 and r["ci_low"] <= r["ci_high"], key
    assert all(math.isfinite(r["value"]) for r in rows)  # nothing NaN where users were evaluated
    assert {r["verdict"] for r in rows if r["model"].startswith("ours-vs-")} <= {
        "ours better",
        "baseline better",
        "inconclusive",
    }
    assert not any(k[1] == "long_horizon" for k in got)  # no items: no ranking figures


def test_btyd_summaries_equal_pandas(spark, make_cfg, orders_csv):
    path, log = orders_csv
    cfg = _cfg(make_cfg, path)
    run_nightly(spark, cfg, stages=["ingest"])
    D = "2025-06-30"
    got = {
        r["user_id"]: r
        for r in btyd.summaries(tables.read(spark, cfg, "events"), D, ["purchase"]).collect()
    }
    o = log[log.order_date <= D].assign(amount=lambda x: x.amount.astype(float))
    day = o.groupby(["customer_id", "order_date"]).amount.sum().reset_index()
    assert len(got) == day.customer_id.nunique()
    end = pd.Timestamp(D)
    for cid, g in day.groupby("customer_id"):
        g = g.sort_values("order_date")
        first, last = pd.Timestamp(g.order_date.iloc[0]), pd.Timestamp(g.order_date.iloc[-1])
        r = got[cid]
        assert r["x_purchase"] == len(g) - 1 == r["x_active"]
        assert r["t_purchase"] == (last - first).days and r["age_purchase"] == (end - first).days
        if len(g) > 1:
            assert r["m_purchase"] == pytest.approx(g.amount.iloc[1:].mean(), abs=1e-9)
        else:
            assert r["m_purchase"] is None


def test_stack_value_input_equals_the_baseline_prediction(spark, make_cfg, orders_csv):
    """The stack's BG/NBD x Gamma-Gamma input, computed at scoring from the purchase
    summary joined to the user rows (``btyd.with_purchases`` -> ``spend_features``),
    is the baseline's own Spark prediction (``btyd.predict``) for every customer."""
    import numpy as np

    from lifecycle_recs.ml.features import spend_features

    path, _ = orders_csv
    cfg = _cfg(make_cfg, path)
    run_nightly(spark, cfg, stages=["ingest"])
    D = "2025-06-30"
    events = tables.read(spark, cfg, "events")
    summ = btyd.summaries(events, D, ["purchase"])
    params = btyd.fit(summ, seed=0)
    want = btyd.predict(summ, params, 30).toPandas().set_index("user_id")["bgnbd_gg_value"]
    users = events.where(F.col("event_date") <= D).select("user_id").distinct()
    rows = btyd.with_purchases(users, summ).toPandas().set_index("user_id").loc[want.index]
    got = np.expm1(spend_features(rows, {**params, "horizon_days": 30})[:, 0].astype(np.float64))
    assert (want > 0).sum() > 20
    assert np.allclose(got, want.to_numpy(), rtol=1e-5, atol=1e-4)


def test_scoring_reads_the_events_only_when_the_kept_value_blend_uses_the_baseline():
    """``btyd.scoring_rows`` joins the purchase summary of D (a pass over the events)
    only for an artifact whose kept value blend gives BG/NBD x Gamma-Gamma a weight."""
    users = object()

    def events_read():
        raise AssertionError("the events were read")

    for stack in (
        None,
        {},
        {"value": {"kept": True, "blend": [1.0, 0.5]}},
        {"value": {"kept": False, "blend": [1.0, 0.5, 0.3]}},
        {"value": {"kept": True, "blend": [1.0, 0.5, 0.0]}},
    ):
        assert btyd.scoring_rows(users, stack, events_read) is users, stack
    with pytest.raises(AssertionError, match="events were read"):
        btyd.scoring_rows(users, {"value": {"kept": True, "blend": [0.6, 0.0, 0.55]}}, events_read)
