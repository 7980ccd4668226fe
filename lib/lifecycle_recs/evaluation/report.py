"""The evaluation's output: ``evaluation_metrics`` rows (point figures and bootstrapped
summaries), the Markdown quality table, and the report (table + churn calibration and
gain plots from small per-bin curves computed in Spark)."""

from __future__ import annotations

import datetime as dt
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lifecycle_recs.dates import parse_date, utc_now
from lifecycle_recs.evaluation import bootstrap


def metric_rows(
    snapshot_date: str,
    dataset: str,
    model: str,
    model_version: str,
    task: str,
    metrics: Dict[str, float],
    evaluated_at: Optional[dt.datetime] = None,
    n_users: Optional[int] = None,
) -> List[Dict]:
    """``evaluation_metrics`` rows, one per metric (no interval)."""
    at = evaluated_at or utc_now()
    return [
        {
            "snapshot_date": parse_date(snapshot_date),
            "dataset": dataset,
            "model": model,
            "model_version": model_version,
            "task": task,
            "metric": k,
            "value": float(v) if v is not None else float("nan"),
            "evaluated_at": at,
            "n_users": n_users,
            "ci_low": None,
            "ci_high": None,
            "verdict": None,
        }
        for k, v in metrics.items()
    ]


def summary_rows(
    snapshot_date: str,
    dataset: str,
    version: str,
    summaries: List[bootstrap.Summary],
    evaluated_at: Optional[dt.datetime] = None,
) -> List[Dict]:
    """``evaluation_metrics`` rows of bootstrapped summaries (our rows carry the
    artifact version; a baseline's its name)."""
    at = evaluated_at or utc_now()
    return [
        {
            "snapshot_date": parse_date(snapshot_date),
            "dataset": dataset,
            "model": x.model,
            "model_version": version
            if x.model == "ours" or x.model.startswith("ours-vs-")
            else x.model,
            "task": x.task,
            "metric": x.metric,
            "value": float(x.value),
            "evaluated_at": at,
            "n_users": int(x.n),
            "ci_low": x.low,
            "ci_high": x.high,
            "verdict": x.verdict,
        }
        for x in summaries
    ]


def _cell(r: Dict) -> str:
    v = r["value"]
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if r.get("ci_low") is not None and r.get("ci_high") is not None:
        return f"{v:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
    return f"{v:.4f}"


def quality_table(rows: List[Dict]) -> List[str]:
    """Markdown: per task and metric, each model's value [95% interval] (n), and each
    ours-vs-baseline difference with its verdict."""
    plain = [r for r in rows if not r["model"].startswith("ours-vs-")]
    models = sorted({r["model"] for r in plain}, key=lambda m: (m != "ours", m))
    keys: List[Tuple[str, str]] = []
    for r in plain:
        if (r["task"], r["metric"]) not in keys:
            keys.append((r["task"], r["metric"]))
    val = {(r["task"], r["metric"], r["model"]): r for r in plain}
    lines = [
        "| task | metric | n | " + " | ".join(models) + " |",
        "|---|---|---|" + "---|" * len(models),
    ]
    for task, metric in keys:
        ns = sorted(
            {
                val[(task, metric, m)]["n_users"]
                for m in models
                if (task, metric, m) in val and val[(task, metric, m)].get("n_users") is not None
            }
        )
        cells = [_cell(val[(task, metric, m)]) if (task, metric, m) in val else "" for m in models]
        lines.append(
            f"| {task} | {metric} | {'/'.join(str(n) for n in ns)} | " + " | ".join(cells) + " |"
        )
    diffs = [r for r in rows if r["model"].startswith("ours-vs-")]
    if diffs:
        lines += [
            "",
            "| task | metric | comparison | n | ours - baseline [95% interval] | verdict |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['task']} | {r['metric']} | {r['model']} | {r['n_users']} | {_cell(r)} | "
            f"{r['verdict']} |"
            for r in diffs
        ]
    return lines


def write_report(
    out_dir: str, title: str, rows: List[Dict], curves: Optional[Dict] = None, notes: str = ""
) -> str:
    """Markdown quality table + PNG plots (churn calibration and cumulative gain,
    from the small per-bin curves of ``churn_curves``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    lines = [f"# {title}", "", notes, ""] + quality_table(rows)
    if curves:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for name, c in curves.items():
            ax[0].plot(
                [p[0] for p in c["calibration"]],
                [p[1] for p in c["calibration"]],
                marker="o",
                label=name,
            )
            ax[1].plot([0] + [p[0] for p in c["gain"]], [0] + [p[1] for p in c["gain"]], label=name)
        ax[0].plot([0, 1], [0, 1], "k--", lw=0.8)
        ax[0].set(title="churn calibration", xlabel="predicted", ylabel="observed")
        ax[1].plot([0, 1], [0, 1], "k--", lw=0.8)
        ax[1].set(
            title="churn cumulative gain",
            xlabel="share of users (by score)",
            ylabel="share of churners",
        )
        for a in ax:
            a.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "churn.png"), dpi=90)
        plt.close(fig)
        lines += ["", "![churn calibration and gain](churn.png)"]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def churn_curves(
    per_user: DataFrame, y: str, scores: Dict[str, str], probabilities: Sequence[str]
) -> Dict:
    """Calibration (10 bins; probability models) and cumulative gain (score quantile
    bins) per model, as one Spark aggregate (each user exploded into one row per
    model and curve): at most ``bootstrap.AUC_BINS`` rows per model and curve."""
    rows = []
    for model, col in scores.items():
        bins = [("gain", F.col(f"{col}__bin"))]
        if model in probabilities:
            bins.append(("calibration", F.least(F.floor(F.col(col) * 10), F.lit(9))))
        rows += [
            F.struct(
                F.lit(model).alias("model"),
                F.lit(kind).alias("kind"),
                b.cast("double").alias("b"),
                F.col(col).cast("double").alias("s"),
            )
            for kind, b in bins
        ]
    if not rows:
        return {}
    g = (
        per_user.select(F.col(y).cast("double").alias("y"), F.explode(F.array(*rows)).alias("r"))
        .where(F.col("r.s").isNotNull())
        .groupBy(
            F.col("r.model").alias("model"), F.col("r.kind").alias("kind"), F.col("r.b").alias("b")
        )
        .agg(
            F.sum("y").alias("pos"),
            F.avg("r.s").alias("p"),
            F.avg("y").alias("o"),
            F.count("*").alias("n"),
        )
        .collect()
    )  # small: one row per (model, curve, bin), at most 1,000 bins each
    out = {}
    for model in scores:
        gains = sorted(
            (r for r in g if r["model"] == model and r["kind"] == "gain"), key=lambda r: -r["b"]
        )
        total_pos, total = sum(r["pos"] for r in gains), sum(r["n"] for r in gains)
        gain, cp, cn = [], 0.0, 0
        for r in gains:
            cp, cn = cp + r["pos"], cn + r["n"]
            gain.append((cn / max(total, 1), cp / max(total_pos, 1.0)))
        cal = [
            (r["p"], r["o"], r["n"])
            for r in sorted(
                (r for r in g if r["model"] == model and r["kind"] == "calibration"),
                key=lambda r: r["b"],
            )
        ]
        out[model] = {"calibration": cal, "gain": gain}
    return out
