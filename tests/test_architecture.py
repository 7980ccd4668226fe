"""The two rules of ARCHITECTURE.md, and no import circles."""
import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

PKG = ROOT / "lib" / "lifecycle_recs"
WRITERS = ("write_snapshot", "merge_new", "upsert(", "replace_metric_rows", "ensure_table", ".merge(", 'format("delta")',
           "saveAsTable", "DeltaTable.create")


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
                base = base[:len(base) - node.level + 1]
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


def test_ml_never_imports_pyspark():
    code = ("import sys; sys.modules['pyspark'] = None\n"
            "import importlib, pkgutil, lifecycle_recs.ml as ml\n"
            "for m in pkgutil.iter_modules(ml.__path__): importlib.import_module('lifecycle_recs.ml.' + m.name)\n"
            "assert not [k for k in sys.modules if k.startswith('pyspark') and sys.modules[k] is not None]\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    for mod, deps in _graph().items():
        if mod.startswith("lifecycle_recs.ml"):
            assert all(d.startswith("lifecycle_recs.ml") or d in ("lifecycle_recs.config", "lifecycle_recs.names")
                       for d in deps), (mod, deps)


def test_only_stages_write_tables():
    for p in PKG.rglob("*.py"):
        mod = _module(p)
        if mod.startswith("lifecycle_recs.stages") or mod == "lifecycle_recs.tables":
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


def test_no_import_circles():
    graph = _graph()
    state = {}

    def visit(n, path):
        state[n] = "open"
        for d in graph.get(n, ()):
            if state.get(d) == "open":
                raise AssertionError("import circle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[n] = "done"

    for n in graph:
        if n not in state:
            visit(n, [n])
