"""The Databricks bundle (databricks.yml + resources/): every task runs the wheel's
entry point with arguments the job parses and a conf that exists, on the runtime
the project is pinned to, and the stage groups cover the pipeline in order."""

import re

import yaml

from lifecycle_jobs.nightly import parser
from lifecycle_recs.config import load_config, parse_overrides
from lifecycle_recs.names import PIPELINE_STAGES
from tests.helpers import ROOT


def _load(name):
    return yaml.safe_load((ROOT / name).read_text())


def test_the_bundle_job_runs_every_stage_once_in_order_through_the_entry_point():
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
        stages += args.stages
        previous = task["task_key"]
    assert tuple(stages) == PIPELINE_STAGES
    data = job["tasks"][0]["python_wheel_task"]["parameters"]
    assert "--training-snapshot" in data  # train and evaluate, in later tasks, read T
