"""The wheel installs on Databricks Runtime 17.3 LTS ML without changing the runtime:
built here, resolved by pip against the runtime's pins (constraints/dbr-17.3-ml.txt)."""

import json
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import ROOT

CONSTRAINTS = ROOT / "constraints" / "dbr-17.3-ml.txt"


def pins():
    out = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[name.lower().replace("_", "-")] = version
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    (whl,) = out.glob("lifecycle_recs-*.whl")
    return whl


def test_wheel_requires_neither_spark_nor_delta_and_has_no_ceilings(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
    base = [
        line.split(":", 1)[1].strip()
        for line in meta.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert base and not [
        r for r in base if r.lower().startswith(("pyspark", "delta-spark", "petastorm"))
    ]
    assert not [r for r in base if "<" in r or "==" in r], base
    assert any("lifecycle_recs/ml/feed.py" in n for n in zipfile.ZipFile(wheel).namelist())


@pytest.mark.slow
def test_installing_the_wheel_under_the_runtime_pins_changes_none_of_them(wheel, tmp_path):
    """pip resolves the wheel and everything it needs as if into an empty environment,
    constrained to the runtime's versions: it must succeed, keep every pinned version,
    and bring no Spark or Delta of its own."""
    report = tmp_path / "report.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "-q",
            "--report",
            str(report),
            "-c",
            str(CONSTRAINTS),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    chosen = {
        i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
        for i in json.loads(report.read_text())["install"]
    }
    assert "lifecycle-recs" in chosen and "pyspark" not in chosen and "delta-spark" not in chosen
    changed = {n: (chosen[n], v) for n, v in pins().items() if n in chosen and chosen[n] != v}
    assert not changed, f"installing the wheel would change runtime packages: {changed}"
    for name in ("numpy", "pyarrow", "torch", "pandas", "scikit-learn"):
        assert chosen.get(name) == pins()[name]
