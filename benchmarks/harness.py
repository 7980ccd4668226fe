"""What the benchmark scripts share: the repository root, timing (interleaved repeats,
median and spread), the ``RESULT`` line, the conf of each quality dataset, and the
synthetic users and untrained artifact of the real shapes the scoring benchmarks score.

The scripts import ``lifecycle_recs`` as installed (``make install``; on a GPU machine
without Spark, ``pip install --no-deps -e .``) and this module from their own folder."""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASETS = ("demo", "synthetic", "movielens", "orders")


# -- timing ----------------------------------------------------------------------------
def median_spread(values: Sequence[float]) -> Tuple[float, float, float]:
    """(median, min, max) of repeated measurements."""
    return statistics.median(values), min(values), max(values)


def interleaved(runs: Dict[str, Callable[[], float]], repeats: int) -> Dict[str, List[float]]:
    """Each of ``runs`` (name -> a function returning its seconds) ``repeats`` times, in turn
    (a, b, a, b, ...), so a machine that slows down slows every contender alike."""
    out: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            out[name].append(fn())
    return out


def seconds(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of ``fn``."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def result(**figures) -> str:
    """The last line of a benchmark: ``RESULT key=value ...`` (floats to 4 digits)."""
    return "RESULT " + " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
    )


# -- quality datasets ------------------------------------------------------------------
def conf_for(dataset: str, work: str, users: int, stacking=None, sets=()):
    from lifecycle_recs.config import load_config, merge_dicts, parse_overrides

    path, overrides = _conf_for(dataset, work, users, stacking)
    return load_config(path, merge_dicts(overrides, parse_overrides(sets)))


def _conf_for(dataset: str, work: str, users: int, stacking=None):
    """(conf path, overrides) of a dataset's run."""
    from lifecycle_recs.config import merge_dicts

    paths = {
        "lakehouse": os.path.join(work, "lake"),
        "artifacts": os.path.join(work, "artifacts"),
        "reports": os.path.join(work, "reports"),
        "mlflow": {"enabled": False},
    }
    if stacking is not None:  # the second stage of ml/stacking.py (on by default)
        paths["model"] = {"stacking": bool(stacking)}
    if dataset == "demo":
        return os.path.join(ROOT, "conf", "local.yaml"), paths
    if dataset == "synthetic":
        return os.path.join(ROOT, "conf", "local.yaml"), merge_dicts(
            paths,
            {
                "synthetic": {"n_users": users, "n_items": 3000, "partitions": 8},
                "spark": {"driver_memory": "8g"},
            },
        )
    if dataset == "movielens":
        return os.path.join(ROOT, "conf", "movielens.yaml"), paths
    if dataset == "orders":
        from lifecycle_recs.data.synthetic.orders import order_log, source_conf

        raw = os.path.join(work, "raw")
        os.makedirs(raw, exist_ok=True)
        order_log(users, start_date="2025-01-01", days=365, seed=11).to_csv(
            os.path.join(raw, "orders.csv"), index=False
        )
        return os.path.join(ROOT, "conf", "local.yaml"), merge_dicts(
            paths,
            {
                "source": source_conf(raw),
            },
        )
    raise SystemExit(f"unknown dataset {dataset!r}")


def result_lines(rows, prefix: str):
    """One ``RESULT <prefix> task=... verdict=...`` line per ours-vs-baseline row of
    ``evaluation_metrics`` (``rows``: dicts)."""
    by = {(r["model"], r["task"], r["metric"]): r for r in rows}
    for r in rows:
        if not r["model"].startswith("ours-vs-"):
            continue
        base = by.get((r["model"][len("ours-vs-") :], r["task"], r["metric"]))
        ours = by.get(("ours", r["task"], r["metric"]))
        yield (
            f"RESULT {prefix} task={r['task']} metric={r['metric']} comparison={r['model']} "
            f"n={r['n_users']} ours={ours['value']:.4f} baseline={base['value']:.4f} "
            f"diff={r['value']:.4f} low={_f(r['ci_low'])} high={_f(r['ci_high'])} "
            f"verdict={r['verdict'].replace(' ', '_')}"
        )


