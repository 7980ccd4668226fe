"""Shared set-up for the scoring benchmarks: synthetic users in the user_sequences
shape and a model artifact with the real shapes (untrained weights: throughput
does not depend on training)."""
from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))


def users_frame(n_users: int, n_items: int, steps: int = 50, seed: int = 0, fixed_length: bool = False) -> pd.DataFrame:
    """Users with geometric sequence lengths (mean ~25, at most ``steps``), or all
    ``steps`` long (``fixed_length``); stages uniform over the five."""
    rng = np.random.default_rng(seed)
    lengths = np.full(n_users, steps) if fixed_length else np.clip(rng.geometric(1 / 30, n_users), 1, steps)
    types = np.array(["view", "click", "add_to_cart", "purchase"], dtype=object)
    item_names = np.array([f"I{i:06d}" for i in range(n_items)], dtype=object)
    rows = {"user_id": [f"U{u:08d}" for u in range(n_users)], "item_ids": [], "event_types": [],
            "time_gaps_hours": [], "values": []}
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


def make_artifact(root: str, n_items: int, text_dim: int = 384, hidden: int = 64, seed: int = 0) -> str:
    import torch

    from lifecycle_recs.ml import artifacts
    from lifecycle_recs.ml.model import ModelSpec, SequenceModel
    from lifecycle_recs.ml.vocab import Vocab

    torch.manual_seed(seed)
    cats = [f"cat{i % 16}" for i in range(n_items)]
    vocab = Vocab([f"I{i:06d}" for i in range(n_items)], ["view", "click", "add_to_cart", "purchase", "rating"], cats)
    tv = np.random.default_rng(seed).normal(size=(vocab.n_items, text_dim)).astype(np.float32) if text_dim else None
    spec = ModelSpec(n_items=vocab.n_items, n_event_types=vocab.n_event_types, text_dim=text_dim,
                     hidden_dim=hidden, item_dim=64)
    stats = artifacts.ItemStats.empty(vocab.n_items)  # zero statistics, as the score stage had before it wrote them
    return artifacts.save(root, SequenceModel(spec, tv).eval(), vocab, 50, {"note": "untrained, for throughput"},
                          stats, "2026-01-01")
