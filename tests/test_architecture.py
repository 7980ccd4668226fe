"""The floor plan of the package, as one table: which folder may import which.

Imports only go down (ground <- io, data, ml <- adapters <- evaluation <- stages <-
pipeline); ``ml`` never imports pyspark, so adapters are the only bridge between Spark
and the models; only stages write tables; nothing imports a stage but the registry in
``pipeline.py``; a basename appears once, except a Spark twin of an ``ml/`` module
(``adapters/<name>.py`` beside ``ml/<name>.py``) and a stage named after what it builds;
``tests/`` mirrors the package; and there are no import circles."""

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.helpers import ROOT

PKG = ROOT / "lib" / "lifecycle_recs"
WRITERS = (
    "write_snapshot",
    "merge_new",
    "upsert(",
    "replace_metric_rows",
    "ensure_table",
    ".merge(",
    'format("delta")',
    "saveAsTable",
    "DeltaTable.create",
)


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path):
    """Project modules imported anywhere in a file (top level or inside functions)."""
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            out |= {n for n in names if n.startswith("lifecycle_recs") and _exists(n)} or {target}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.startswith("lifecycle_recs") and _exists(m)}


def _exists(mod: str) -> bool:
    p = PKG.parent.joinpath(*mod.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def _graph():
    return {_module(p): _imports(p) - {_module(p)} for p in PKG.rglob("*.py")}


# The floors. A module's group is its folder under the package, or, at the top level,
# GROUND for the shared vocabulary and settings, its own name otherwise.
GROUND = ("names", "config", "config_checks", "dates", "schemas", "spark", "fs")
LAYERS = {
    "ground": {"ground"},
    "io": {"ground", "io"},
    "data": {"ground", "data"},
    "ml": {"ground", "ml"},
    "adapters": {"ground", "io", "data", "ml", "adapters"},
    "evaluation": {"ground", "io", "data", "ml", "adapters", "evaluation"},
    "context": {"ground"},
    "stages": {"ground", "io", "data", "ml", "adapters", "evaluation", "context", "stages"},
    "pipeline": {"ground", "io", "data", "ml", "adapters", "evaluation", "context", "stages"},
    "maintenance": {"ground", "io"},
    "summary": {"ground", "io", "data", "ml", "adapters", "evaluation", "context", "pipeline"},
    "notebook": {"ground", "io", "data", "ml", "adapters", "evaluation"},
}
# Spark-free floors: a test imports them with pyspark made unimportable
SPARK_FREE = ("ml",)


def group(mod: str) -> str:
    parts = mod.split(".")[1:]
    if not parts:
        return "ground"
    if len(parts) == 1 and parts[0] in GROUND:
        return "ground"
    return parts[0]


def test_every_module_has_a_floor():
    missing = sorted({group(m) for m in _graph()} - set(LAYERS))
    assert not missing, f"modules outside the floor plan (add them to LAYERS): {missing}"


def test_imports_only_go_down_the_floors():
    wrong = [
        f"{mod} ({group(mod)}) imports {d} ({group(d)})"
        for mod, deps in _graph().items()
        for d in deps
        if group(d) not in LAYERS[group(mod)]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_spark_free_floors_never_import_pyspark():
    for floor in SPARK_FREE:
        code = (
            "import sys; sys.modules['pyspark'] = None\nimport importlib, pkgutil, "
            f"lifecycle_recs.{floor} as pkg\nfor m in pkgutil.walk_packages(pkg.__path__, "
            "pkg.__name__ + '.'): importlib.import_module(m.name)\nassert not [k for k in "
            "sys.modules if k.startswith('pyspark') and sys.modules[k] is not None]\nprint('ok')"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0 and r.stdout.strip() == "ok", (floor, r.stderr)


def test_only_stages_write_tables():
    for p in PKG.rglob("*.py"):
        mod = _module(p)
        if mod.startswith("lifecycle_recs.stages") or mod == "lifecycle_recs.io.tables":
            continue
        src = p.read_text()
        hits = [w for w in WRITERS if w in src]
        assert not hits, f"{mod} writes tables ({hits}): only stages/ may"


def test_nothing_but_the_registry_imports_a_stage():
    for mod, deps in _graph().items():
        if mod not in ("lifecycle_recs.pipeline",) and not mod.startswith("lifecycle_recs.stages"):
            assert not [d for d in deps if d.startswith("lifecycle_recs.stages")], mod
        if mod.startswith("lifecycle_recs.stages."):
            others = [d for d in deps if d.startswith("lifecycle_recs.stages.") and d != mod]
            assert not others, f"stage {mod} imports another stage {others}"


def test_a_basename_appears_once_but_for_spark_twins_and_stages():
    paths = [p for p in PKG.rglob("*.py") if p.name != "__init__.py"]
    counts = Counter(p.name for p in paths)
    for name, n in counts.items():
        if n == 1:
            continue
        homes = sorted(str(p.parent.relative_to(PKG)) for p in paths if p.name == name)
        twin = homes == ["adapters", "ml"]
        stage = len(homes) == 2 and "stages" in homes and homes != ["stages", "stages"]
        assert twin or stage, (
            f"{name} appears in {homes}: one home per idea (a Spark twin lives in adapters/)"
        )


def test_tests_mirror_the_package():
    """Every test file sits in the folder of the module it tests (or in tests/system/),
    and every package folder has its test folder."""
    tests = ROOT / "tests"
    for folder in [
        p for p in PKG.rglob("*") if p.is_dir() and (p / "__init__.py").exists() and p != PKG
    ]:
        assert (tests / folder.relative_to(PKG) / "__init__.py").exists(), (
            f"no tests/{folder.relative_to(PKG)}/"
        )
    modules = {p.relative_to(PKG).with_name(p.stem) for p in PKG.rglob("*.py")}
    project = {
        "test_architecture",
        "test_bundle",
        "test_packaging",
        "test_quality_docs",
        "test_nightly_job",
    }
    for t in tests.rglob("test_*.py"):
        rel = t.relative_to(tests)
        if rel.parts[0] == "system" or (len(rel.parts) == 1 and t.stem in project):
            continue
        target = rel.with_name(t.stem[len("test_") :])
        assert target in modules, (
            f"tests/{rel} mirrors no module (expected lib/lifecycle_recs/{target}.py)"
        )


def test_no_import_circles():
    graph = _graph()
    state = {}

    def visit(n, path):
        state[n] = "open"
        for d in graph.get(n, ()):
            if state.get(d) == "open":
                raise AssertionError("import circle: " + " -> ".join(path[path.index(d) :] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[n] = "done"

    for n in graph:
        if n not in state:
            visit(n, [n])
