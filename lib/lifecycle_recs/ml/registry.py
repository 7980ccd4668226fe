"""Optional MLflow tracking and model registry (``mlflow`` conf section).

When ``mlflow`` is importable (Databricks ML runtimes ship mlflow-skinny) and
``mlflow.enabled``: the train stage logs its parameters, per-epoch metrics and
held-out metrics to a run tagged with the artifact version, and, with
``mlflow.registered_model`` set, registers the artifact as a pyfunc model with a
signature (the artifact directory is the model's files; scoring never unpickles
anything) and moves ``mlflow.alias`` to it when it is promoted. The evaluate
stage logs its figures to the same run. With ``mlflow.score_alias`` set, score
and evaluate use ``models:/<registered_model>@<score_alias>`` instead of the
night's promotion under ``artifacts``. Without mlflow everything works as
before. No Spark here."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import math
import os
import re
from typing import Dict, List, Optional

import pandas as pd

from lifecycle_recs.config import Config, MlflowConf

log = logging.getLogger(__name__)
VERSION_TAG = "lifecycle.artifact_version"


def enabled(conf: MlflowConf) -> bool:
    return bool(conf.enabled) and importlib.util.find_spec("mlflow") is not None


def on_databricks() -> bool:
    """Inside a Databricks runtime (its clusters set ``DATABRICKS_RUNTIME_VERSION``)."""
    return bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def experiment_name(conf: MlflowConf) -> str:
    """``mlflow.experiment``, checked against the workspace's rule: on Databricks (or with a
    ``databricks`` tracking URI) an experiment is an absolute workspace path, and a relative
    name fails there when the first run is logged, after the night has trained."""
    name = conf.experiment
    remote = on_databricks() or str(conf.tracking_uri or "").startswith("databricks")
    if remote and not str(name).startswith("/"):
        raise ValueError(
            f"mlflow.experiment {name!r} is a relative name: Databricks accepts only absolute "
            "workspace paths (/Workspace/Shared/<name>, /Workspace/Users/<you>/<name>); set "
            "mlflow.experiment (the bundle passes ${var.experiment}) or mlflow.enabled: false"
        )
    return name


def _uris(conf: MlflowConf):
    import mlflow

    if conf.tracking_uri:
        mlflow.set_tracking_uri(conf.tracking_uri)
        mlflow.set_registry_uri(conf.registry_uri or conf.tracking_uri)
    elif conf.registry_uri:
        mlflow.set_registry_uri(conf.registry_uri)
    return mlflow


def _mlflow(conf: MlflowConf):
    mlflow = _uris(conf)
    mlflow.set_experiment(experiment_name(conf))
    return mlflow


# embedding.model values MLflow resolves: a registered model version or alias, a run's files
MLFLOW_MODEL_URIS = ("models:/", "runs:/")


def fetch_model_files(uri: str, root: str, conf: MlflowConf) -> str:
    """The Hugging Face model directory (the shallowest one holding ``config.json``) of an
    MLflow ``models:/`` or ``runs:/`` URI, downloaded once by the driver into
    ``<root>/<hash of the URI>``, a path every node reads (the artifacts' Volume): executors
    then load it like any directory and never need the registry's credentials. A URI that
    moves (an alias) is fetched again each time its target differs."""
    import hashlib
    import shutil
    import tempfile

    if importlib.util.find_spec("mlflow") is None:
        raise ValueError(f"embedding.model {uri!r} needs mlflow, which is not installed")
    if "://" in root:
        raise ValueError(
            f"embedding.model {uri!r}: the model files are fetched into the artifacts path, "
            f"which must be a local or mounted path (a Volume), not {root!r}"
        )
    mlflow = _uris(conf)
    target = uri
    if uri.startswith("models:/") and "@" in uri:  # an alias: key the copy by its version
        name, alias = uri[len("models:/") :].split("@", 1)
        version = mlflow.MlflowClient().get_model_version_by_alias(name, alias).version
        target = f"models:/{name}/{version}"
    dest = os.path.join(root, hashlib.sha256(target.encode()).hexdigest()[:16])
    if not os.path.exists(os.path.join(dest, ".complete")):
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=root, prefix=".fetch-")
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=target, dst_path=tmp)
            open(os.path.join(tmp, ".complete"), "w").write(target + "\n")
            shutil.rmtree(dest, ignore_errors=True)  # a half copy of a killed driver
            os.rename(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    found = sorted(
        (d for d, _, files in os.walk(dest) if "config.json" in files),
        key=lambda d: (d.count(os.sep), d),
    )
    if not found:
        raise ValueError(f"embedding.model {uri!r} holds no Hugging Face model (no config.json)")
    log.info("embedding model %s (%s) at %s", uri, target, found[0])
    return found[0]


def _params(cfg: Config) -> Dict[str, object]:
    out = {}
    for section in ("model", "train", "sequences", "lifecycle", "recommend"):
        for k, v in dataclasses.asdict(getattr(cfg, section)).items():
            out[f"{section}.{k}"] = v if not isinstance(v, (dict, list, tuple)) else str(v)
    return out


def _numeric(metrics: Dict[str, object]) -> Dict[str, float]:
    return {
        metric_name(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def example_input(vocab_items: List[str], max_len: int) -> pd.DataFrame:
    """One user row in the scorer's input shape (for the model signature)."""
    items = [x for x in vocab_items if x][: max(1, min(3, max_len))] or ["item"]
    n = len(items)
    return pd.DataFrame(
        [
            {
                "user_id": "example",
                "item_ids": items,
                "event_types": ["view"] * n,
                "time_gaps_hours": [0.0] * n,
                "values": [0.0] * n,
                "sequence_length": n,
                "n_events": n,
                "days_since_last_event": 1.0,
                "tenure_days": 10.0,
                "monetary_total": 0.0,
                "active_days": 1,
                "stage": "active",
            }
        ]
    )


PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pip_requirements() -> List[str]:
    """The wheel's own requirements (its extras left out): what a registered model needs
    besides the package code it carries."""
    from importlib import metadata

    try:
        reqs = metadata.requires("lifecycle-recs") or []
    except metadata.PackageNotFoundError:  # run from a source tree: the runtime's basics
        reqs = ["numpy", "pandas", "pyarrow", "torch", "transformers", "tokenizers", "pyyaml"]
    return sorted(r.split(";")[0].strip() for r in reqs if "extra ==" not in r)


def _python_model():
    import mlflow

    class LifecycleModel(mlflow.pyfunc.PythonModel):
        """users (the scorer's input columns) -> scored rows, from the artifact files."""

        def load_context(self, context):
            from lifecycle_recs.ml.scorer import load_scorer

            self.scorer = load_scorer(context.artifacts["artifact"], "auto")

        def predict(self, context, model_input, params=None):
            from lifecycle_recs.config import RecommendConf
            from lifecycle_recs.ml.scorer import score_batch

            return score_batch(model_input, self.scorer, RecommendConf())

    return LifecycleModel()


def metric_name(name: str) -> str:
    """An MLflow-safe metric name: '@' as '_at_', any other character MLflow refuses as '_'."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", name.replace("@", "_at_"))


def log_training(
    cfg: Config, art_dir: str, info: Dict, metrics: Dict, promoted: bool, night: str
) -> Optional[str]:
    """Log a training run (and register the model); the run id, or None when disabled."""
    conf = cfg.mlflow
    if not enabled(conf):
        return None
    mlflow = _mlflow(conf)
    version = os.path.basename(art_dir)
    with mlflow.start_run(run_name=f"train {version}") as run:
        mlflow.set_tags(
            {VERSION_TAG: version, "lifecycle.night": night, "lifecycle.promoted": str(promoted)}
        )
        mlflow.log_params(_params(cfg))
        for rec in info.get("history", []):
            mlflow.log_metrics(
                _numeric({k: v for k, v in rec.items() if k != "epoch"}), step=int(rec["epoch"])
            )
        mlflow.log_metrics(_numeric({k: v for k, v in metrics.items() if k != "history"}))
        model_id = None
        if conf.registered_model:
            from mlflow.models import infer_signature

            from lifecycle_recs.config import RecommendConf
            from lifecycle_recs.ml import artifacts
            from lifecycle_recs.ml.scorer import load_scorer, score_batch

            art = artifacts.load(art_dir)
            example = example_input(list(art.vocab.item_id_array()), art.max_len)
            out = score_batch(example, load_scorer(art_dir, "cpu"), RecommendConf())
            mi = mlflow.pyfunc.log_model(
                name="model",
                python_model=_python_model(),
                artifacts={"artifact": art_dir},
                signature=infer_signature(example, out),
                input_example=example,
                # the package's own code travels with the model, its requirements are declared:
                # the registered model loads where the wheel is not installed
                code_paths=[PACKAGE_DIR],
                pip_requirements=pip_requirements(),
                registered_model_name=conf.registered_model,
            )
            model_id = getattr(mi, "model_id", None)
            if promoted and conf.alias:
                mlflow.MlflowClient().set_registered_model_alias(
                    conf.registered_model, conf.alias, mi.registered_model_version
                )
            log.info(
                "mlflow: registered %s version %s%s",
                conf.registered_model,
                mi.registered_model_version,
                f" as @{conf.alias}" if promoted and conf.alias else "",
            )
        _remember_run(cfg, version, run.info.run_id, model_id)
        return run.info.run_id


def log_reuse(
    cfg: Config, art_dir: str, info: Dict, metrics: Dict, promoted: bool, night: str
) -> Optional[str]:
    """A reused artifact (train found one from the same inputs): its remembered training
    run, with the alias moved to its registered version when it is promoted again; a
    new training run when none is remembered (the first run stopped before logging)."""
    conf = cfg.mlflow
    if not enabled(conf):
        return None
    run_id = remembered_run(cfg, os.path.basename(art_dir))
    if run_id is None:
        return log_training(cfg, art_dir, info, metrics, promoted, night)
    if promoted and conf.registered_model and conf.alias:
        client = _mlflow(conf).MlflowClient()
        versions = [
            v
            for v in client.search_model_versions(f"run_id = '{run_id}'")
            if v.name == conf.registered_model
        ]
        if versions:
            client.set_registered_model_alias(
                conf.registered_model, conf.alias, versions[0].version
            )
    return run_id


def remembered_run(cfg: Config, version: str) -> Optional[str]:
    """The latest training run of ``version`` (None when none was logged)."""
    return _remembered(cfg, version).get("run_id")


def _remembered(cfg: Config, version: str) -> Dict[str, Optional[str]]:
    """{run_id, model_id} of the latest training run of ``version`` (a file of an older
    version holds the run id alone)."""
    if not os.path.exists(_run_file(cfg, version)):
        return {}
    with open(_run_file(cfg, version)) as fh:
        text = fh.read().strip()
    if not text:
        return {}
    return json.loads(text) if text.startswith("{") else {"run_id": text}


def _run_file(cfg: Config, version: str) -> str:
    return os.path.join(cfg.artifacts, "_mlflow_runs", version)


def _remember_run(cfg: Config, version: str, run_id: str, model_id: Optional[str]) -> None:
    """The latest training run of ``version`` and its logged model (evaluate logs its
    figures to both)."""
    path = _run_file(cfg, version)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump({"run_id": run_id, "model_id": model_id}, fh)
    os.replace(tmp, path)


def log_evaluation(cfg: Config, version: str, rows: List[Dict]) -> Optional[str]:
    """Log the evaluation figures to the latest training run of ``version`` (a new run if none)."""
    conf = cfg.mlflow
    if not enabled(conf):
        return None
    mlflow = _mlflow(conf)
    # the latest run that trained this version (a rerun trains the same version again)
    seen = _remembered(cfg, version)
    run_id = seen.get("run_id")
    found = [mlflow.get_run(run_id)] if run_id else []
    figures = _numeric({f"eval.{r['task']}.{r['model']}.{r['metric']}": r["value"] for r in rows})
    with mlflow.start_run(
        run_id=found[0].info.run_id if found else None,
        run_name=None if found else f"evaluate {version}",
    ) as run:
        if not found:
            mlflow.set_tag(VERSION_TAG, version)
        # on the logged (registered) model too, where the registry shows them
        mlflow.log_metrics(figures, model_id=seen.get("model_id"))
        return run.info.run_id


def resolve_alias(cfg: Config) -> str:
    """The artifact directory of ``models:/<registered_model>@<score_alias>``, downloaded
    under ``<artifacts>/_registry/`` (a path every node can read, like the artifacts)."""
    conf = cfg.mlflow
    if not enabled(conf):
        raise RuntimeError(
            "mlflow.score_alias is set but mlflow is not installed (or mlflow.enabled is false)"
        )
    if not conf.registered_model:
        raise ValueError("mlflow.score_alias needs mlflow.registered_model")
    mlflow = _mlflow(conf)
    mv = mlflow.MlflowClient().get_model_version_by_alias(conf.registered_model, conf.score_alias)
    dst = os.path.join(cfg.artifacts, "_registry", conf.registered_model, str(mv.version))
    if not os.path.isdir(dst):
        os.makedirs(dst, exist_ok=True)
        mlflow.artifacts.download_artifacts(
            f"models:/{conf.registered_model}/{mv.version}", dst_path=dst
        )
    inner = os.path.join(dst, "artifacts")
    names = [n for n in os.listdir(inner) if os.path.isfile(os.path.join(inner, n, "model.pt"))]
    if len(names) != 1:
        raise FileNotFoundError(
            f"registered model {conf.registered_model} v{mv.version} has no artifact under {inner}"
        )
    return os.path.join(inner, names[0])


def artifact_for(cfg: Config, night: str) -> str:
    """The artifact directory score and evaluate use for ``night``."""
    from lifecycle_recs.ml import artifacts

    if cfg.mlflow.score_alias:
        return resolve_alias(cfg)
    return artifacts.resolve(cfg.artifacts, as_of=night)
