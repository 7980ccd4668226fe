"""MLflow (optional): a training run logs params, per-epoch and held-out metrics and
registers the artifact with a signature; evaluation figures land on the same run;
scoring can use "the model with alias X". Local file store; no Spark needed."""

import os

import pytest

from lifecycle_recs.config import config_from_dict
from lifecycle_recs.ml import artifacts, registry
from tests.helpers import ROOT, make_artifact

mlflow = pytest.importorskip("mlflow")


def _cfg(tmp_path, **mlflow_conf):
    uri = (tmp_path / "mlruns").as_uri()
    return config_from_dict(
        {
            "artifacts": str(tmp_path / "artifacts"),
            "mlflow": {"tracking_uri": uri, "experiment": "lc-test", **mlflow_conf},
        },
        base=str(ROOT),
    )


def test_disabled_logs_nothing(tmp_path):
    cfg = _cfg(tmp_path, enabled=False)
    assert registry.log_training(cfg, "unused", {}, {}, True, "2026-01-01") is None
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_training_is_logged_registered_and_served_by_alias(tmp_path):
    cfg = _cfg(tmp_path, registered_model="lc_model", alias="champion")
    art_dir = make_artifact(tmp_path / "artifacts")
    info = {
        "history": [
            {"epoch": 0, "train_loss": 1.0, "val_loss": 1.2},
            {"epoch": 1, "train_loss": 0.5},
        ]
    }
    run_id = registry.log_training(
        cfg,
        art_dir,
        info,
        {"val_churn_auc": 0.81, "train_rows": 10, "note": "x"},
        True,
        "2026-01-01",
    )
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params["train.epochs"] == str(cfg.train.epochs)
    assert run.data.metrics["val_churn_auc"] == pytest.approx(0.81)
    assert {m.step: m.value for m in client.get_metric_history(run_id, "train_loss")} == {
        0: 1.0,
        1: 0.5,
    }
    version = os.path.basename(art_dir)
    assert run.data.tags[registry.VERSION_TAG] == version
    mv = client.get_model_version_by_alias("lc_model", "champion")
    info_model = mlflow.models.get_model_info(f"models:/lc_model/{mv.version}")
    assert {c["name"] for c in info_model.signature.inputs.to_dict()} >= {
        "user_id",
        "item_ids",
        "stage",
    }
    # the registered model loads without the wheel: an input example, the package's code
    # and its requirements travel with it
    assert info_model.saved_input_example_info is not None
    local = mlflow.artifacts.download_artifacts(f"models:/lc_model/{mv.version}")
    assert os.path.isfile(os.path.join(local, "code", "lifecycle_recs", "ml", "scorer.py"))
    reqs = open(os.path.join(local, "requirements.txt")).read()
    assert "torch" in reqs and "lifecycle" not in reqs and "pyspark" not in reqs
    # evaluation figures go to the run of the artifact they measured
    registry.log_evaluation(
        cfg,
        version,
        [
            {"task": "churn", "model": "ours", "metric": "roc_auc", "value": 0.8},
            {"task": "long_horizon", "model": "ours", "metric": "recall@10", "value": 0.2},
        ],
    )
    assert client.get_run(run_id).data.metrics[
        "eval.long_horizon.ours.recall_at_10"
    ] == pytest.approx(0.2)
    # ... and to the registered model version, where the registry shows them
    linked = client.get_logged_model(mv.model_id).metrics
    assert {m.key: m.value for m in linked}["eval.churn.ours.roc_auc"] == pytest.approx(0.8)
    # scoring by alias: the registered artifact's files, downloaded under artifacts/_registry
    served = registry.artifact_for(
        _cfg(tmp_path, registered_model="lc_model", score_alias="champion"), "2030-01-01"
    )
    assert artifacts.load(served).version == version and "_registry" in served
    # without an alias, the night's promotion as before
    assert registry.artifact_for(cfg, "2026-01-01") == artifacts.resolve(
        cfg.artifacts, as_of="2026-01-01"
    )
    # a model that is not promoted does not take the alias
    art2 = make_artifact(tmp_path / "artifacts", seed=1)
    registry.log_training(cfg, art2, {}, {}, False, "2026-01-02")
    assert client.get_model_version_by_alias("lc_model", "champion").version == mv.version


@pytest.mark.slow
def test_a_reused_artifact_keeps_its_run_and_takes_the_alias_back(tmp_path):
    cfg = _cfg(tmp_path, registered_model="lc_model", alias="champion")
    first = make_artifact(tmp_path / "artifacts")
    run_id = registry.log_training(cfg, first, {}, {"train_rows": 10}, True, "2026-01-01")
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("lc_model", "champion").version
    other = make_artifact(tmp_path / "artifacts", seed=1)
    registry.log_training(cfg, other, {}, {"train_rows": 10}, True, "2026-01-02")
    assert client.get_model_version_by_alias("lc_model", "champion").version != champion
    # the night is rerun and reuses the first artifact: no new run, the alias comes back to it
    assert registry.log_reuse(cfg, first, {}, {"train_rows": 10}, True, "2026-01-02") == run_id
    assert client.get_model_version_by_alias("lc_model", "champion").version == champion
    assert len(client.search_model_versions("name = 'lc_model'")) == 2
    # an artifact whose first run stopped before logging gets its training run now
    third = make_artifact(tmp_path / "artifacts", seed=2)
    new_run = registry.log_reuse(cfg, third, {}, {"train_rows": 10}, False, "2026-01-03")
    assert new_run and registry.remembered_run(cfg, os.path.basename(third)) == new_run
