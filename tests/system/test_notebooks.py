"""The Databricks source-format notebooks run top to bottom, cell by cell
(``# COMMAND ----------``), on a small published lakehouse; ``display`` falls
back to ``show()`` and saved figures locally."""

import os
import re

import pytest
import yaml

from lifecycle_recs.evaluation.report import metric_rows
from lifecycle_recs.io import tables
from lifecycle_recs.ml import artifacts
from lifecycle_recs.pipeline import run_nightly
from tests.helpers import ROOT, make_artifact

NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.py") if not p.name.startswith("_"))


def run_cells(name, scope):
    """A notebook's cells in order, as a workspace runs them: ``%run ./other`` runs that
    notebook's cells in the same scope first."""
    source = (ROOT / "notebooks" / name).read_text()
    assert source.startswith("# Databricks notebook source\n")
    cells = source.split("# COMMAND ----------")
    for i, cell in enumerate(cells):
        included = re.findall(r"^# MAGIC %run \./(\w+)\s*$", cell, re.M)
        for other in included:
            run_cells(f"{other}.py", scope)
        exec(compile(cell, f"{name}[cell {i}]", "exec"), scope)
    return source, cells


STAGES = ["ingest", "sequences", "lifecycle", "score"]


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    from lifecycle_recs.config import config_from_dict

    root = tmp_path_factory.mktemp("nb")
    art = root / "artifacts"
    lapsed_params = {
        "min_silence_days": 60.0,
        "min_log_silence": 4.1109,
        "intercept": -1.5,
        "slope": 0.9,
        "rate_slope": -0.07,
        "silence_z": 3.0,
        "applied": True,
        "users": 2386,
        "returned": 118,
        "periods": 6,
        "held_out": {"users": 64, "returned": 4, "model_roc_auc": 0.579, "lapsed_roc_auc": 0.646},
    }
    artifacts.promote_version(
        str(art),
        os.path.basename(make_artifact(art, config={"lapsed": lapsed_params})),
        "2000-01-01",
    )
    conf = {
        "lakehouse": str(root / "lake"),
        "artifacts": str(art),
        "reports": str(root / "reports"),
        "source": {"kind": "synthetic", "raw_path": str(root / "raw")},
        "synthetic": {"seed": 9, "n_users": 40, "n_items": 60, "days": 90, "partitions": 2},
        "validation": {"on_quarantine_excess": "warn"},
        "train": {"device": "cpu"},
        "stages": STAGES,
    }
    cfg = config_from_dict(conf, base=str(ROOT))
    d = run_nightly(spark, cfg, stages=STAGES).snapshot_date
    for night, auc in (("2026-01-01", 0.81), ("2026-02-01", 0.84)):  # two evaluated nights
        rows = metric_rows(night, "nightly", "ours", "v", "churn", {"roc_auc": auc}) + metric_rows(
            night, "nightly", "recency", "-", "churn", {"roc_auc": 0.8}
        )
        lost = metric_rows(
            night,
            "nightly",
            "ours-vs-plain_personalized",
            "v",
            "strategy[at_risk_long_term_value]",
            {"ndcg@10": -0.03},
            n_users=12,
        )  # the later night's turns the strategy off
        rows += [
            {**r, "ci_low": -0.05, "ci_high": -0.01, "verdict": "baseline better"} for r in lost
        ]
        tables.replace_metric_rows(spark, cfg, rows, night, "nightly")
    path = root / "conf.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path, cfg, d


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(spark, lake, name, monkeypatch, capsys):
    conf, cfg, d = lake
    monkeypatch.setenv("LIFECYCLE_CONF", str(conf))
    scope = {"__name__": "__notebook__"}
    source, cells = run_cells(name, scope)
    assert len(cells) >= 3 and "lifecycle_recs" in scope  # the bootstrap ran
    out = capsys.readouterr().out
    assert f"last published night: {d}" in out and "|" in out  # at least one table was shown
    if "losing_strategies" in source:  # the strategy gate's decision for the published night
        assert (
            "not applied on" in out
            and "lost to the plain ranking in the evaluation of 2026-02-01" in out
        )
    if "lapsed.describe" in source:  # the published night's model and its lapsed users' model
        assert (
            "lapsed users: users silent > 60 days get the silence model; fitted on 2386 lapsed "
            "user-periods over 6 period(s), 118 came back; silence slope 0.900 (z 3.00)"
        ) in out
        assert "ROC AUC model 0.579 vs silence model 0.646" in out
    if "nb.display(fig" in source:
        assert os.listdir(os.path.join(cfg.reports, "notebooks"))


def test_a_notebook_on_databricks_reads_its_widgets_and_uses_the_runtimes_display(
    spark, lake, monkeypatch, capsys, tmp_path
):
    """From its own folder, with the widgets a user sets (the conf, an override, a night) and
    the runtime's display: no environment variable, no checkout path."""
    from tests.test_notebook import DBUtils

    conf, cfg, d = lake
    monkeypatch.delenv("LIFECYCLE_CONF", raising=False)
    monkeypatch.chdir(ROOT / "notebooks")
    shown = []
    dbutils = DBUtils(conf=str(conf), set=f"reports={tmp_path / 'dev-reports'}", night=d)
    scope = {"__name__": "__notebook__", "dbutils": dbutils, "display": shown.append}
    run_cells("stages_and_transitions.py", scope)
    assert {"conf", "set", "night"} <= set(dbutils.widgets.made)
    assert scope["cfg"].reports == str(tmp_path / "dev-reports") and scope["D"] == d
    assert shown and all(hasattr(x, "columns") for x in shown)  # DataFrames, to the runtime
    assert f"reading {d}" in capsys.readouterr().out
