"""Shared test helpers (plain functions; the fixtures live in conftest.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
ML100K = SHARED / "datasets" / "ml-100k"


def repart(df, n=3):
    """Spread fixture rows over several partitions: bugs that need >1 partition show up."""
    return df.repartition(n)


def sorted_rows(df, *cols):
    """Rows as dicts in a fixed order: DataFrames compared without relying on row order."""
    return [r.asDict(recursive=True) for r in df.orderBy(*(cols or df.columns)).collect()]


def events_df(spark, rows, n_partitions=3):
    """rows: (user_id, item_id, event_type, 'YYYY-mm-dd HH:MM:SS', value) -> events shape."""
    from pyspark.sql import functions as F

    df = spark.createDataFrame(
        [(u, i, t, dt.datetime.fromisoformat(ts), float(v)) for u, i, t, ts, v in rows],
        "user_id string, item_id string, event_type string, event_ts timestamp, value double",
    )
    df = df.withColumn("event_date", F.to_date("event_ts"))
    return repart(df, n_partitions)


def users_frame(n=8, seed=0, n_items=20):
    """user_sequences-like rows whose next item is predictable (a cycle per user), with labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n):
        L = int(rng.integers(1, 12))
        items = [f"i{(u + k) % n_items}" for k in range(L)]
        rows.append(
            {
                "user_id": f"u{u}",
                "item_ids": items,
                "event_types": ["view"] * L,
                "time_gaps_hours": [0.0] + [float(rng.exponential(5)) for _ in range(L - 1)],
                "values": [0.0] * L,
                "sequence_length": L,
                "days_since_last_event": float(u),
                "n_events": L,
                "tenure_days": 10.0,
                "monetary_total": 0.0,
                "active_days": 2,
                "has_labels": True,
                "churned_within_horizon": u % 2 == 0,
                "value_next_horizon": float(u % 3),
            }
        )
    return pd.DataFrame(rows)


N_ITEMS = 30
LIFECYCLE = ["new", "active", "at_risk", "churned", "reactivated"]


def make_artifact(root, max_len=10, seed=0, n_items=None, n_categories=3, config=None):
    """A small random-weight artifact of the real shapes (text vectors, ``n_categories``
    categories over ``n_items`` items: 0 items is an order-level log's model)."""
    import torch

    from lifecycle_recs.ml import artifacts
    from lifecycle_recs.ml.model import ModelSpec, SequenceModel
    from lifecycle_recs.ml.vocab import Vocab

    torch.manual_seed(seed)
    n = N_ITEMS if n_items is None else n_items
    vocab = Vocab(
        [f"i{k:02d}" for k in range(n)],
        ["view", "purchase"],
        [f"c{k % n_categories}" for k in range(n)],
    )
    spec = ModelSpec(
        n_items=vocab.n_items,
        n_event_types=vocab.n_event_types,
        text_dim=8,
        hidden_dim=16,
        item_dim=8,
    )
    model = SequenceModel(spec, np.random.default_rng(seed).normal(size=(vocab.n_items, 8)))
    rng = np.random.default_rng(seed + 1)
    stats = artifacts.ItemStats(
        rng.integers(0, 50, vocab.n_items).astype(float), rng.random(vocab.n_items)
    )
    return artifacts.save(
        str(root), model.eval(), vocab, max_len, {}, stats, "2026-01-01", config or {}
    )


def scoring_users(n=24, seed=0):
    """user_sequences ⋈ stage rows: empty, unknown-item, NaN-value users included."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n):
        L = int(rng.integers(0, 14)) if u else 0
        rows.append(
            {
                "user_id": f"u{u}",
                "item_ids": [f"i{x:02d}" for x in rng.integers(0, N_ITEMS + 3, L)],
                "event_types": ["view"] * L,
                "time_gaps_hours": list(rng.exponential(3, L)),
                "values": [float("nan") if u == 3 else 1.0] * L,
                "sequence_length": L,
                "n_events": L + 5,
                "days_since_last_event": 3.0,
                "tenure_days": 40.0,
                "monetary_total": float("nan"),
                "active_days": 3,
                "stage": LIFECYCLE[u % 5],
            }
        )
    return pd.DataFrame(rows)


class InjectedCrash(RuntimeError):
    pass


class CrashAfterCommit:
    """A commit hook that raises right after the first commit to ``table``:
    the stage has committed part of its writes and not the rest."""

    def __init__(self, table):
        self.table, self.fired = table, False

    def __call__(self, table):
        if table == self.table and not self.fired:
            self.fired = True
            raise InjectedCrash(f"injected crash after the first commit to {table}")

    def __enter__(self):
        from lifecycle_recs.io import tables

        tables.COMMIT_HOOKS.append(self)
        return self

    def __exit__(self, *exc):
        from lifecycle_recs.io import tables

        tables.COMMIT_HOOKS.remove(self)


def assert_close(a, b, tol=1e-5, where="rows"):
    """Equal, with floats within ``tol`` (nested lists / dicts / Rows): model outputs
    computed by other processes (other thread counts, batch shapes) differ in the
    last bits of float32."""
    import math

    if isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol, f"{where}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where}: keys {a.keys()} != {b.keys()}"
        for k in a:
            assert_close(a[k], b[k], tol, f"{where}.{k}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, tol, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# texts no encoder may choke on: empty, missing, non-Latin, emoji, very long, one letter
AWKWARD_TEXTS = [
    "Acme Wireless Noise-Cancelling Headphones. Electronics",
    "",
    None,
    "Crème brûlée für 東京 🎉",
    "very long " * 3000,
    "a",
    "Toy Story. 1995. Animation Children's Comedy",
]


def raw_source(df, **kw):
    """A :class:`RawSource` over ``df`` (raw string columns): UTC datetimes, no event-type
    map, no catalog; ``kw`` overrides any field."""
    from lifecycle_recs.data.sources import RawSource

    args = dict(
        name="test",
        events=df,
        timestamp_kind="datetime",
        timestamp_format=None,
        timezone="UTC",
        event_type_map={},
        items=None,
    )
    args.update(kw)
    return RawSource(**args)


# ---- a landing folder of delivery files read by a generic CSV source ----------------------

HEADER = "id_user,sku,act,at,amount\n"


def deliver(folder, name, rows, header=HEADER):
    """Land one delivery file of CSV rows (user, sku, action, time, amount[, event id])."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(header + "".join(",".join(r) + "\n" for r in rows))


def stream_cfg(make_cfg, folder, event_id=None, **overrides):
    """The conf of a CSV source reading ``folder``, one file a micro-batch; ``event_id``:
    the name of an event id column."""
    columns = {
        "user_id": "id_user",
        "item_id": "sku",
        "event_type": "act",
        "event_ts": "at",
        "value": "amount",
        **({"event_id": event_id} if event_id else {}),
    }
    source = {
        "kind": "generic",
        "name": "landing",
        "format": "csv",
        "path": str(folder),
        "columns": columns,
        "event_type_map": {"order": "purchase"},
        **overrides.pop("source", {}),
    }
    return make_cfg(source=source, ingest={"max_files_per_batch": 1}, **overrides)


def same_rows(a, b):
    """The same rows, duplicates counted (``exceptAll`` both ways)."""
    return a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0
