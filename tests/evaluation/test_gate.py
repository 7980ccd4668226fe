"""The strategy gate: a lifecycle strategy that lost to the plain ranking in the latest
nightly evaluation of an earlier night is not applied by the score stage (a strategy is
kept only where it wins or ties)."""

import shutil

import pytest
from pyspark.sql import functions as F

from lifecycle_recs.dates import add_days, training_date
from lifecycle_recs.evaluation.gate import losing_strategies
from lifecycle_recs.evaluation.report import metric_rows
from lifecycle_recs.io import tables
from lifecycle_recs.pipeline import run_nightly
from tests.conftest import cfg_under

AT_RISK, NEW = "at_risk_long_term_value", "new_user_content_popularity"


def _rows(snapshot, strategy, verdicts, dataset="nightly"):
    """Strategy-vs-plain rows with a verdict per metric ({metric: verdict})."""
    out = []
    for metric, verdict in verdicts.items():
        r = metric_rows(
            snapshot,
            dataset,
            "ours-vs-plain_personalized",
            "v",
            f"strategy[{strategy}]",
            {metric: -0.02 if verdict == "baseline better" else 0.001},
            n_users=40,
        )[0]
        out.append(
            {
                **r,
                "ci_low": -0.05,
                "ci_high": -0.001 if verdict == "baseline better" else 0.01,
                "verdict": verdict,
            }
        )
    return out


def _plant(spark, cfg, rows_by_night):
    for (night, dataset), rows in rows_by_night.items():
        tables.replace_metric_rows(spark, cfg, rows, night, dataset)


@pytest.mark.slow
def test_the_latest_earlier_nightly_evaluation_decides(spark, make_cfg):
    cfg = make_cfg()
    d = "2026-03-31"
    t = training_date(d, cfg.lifecycle.horizon_days)
    assert losing_strategies(spark, cfg, d) == {}  # no evaluation table yet: every strategy applies
    older, latest = add_days(t, -2), add_days(t, -1)
    _plant(
        spark,
        cfg,
        {
            # an older night where the new-user blend lost: superseded by the latest one
            (older, "nightly"): _rows(older, NEW, {"recall@10": "baseline better"}),
            (latest, "nightly"): _rows(
                latest,
                AT_RISK,
                {
                    "recall@10": "inconclusive",
                    "ndcg@10": "baseline better",
                    "mean_item_ltv": "ours better",
                },
            )
            + _rows(latest, NEW, {"recall@10": "inconclusive", "mean_item_ltv": "ours better"}),
            # another protocol's rows, and tonight's own evaluation (of T, written after score):
            # ignored
            (latest, "movielens_recbole"): _rows(
                latest, NEW, {"recall@10": "baseline better"}, "movielens_recbole"
            ),
            (t, "nightly"): _rows(t, NEW, {"recall@10": "baseline better"}),
        },
    )
    off = losing_strategies(spark, cfg, d)
    assert list(off) == [AT_RISK]
    assert off[AT_RISK].startswith(
        f"lost to the plain ranking in the evaluation of {latest}: ndcg@10 -0.0200"
    )
    assert "40 users" in off[AT_RISK] and "recall" not in off[AT_RISK]
    # the night after, tonight's evaluation of T is the latest earlier one
    assert list(losing_strategies(spark, cfg, add_days(d, 1))) == [NEW]
    assert losing_strategies(spark, make_cfg(recommend={"strategy_gate": False}), d) == {}


def test_an_evaluation_table_from_before_verdicts_turns_nothing_off(spark, make_cfg):
    """A lake whose evaluation_metrics predates the verdict columns (the next evaluate adds
    them): score must not fail on it before that evaluate has run."""
    cfg = make_cfg()
    old = [
        {k: v for k, v in r.items() if k not in ("n_users", "ci_low", "ci_high", "verdict")}
        for r in metric_rows(
            "2026-01-01",
            "nightly",
            "ours-vs-plain_personalized",
            "v",
            f"strategy[{AT_RISK}]",
            {"ndcg@10": -0.5},
        )
    ]
    spark.createDataFrame(old).write.format("delta").partitionBy("snapshot_date").save(
        tables.path(cfg, "evaluation_metrics")
    )
    assert "verdict" not in tables.read(spark, cfg, "evaluation_metrics").columns
    assert losing_strategies(spark, cfg, "2026-03-31") == {}


@pytest.mark.slow
def test_the_score_stage_serves_a_losing_strategys_users_the_plain_ranking(
    spark, reference, tmp_path
):
    """On a copy of the reference lake: with the at-risk strategy lost in an earlier night's
    evaluation, a rerun of score lands no at-risk lists, for the same users, and says why."""
    lake = tmp_path / "lake"
    shutil.copytree(reference.cfg.lakehouse, lake)
    cfg = cfg_under(tmp_path, **{**reference.conf, "lakehouse": str(lake)})
    d = reference.date
    before = tables.read(spark, cfg, "recommendations", d)
    served = before.where(F.col("strategy") == AT_RISK).select("user_id").distinct().count()
    assert served > 0  # the reference night has at-risk users
    night = add_days(training_date(d, cfg.lifecycle.horizon_days), -1)
    _plant(
        spark,
        cfg,
        {(night, "nightly"): _rows(night, AT_RISK, {"mean_item_ltv": "baseline better"})},
    )
    info = run_nightly(spark, cfg, d, stages=["score"]).results[0].info
    assert list(info["strategies_off"]) == [AT_RISK] and AT_RISK not in info["strategies"]
    after = tables.read(spark, cfg, "recommendations", d)
    assert after.where(F.col("strategy") == AT_RISK).count() == 0
    assert after.select("user_id").distinct().count() == before.select("user_id").distinct().count()
    # by hand, too, with the gate off
    hand = cfg_under(
        tmp_path,
        **{
            **reference.conf,
            "lakehouse": str(lake),
            "recommend": {"k": 5, "strategy_gate": False, "strategies_off": [NEW]},
        },
    )
    info = run_nightly(spark, hand, d, stages=["score"]).results[0].info
    assert (
        info["strategies_off"] == {NEW: "recommend.strategies_off"}
        and AT_RISK in info["strategies"]
    )
