"""The Databricks bundle (databricks.yml + resources/): every file validates against the
Databricks CLI's bundle JSON schema, every reference resolves, prod meets the platform's
rules for a production target, every task runs the wheel's entry point with arguments the
job parses and a conf that exists (with an MLflow experiment the workspace accepts), on
the runtime the project is pinned to, and the stage groups cover the pipeline in order."""

import json
import re

import pytest
import yaml

from lifecycle_jobs.nightly import parser
from lifecycle_recs.config import load_config, parse_overrides
from lifecycle_recs.ml import registry
from lifecycle_recs.names import PIPELINE_STAGES
from tests.helpers import ROOT, SHARED


def _load(name):
    return yaml.safe_load((ROOT / name).read_text())


def test_the_bundle_job_runs_every_stage_once_in_order_through_the_entry_point(monkeypatch):
    bundle = _load("databricks.yml")
    assert set(bundle["targets"]) == {"dev", "prod"}
    assert {"catalog", "schema", "volume", "cpu_node_type", "gpu_node_type"} <= set(
        bundle["variables"]
    )
    job = _load("resources/nightly.job.yml")["resources"]["jobs"]["nightly"]
    assert [p["name"] for p in job["parameters"]] == ["date"]
    assert job["schedule"]["quartz_cron_expression"] and job["email_notifications"]["on_failure"]
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    assert clusters["gpu"]["spark_version"] == "17.3.x-gpu-ml-scala2.13"
    assert clusters["gpu"]["data_security_mode"] == "SINGLE_USER"  # dedicated: ML runtime with GPUs
    setup = (ROOT / "setup.py").read_text()
    dist = re.search(r'name="([^"]+)"', setup).group(1)
    stages, previous = [], None
    for task in job["tasks"]:
        assert task["job_cluster_key"] in clusters
        assert [d["task_key"] for d in task.get("depends_on", [])] == (
            [previous] if previous else []
        )
        wheel = task["python_wheel_task"]
        assert wheel["package_name"].replace("_", "-") == dist
        assert f"{wheel['entry_point']}=" in setup
        variables = {f"${{var.{k}}}": str(v["default"]) for k, v in bundle["variables"].items()}
        variables["${workspace.file_path}/"] = ""
        variables["${bundle.target}"] = "prod"
        assert "{{job.parameters.date}}" in wheel["parameters"]
        variables["{{job.parameters.date}}"] = "2026-11-21"  # what the job substitutes at run time
        params = []
        for p in wheel["parameters"]:
            for k, v in variables.items():
                p = p.replace(k, v)
            params.append(p)
        args = parser().parse_args(params)
        assert args.date == "2026-11-21"
        cfg = load_config(
            str(ROOT / args.conf), parse_overrides(args.set)
        )  # exists, valid with the overrides
        assert cfg.table_schema == "main.lifecycle" and cfg.artifacts.startswith(
            "/Volumes/main/lifecycle/"
        )
        assert cfg.lakehouse.startswith("/Volumes/main/lifecycle/")
        assert (
            cfg.mlflow.registered_model == "main.lifecycle.lifecycle_recs"
        )  # catalog.schema.model
        monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
        assert registry.experiment_name(cfg.mlflow).startswith("/Workspace/")
        stages += args.stages
        previous = task["task_key"]
    assert tuple(stages) == PIPELINE_STAGES
    data = job["tasks"][0]["python_wheel_task"]["parameters"]
    assert "--training-snapshot" in data  # train and evaluate, in later tasks, read T


BUNDLE_FILES = ["databricks.yml", *sorted(p.relative_to(ROOT).as_posix()
                                          for p in (ROOT / "resources").glob("*.yml"))]  # fmt: skip


def _schema():
    path = SHARED / "databricks" / "bundle-jsonschema.json"
    if not path.exists():
        pytest.skip(f"the Databricks bundle schema is not at {path}")
    text = path.read_text()
    # Go's Unicode classes, which Python's re refuses: ASCII letters and digits stand in
    # (in the JSON text a regex backslash is written twice)
    text = text.replace(r"[\\p{L}\\p{N}]", "[A-Za-z0-9]")
    text = text.replace(r"\\p{L}", "[A-Za-z]").replace(r"\\p{N}", "[0-9]")
    assert "p{L}" not in text and "p{N}" not in text
    return json.loads(text)


