"""docs/quality.md quotes the committed quality runs as they are (benchmarks/quality_tables.py)."""

import importlib.util

from tests.helpers import ROOT


def _tables(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as `python benchmarks/x.py` runs it
    spec = importlib.util.spec_from_file_location(
        "quality_tables", ROOT / "benchmarks" / "quality_tables.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_quality_doc_matches_the_committed_runs(monkeypatch):
    qt = _tables(monkeypatch)
    doc = (ROOT / "docs" / "quality.md").read_text()
    assert qt.doc_section(doc) == qt.section().strip(), (
        "docs/quality.md's tables are stale: regenerate with python benchmarks/quality_tables.py "
        "--write"
    )


def test_every_run_has_a_verdict_per_comparison_and_a_user_count(tmp_path, monkeypatch):
    qt = _tables(monkeypatch)
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
