"""The README quotes the committed quality runs as they are (benchmarks/quality_tables.py)."""

import importlib.util

from tests.helpers import ROOT


def _tables():
    spec = importlib.util.spec_from_file_location(
        "quality_tables", ROOT / "benchmarks" / "quality_tables.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_quality_section_matches_the_committed_runs():
    qt = _tables()
    readme = (ROOT / "README.md").read_text()
    assert qt.readme_section(readme) == qt.section().strip(), (
        "README quality tables are stale: regenerate with python benchmarks/quality_tables.py --write"
    )


def test_every_run_has_a_verdict_per_comparison_and_a_user_count(tmp_path):
    qt = _tables()
    for name, _ in qt.DATASETS:
        run = qt.parse(str(ROOT / "benchmarks" / "results" / f"quality_{name}.out"))
        assert run["run"].startswith(f"{name}: D=")
        for r in run["rows"]:
            assert r["verdict"] in qt.VERDICT and int(r["n"]) > 0
            spans_0 = float(r["low"]) <= 0 <= float(r["high"])
            assert spans_0 == (r["verdict"] == "inconclusive"), r
    bad = tmp_path / "quality_x.out"
    bad.write_text("# header\nno results here\n")
    try:
        qt.parse(str(bad))
    except ValueError as e:
        assert "no RESULT lines" in str(e)
    else:
        raise AssertionError("a run without RESULT lines must not render as an empty table")