@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_every_bundle_file_validates_against_the_cli_bundle_schema(name):
    import jsonschema

    schema = _schema()
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(_load(name)), key=lambda e: list(e.path)
    )
    assert not errors, "\n".join(f"{name}: {'/'.join(map(str, e.path))}: {e.message[:300]}"
                                  for e in errors[:10])  # fmt: skip


def _strings(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


def test_every_variable_and_resource_reference_resolves():
    files = {name: _load(name) for name in BUNDLE_FILES}
    variables = set(files["databricks.yml"]["variables"])
    resources = {}
    for doc in files.values():
        for kind, items in (doc.get("resources") or {}).items():
            for key, body in items.items():
                resources[(kind, key)] = body
    for name, doc in files.items():
        for text in _strings(doc):
            for ref in re.findall(r"\$\{([^}]+)\}", text):
                head, *rest = ref.split(".")
                if head == "var":
                    assert rest[0] in variables, f"{name}: ${{{ref}}}: no variable {rest[0]}"
                elif head == "resources":
                    kind, key, field = rest[0], rest[1], rest[2]
                    assert (kind, key) in resources, f"{name}: ${{{ref}}}: no such resource"
                    assert field in resources[(kind, key)], f"{name}: ${{{ref}}}: no {field}"
                else:
                    assert head in ("bundle", "workspace"), f"{name}: ${{{ref}}}"


def test_prod_is_a_production_target_the_cli_deploys_and_dev_is_per_user():
    targets = _load("databricks.yml")["targets"]
    prod, dev = targets["prod"], targets["dev"]
    assert prod["mode"] == "production"
    assert prod["workspace"]["root_path"].startswith("/Workspace/")
    assert "service_principal_name" in prod["run_as"]  # never a person
    assert {p["level"] for p in prod["permissions"]} >= {"CAN_MANAGE", "CAN_VIEW"}
    assert "${workspace.current_user.short_name}" in dev["variables"]["schema"]
    assert dev["variables"]["experiment"].startswith("/Workspace/Users/")
    created = _load("resources/lifecycle.schema.yml")["resources"]
    assert set(created) == {"schemas", "volumes"}  # what the job writes to exists after deploy
    job = _load("resources/nightly.job.yml")["resources"]["jobs"]["nightly"]
    assert job["timeout_seconds"] > 0 and job["health"]["rules"][0]["metric"] == (
        "RUN_DURATION_SECONDS"
    )


def test_the_scheduled_date_is_the_last_complete_day():
    import datetime as dt

    from lifecycle_jobs.nightly import last_complete_day

    job = _load("resources/nightly.job.yml")["resources"]["jobs"]["nightly"]
    assert job["parameters"][0]["default"] == "last-complete-day"
    assert parser().parse_args(["--date", "last-complete-day"]).date == "last-complete-day"
    at_0230 = dt.datetime(2026, 11, 22, 2, 30)  # the schedule's hour: the 21st is complete
    assert last_complete_day(at_0230) == "2026-11-21"
    assert last_complete_day(at_0230, settle_days=2) == "2026-11-19"


def test_the_weekly_maintenance_job_runs_its_entry_point_on_the_nightly_tables():
    from lifecycle_jobs import maintenance

    job = _load("resources/maintenance.job.yml")["resources"]["jobs"]["maintenance"]
    assert "SUN" in job["schedule"]["quartz_cron_expression"]
    (task,) = job["tasks"]
    wheel = task["python_wheel_task"]
    assert (
        f"{wheel['entry_point']}=lifecycle_jobs.maintenance:main" in (ROOT / "setup.py").read_text()
    )
    bundle = _load("databricks.yml")
    variables = {f"${{var.{k}}}": str(v["default"]) for k, v in bundle["variables"].items()}
    variables["${workspace.file_path}/"] = ""
    params = []
    for p in wheel["parameters"]:
        for k, v in variables.items():
            p = p.replace(k, v)
        params.append(p)
    args = maintenance.parser().parse_args(params)
    cfg = load_config(str(ROOT / args.conf), parse_overrides(args.set))
    nightly = _load("resources/nightly.job.yml")["resources"]["jobs"]["nightly"]
    data = nightly["tasks"][0]["python_wheel_task"]["parameters"]
    for key in ("table_schema=", "lakehouse=", "train.feed_dir="):  # the same tables and feeds
        assert [p for p in wheel["parameters"] if p.startswith(key)] == [
            p for p in data if p.startswith(key)
        ]
    assert cfg.table_schema == "main.lifecycle"
