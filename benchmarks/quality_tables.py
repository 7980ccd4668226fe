"""The current quality tables of ``docs/quality.md``, rendered from the committed runs of
``nightly_quality.py`` (``benchmarks/results/quality_<d>.out``): one table per dataset
with every ours-vs-baseline ``RESULT`` line (n, both figures, the paired 95% interval of
the difference, the verdict), and a count of the verdicts.

    python benchmarks/quality_tables.py            # prints the section
    python benchmarks/quality_tables.py --write    # replaces it in docs/quality.md

``docs/quality.md`` holds it between ``<!-- QUALITY:BEGIN -->`` and ``<!-- QUALITY:END -->``;
``tests/test_quality_docs.py`` fails when the two differ, so a new run is quoted as it
is, or not at all.

RESULT datasets=<n> comparisons=<n> ours_better=<n> inconclusive=<n> baseline_better=<n>
"""

from __future__ import annotations

import argparse
import os
import re
from collections import Counter
from typing import Dict, List

from harness import ROOT

RESULTS = os.path.join(ROOT, "benchmarks", "results")
DOC = os.path.join(ROOT, "docs", "quality.md")
DATASETS = (
    ("demo", "Demo (conf/local.yaml's 1,500-user log)"),
    ("synthetic", "Larger synthetic log (6,000 users)"),
    ("orders", "Order-level log (4,000 customers, no items)"),
    ("movielens", "MovieLens-100K through the nightly (conf/movielens.yaml)"),
)
BEGIN, END = "<!-- QUALITY:BEGIN -->", "<!-- QUALITY:END -->"
VERDICT = {
    "ours_better": "ours better",
    "baseline_better": "**baseline better**",
    "inconclusive": "inconclusive",
}


def parse(path: str) -> Dict:
    """The header, the run line and the ``RESULT`` lines (as dicts) of one run's output."""
    with open(path) as f:
        lines = f.read().splitlines()
    rows = [
        dict(kv.split("=", 1) for kv in line.split()[1:])
        for line in lines
        if line.startswith("RESULT ")
    ]
    if not rows:
        raise ValueError(f"{path}: no RESULT lines")
    run = next((line for line in lines if re.match(r"^\w+: D=", line)), "")
    return {"header": lines[0].lstrip("# ").strip(), "run": run, "rows": rows}


def table(rows: List[Dict]) -> str:
    out = [
        "| task | metric | comparison | n | ours | baseline | ours − baseline [95%] | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        big = max(abs(float(r["ours"])), abs(float(r["baseline"]))) >= 10  # RMSE, MAE: 2 decimals
        f = {
            k: (f"{float(r[k]):.2f}" if big else f"{float(r[k]):.4f}")
            for k in ("ours", "baseline", "diff", "low", "high")
        }
        out.append(
            f"| {r['task']} | {r['metric']} | {r['comparison'].replace('ours-vs-', 'vs ')} | "
            f"{r['n']} | {f['ours']} | {f['baseline']} | {f['diff']} [{f['low']}, {f['high']}] | "
            f"{VERDICT.get(r['verdict'], r['verdict'])} |"
        )
    return "\n".join(out)


def section(results: str = RESULTS) -> str:
    parts, total = [], Counter()
    for name, title in DATASETS:
        run = parse(os.path.join(results, f"quality_{name}.out"))
        count = Counter(r["verdict"] for r in run["rows"])
        total.update(count)
        parts.append(
            f"**{title}** (`benchmarks/results/quality_{name}.out`; "
            f"{run['header']})\n\n`{run['run']}`\n\n{table(run['rows'])}\n\n{len(run['rows'])} "
            f"comparisons: {count['ours_better']} ours better, {count['inconclusive']} "
            f"inconclusive, {count['baseline_better']} baseline better."
        )
    parts.append(
        f"All four: {sum(total.values())} comparisons, {total['ours_better']} ours better, "
        f"{total['inconclusive']} inconclusive, {total['baseline_better']} baseline better "
        "(strategy rows included: a strategy that loses is turned off by the strategy gate, under "
        "Recommendations in docs/stages.md)."
    )
    return "\n\n".join(parts)


def doc_section(doc: str) -> str:
    a, b = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    return doc[a:b].strip()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--write", action="store_true", help="replace the section in docs/quality.md")
    args = p.parse_args()
    text = section()
    if args.write:
        path = DOC
        with open(path) as f:
            readme = f.read()
        a, b = readme.index(BEGIN) + len(BEGIN), readme.index(END)
        with open(path, "w") as f:
            f.write(readme[:a] + "\n" + text + "\n" + readme[b:])
    else:
        print(text)
    runs = [parse(os.path.join(RESULTS, f"quality_{n}.out")) for n, _ in DATASETS]
    c = Counter(r["verdict"] for run in runs for r in run["rows"])
    print(
        f"RESULT datasets={len(runs)} comparisons={sum(c.values())} ours_better={c['ours_better']} "
        f"inconclusive={c['inconclusive']} baseline_better={c['baseline_better']}"
    )


if __name__ == "__main__":
    main()
