"""spark-submit on a real (standalone) cluster: a master and a worker on 127.0.0.1
started with pyspark's own ``bin/spark-class`` (pip's pyspark has no
``start-master.sh``), ``jobs/nightly.py`` submitted with the package as a zip and
the conf; the tables it lands equal those of the test session's run of the same
conf. The processes it started are stopped by their ids."""

import os
import socket
import subprocess
import sys
import time
import zipfile

import pytest
import yaml

from lifecycle_recs.io import tables
from tests.helpers import ROOT, sorted_rows

STAGES = ["ingest", "sequences", "lifecycle"]
DELTA = "io.delta:delta-spark_2.13:4.0.0"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port, proc, timeout=90):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on {port}")


def spark_home():
    import pyspark

    return os.path.dirname(pyspark.__file__)


@pytest.mark.slow
def test_spark_submit_to_a_standalone_cluster_lands_the_same_tables(
    spark, make_cfg, reference, tmp_path
):
    # the test session's run of the same conf is the shared clean night (D and T)
    conf = {**reference.conf, "stages": STAGES, "validation": {"on_quarantine_excess": "warn"}}
    local, d = reference.cfg, reference.date

    home, port = spark_home(), _free_port()
    env = dict(
        os.environ,
        SPARK_HOME=home,
        PYSPARK_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(tmp_path / "logs"),
        SPARK_WORKER_DIR=str(tmp_path / "work"),
    )
    cls = os.path.join(home, "bin", "spark-class")
    logs = open(tmp_path / "cluster.log", "w")
    started = []
    try:
        master = subprocess.Popen(
            [
                cls,
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(_free_port()),
            ],
            env=env,
            stdout=logs,
            stderr=subprocess.STDOUT,
        )
        started.append(master)
        _wait_port(port, master)
        worker = subprocess.Popen(
            [
                cls,
                "org.apache.spark.deploy.worker.Worker",
                f"spark://127.0.0.1:{port}",
                "--host",
                "127.0.0.1",
                "--cores",
                "2",
                "--memory",
                "2g",
                "--webui-port",
                str(_free_port()),
            ],
            env=env,
            stdout=logs,
            stderr=subprocess.STDOUT,
        )
        started.append(worker)
        package = tmp_path / "lifecycle_recs.zip"
        with zipfile.ZipFile(package, "w") as z:
            for dirpath, _, files in os.walk(ROOT / "lib" / "lifecycle_recs"):
                for f in files:
                    if f.endswith(".py"):
                        full = os.path.join(dirpath, f)
                        z.write(full, os.path.relpath(full, ROOT / "lib"))
        conf_file = tmp_path / "cluster.yaml"
        conf_file.write_text(
            yaml.safe_dump(
                {
                    **conf,
                    "lakehouse": str(tmp_path / "cluster"),
                    "spark": {"use_existing_session": True},
                }
            )
        )
        submit = [
            os.path.join(home, "bin", "spark-submit"),
            "--master",
            f"spark://127.0.0.1:{port}",
            "--py-files",
            str(package),
            "--packages",
            DELTA,
            "--conf",
            "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
            "--conf",
            "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
            "--conf",
            "spark.executor.memory=1g",
            "--conf",
            "spark.sql.shuffle.partitions=2",
            str(ROOT / "jobs" / "nightly.py"),
            "--conf",
            str(conf_file),
            "--date",
            d,
            "--training-snapshot",
        ]
        p = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-6000:]
        # the worker launched this application's executors (its work dir has the app's folder)
        assert [a for a in os.listdir(tmp_path / "work") if a.startswith("app-")], p.stderr[-3000:]
    finally:
        for proc in reversed(started):  # stop exactly what this test started
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        logs.close()
    cluster = make_cfg(lakehouse=str(tmp_path / "cluster"), **conf)
    for t in ("events", "events_quarantine", "items", "user_sequences", "user_lifecycle"):
        assert sorted_rows(
            tables.read(spark, cluster, t).drop("ingested_at", "updated_at")
        ) == sorted_rows(tables.read(spark, local, t).drop("ingested_at", "updated_at")), t
    runs = tables.read(spark, cluster, "pipeline_runs").where("stage = 'run'").collect()
    assert [r["status"] for r in runs] == ["published"]