def _f(x) -> str:
    return "nan" if x is None else f"{x:.4f}"


def nightly_rows(spark, cfg, snapshot_date: str) -> List[Dict]:
    """The nightly evaluation's ``evaluation_metrics`` rows of ``snapshot_date`` (small: one
    row per model and metric), in a fixed order."""
    from pyspark.sql import functions as F

    from lifecycle_recs.io import tables

    return [
        r.asDict()
        for r in tables.read(spark, cfg, "evaluation_metrics", snapshot_date)
        .where(F.col("dataset") == "nightly")
        .orderBy("task", "metric", "model")
        .collect()
    ]


# -- scoring: synthetic users and an artifact of the real shapes -------------------
def users_frame(
    n_users: int, n_items: int, steps: int = 50, seed: int = 0, fixed_length: bool = False
) -> pd.DataFrame:
    """Users with geometric sequence lengths (mean ~25, at most ``steps``), or all
    ``steps`` long (``fixed_length``); stages uniform over the five."""
    rng = np.random.default_rng(seed)
    lengths = (
        np.full(n_users, steps)
        if fixed_length
        else np.clip(rng.geometric(1 / 30, n_users), 1, steps)
    )
    types = np.array(["view", "click", "add_to_cart", "purchase"], dtype=object)
    item_names = np.array([f"I{i:06d}" for i in range(n_items)], dtype=object)
    rows = {
        "user_id": [f"U{u:08d}" for u in range(n_users)],
        "item_ids": [],
        "event_types": [],
        "time_gaps_hours": [],
        "values": [],
    }
    for L in lengths:
        rows["item_ids"].append(item_names[rng.integers(0, n_items, L)])
        rows["event_types"].append(types[rng.integers(0, 4, L)])
        rows["time_gaps_hours"].append(rng.exponential(20, L))
        rows["values"].append(np.where(rng.random(L) < 0.1, rng.exponential(30, L), 0.0))
    df = pd.DataFrame(rows)
    df["sequence_length"] = lengths.astype(np.int32)
    df["n_events"] = lengths * 3
    df["days_since_last_event"] = rng.exponential(20, n_users)
    df["tenure_days"] = rng.exponential(100, n_users)
    df["monetary_total"] = rng.exponential(50, n_users)
    df["active_days"] = rng.integers(1, 40, n_users)
    df["stage"] = rng.choice(["new", "active", "at_risk", "churned", "reactivated"], n_users)
    return df


def make_artifact(
    root: str, n_items: int, text_dim: int = 384, hidden: int = 64, seed: int = 0
) -> str:
    import torch

    from lifecycle_recs.ml import artifacts
    from lifecycle_recs.ml.model import ModelSpec, SequenceModel
    from lifecycle_recs.ml.vocab import Vocab

    torch.manual_seed(seed)
    cats = [f"cat{i % 16}" for i in range(n_items)]
    vocab = Vocab(
        [f"I{i:06d}" for i in range(n_items)],
        ["view", "click", "add_to_cart", "purchase", "rating"],
        cats,
    )
    tv = (
        np.random.default_rng(seed).normal(size=(vocab.n_items, text_dim)).astype(np.float32)
        if text_dim
        else None
    )
    spec = ModelSpec(
        n_items=vocab.n_items,
        n_event_types=vocab.n_event_types,
        text_dim=text_dim,
        hidden_dim=hidden,
        item_dim=64,
    )
    stats = artifacts.ItemStats.empty(
        vocab.n_items
    )  # zero statistics, as the score stage had before it wrote them
    return artifacts.save(
        root,
        SequenceModel(spec, tv).eval(),
        vocab,
        50,
        {"note": "untrained, for throughput"},
        stats,
        "2026-01-01",
    )
