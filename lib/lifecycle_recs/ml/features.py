"""Model inputs: the typed :class:`Batch`, the one ordered list of user features,
and the encoders from user rows (a pandas frame, or Arrow decoded by :mod:`.columns`) to arrays.

``encode_columns`` / ``encode_last`` are the scoring hot path (vectorised over users);
``encode_users`` builds training/evaluation examples (last window, leave-one-out, or RecBole-style
sliding windows).
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np
import pandas as pd
import torch

from lifecycle_recs.ml.columns import from_pandas, index_in
from lifecycle_recs.ml.vocab import UNK, Vocab

# The user features the model sees, in order: five RFM-style columns of
# ``user_sequences`` (log1p) and the sequence length as a share of the window.
RFM_FEATURES = ("days_since_last_event", "n_events", "tenure_days", "monetary_total", "active_days")
# Then the BG/NBD view of the same history (stacking the standard baseline into the
# model): P(alive) and log1p(expected active days in the next H days), from the
# artifact's BG/NBD fit on the training snapshot (0 without one). An artifact that
# predates them reads only the first ``spec.n_user_features`` columns.
BTYD_FEATURES = ("bgnbd_p_alive", "bgnbd_expected_days")
USER_FEATURES = (*RFM_FEATURES, "sequence_length", *BTYD_FEATURES)
# After the model's features, inputs of the second stage only (``stacking``; the
# model reads the first ``spec.n_user_features`` columns): log1p of BG/NBD x
# Gamma-Gamma's expected spend in the next H days, from the purchase-days summary
# columns (``PURCHASE_COLUMNS``, joined by ``btyd.with_purchases``) and the
# artifact's purchase/spend fit (0 where either is absent).
STACK_FEATURES = ("bgnbd_gg_value",)
PURCHASE_COLUMNS = ("x_purchase", "t_purchase", "age_purchase", "m_purchase")
STEP_ARRAYS = ("items", "events", "gaps", "values", "targets")


class Batch(NamedTuple):
    """A batch of users, right-padded to the same number of steps.

    ``items``/``events``/``targets`` are int64 [B, L] indices (0 padding, 1
    unknown; target 0 = none); ``gaps``/``values`` float32 [B, L] (log1p);
    ``length`` int64 [B]; ``feats`` float32 [B, len(USER_FEATURES)]. Labels
    (``churn``, ``value``, ``label_w``) and ``eval_target`` are present only
    where the batch is used for training or evaluation."""

    items: torch.Tensor
    events: torch.Tensor
    gaps: torch.Tensor
    values: torch.Tensor
    length: torch.Tensor
    feats: torch.Tensor
    targets: Optional[torch.Tensor] = None
    churn: Optional[torch.Tensor] = None
    value: Optional[torch.Tensor] = None
    label_w: Optional[torch.Tensor] = None
    eval_target: Optional[torch.Tensor] = None

    @property
    def size(self) -> int:
        """Number of users (``len()`` of a NamedTuple counts its fields)."""
        return int(self.length.shape[0])

    def to(self, device, non_blocking: bool = True) -> Batch:
        return Batch(
            *[None if t is None else t.to(device, non_blocking=non_blocking) for t in self]
        )

    def rows(self, idx) -> Batch:
        """The users at ``idx`` (a slice, index tensor or boolean mask)."""
        return Batch(*[None if t is None else t[idx] for t in self])

    @classmethod
    def from_arrays(cls, arrays: Dict[str, np.ndarray]) -> Batch:
        """numpy arrays by field name -> tensors of the field's dtype."""
        long = {"items", "events", "targets", "length", "eval_target"}
        out = {}
        for name in cls._fields:
            if name in arrays and arrays[name] is not None:
                t = torch.as_tensor(np.asarray(arrays[name]))
                out[name] = t.long() if name in long else t.float()
        return cls(**out)

    @classmethod
    def from_frame(cls, ex: pd.DataFrame) -> Batch:
        """Example rows (``EXAMPLE_SCHEMA``: one list per array column) -> a Batch."""
        arrays = {
            k: np.stack(ex[k].to_numpy()) if len(ex) else np.zeros((0, 0), np.float32)
            for k in (*STEP_ARRAYS, "feats")
        }
        for k in ("length", "eval_target", "churn", "value", "label_w"):
            arrays[k] = ex[k].to_numpy()
        return cls.from_arrays(arrays)


def log1p_features(x: np.ndarray) -> np.ndarray:
    """log1p of a non-negative quantity; NaN and negatives count as 0."""
    return np.log1p(np.clip(np.nan_to_num(x, nan=0.0), 0, None)).astype(np.float32)


def _column(users, c: str) -> Optional[np.ndarray]:
    """A numeric column of user rows (pandas frame or ``columns.UserColumns``) as
    float64, or None where absent."""
    if isinstance(users, pd.DataFrame):
        return users[c].to_numpy(dtype=np.float64) if c in users else None
    return users.numeric.get(c)


def _n_users(users) -> int:
    return len(users) if isinstance(users, pd.DataFrame) else users.n


def activity_summary(users) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD's (x, t_x, T) of active days from ``user_sequences`` columns, in whole
    days (``floor(v + 0.5)``, as ``btyd.sequence_summaries`` computes them in Spark)."""

    def col(c):
        v = _column(users, c)
        return v if v is not None else np.zeros(_n_users(users))

    age = np.floor(np.nan_to_num(col("tenure_days")) + 0.5)
    t_x = np.clip(
        np.floor(np.nan_to_num(col("tenure_days") - col("days_since_last_event")) + 0.5), 0, age
    )
    x = np.maximum(np.nan_to_num(col("active_days")) - 1, 0)
    return x, t_x, age


def btyd_features(users, btyd_params: Optional[Dict]) -> np.ndarray:
    """[B, len(BTYD_FEATURES)]: P(alive) and log1p(expected active days in H) (0 without a fit)."""
    if not btyd_params or "active" not in btyd_params:
        return np.zeros((_n_users(users), len(BTYD_FEATURES)), np.float32)
    from lifecycle_recs.ml import btyd

    m = btyd.BGNBD(**btyd_params["active"])
    x, t_x, age = activity_summary(users)
    pa_ = btyd.p_alive(m, x, t_x, age)
    ed = btyd.expected_transactions(m, float(btyd_params.get("horizon_days", 30)), x, t_x, age)
    return np.stack([np.nan_to_num(pa_), log1p_features(ed)], axis=1).astype(np.float32)


def spend_features(users, btyd_params: Optional[Dict]) -> np.ndarray:
    """[B, len(STACK_FEATURES)]: log1p(BG/NBD x Gamma-Gamma's expected spend in H), as
    ``btyd.predict`` computes ``bgnbd_gg_value`` (0 without the columns or the fit)."""
    n = _n_users(users)
    cols = [_column(users, c) for c in PURCHASE_COLUMNS]
    if not btyd_params or "purchase" not in btyd_params or any(c is None for c in cols) or not n:
        return np.zeros((n, len(STACK_FEATURES)), np.float32)
    from lifecycle_recs.ml import btyd

    spend = btyd.GammaGamma(**btyd_params["spend"]) if "spend" in btyd_params else None
    v = btyd.expected_value(
        btyd.BGNBD(**btyd_params["purchase"]),
        spend,
        float(btyd_params.get("horizon_days", 30)),
        *cols,
    )
    return log1p_features(v)[:, None]


def user_features(users, max_len: int, btyd_params: Optional[Dict] = None) -> np.ndarray:
    """[B, len(USER_FEATURES) + len(STACK_FEATURES)] float32, in that order (absent columns are 0).
    ``users``: a pandas frame of user rows or ``columns.UserColumns``."""
    n = _n_users(users)
    cols = [_column(users, c) for c in RFM_FEATURES]
    f = (
        np.stack(
            [log1p_features(v) if v is not None else np.zeros(n, np.float32) for v in cols], axis=1
        )
        if n
        else np.zeros((0, len(RFM_FEATURES)), np.float32)
    )
    seq_len = _column(users, "sequence_length")
    # float32 before the division, as the features were always computed (bit-identical models)
    seq_len = np.zeros(n) if seq_len is None else np.nan_to_num(seq_len).astype(np.float32)
    return np.concatenate(
        [
            f,
            (seq_len / max_len)[:, None].astype(np.float32),
            btyd_features(users, btyd_params),
            spend_features(users, btyd_params),
        ],
        axis=1,
    )


def encode_columns(
    cols, vocab: Vocab, max_len: int, btyd_params: Optional[Dict] = None
) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """``columns.UserColumns`` -> (the arrays of :func:`encode_last`, the vocabulary
    index of every flat step of every user, window or not: the seen items)."""
    B = cols.n
    n_all = cols.lengths
    start = np.maximum(n_all - max_len, 0)
    length = (n_all - start).astype(np.int64)
    out = {
        "items": np.zeros((B, max_len), np.int64),
        "events": np.zeros((B, max_len), np.int64),
        "gaps": np.zeros((B, max_len), np.float32),
        "values": np.zeros((B, max_len), np.float32),
    }
    all_items = index_in(cols.items, vocab.arrow_ids("items"))
    total = int(n_all.sum())
    if total:
        # position of every flattened step inside its user's window
        pos = np.arange(total) - np.repeat(cols.offsets[:-1] + start, n_all)
        keep = pos >= 0
        row = np.repeat(np.arange(B), n_all)[keep]
        col = pos[keep]
        out["items"][row, col] = all_items[keep]
        ev = cols.lists.get("event_types")
        out["events"][row, col] = (
            index_in(ev[0], vocab.arrow_ids("events"))[keep]
            if ev is not None and np.array_equal(ev[1], cols.offsets)
            else UNK
        )
        for src, dst in (("time_gaps_hours", "gaps"), ("values", "values")):
            flat = cols.flat_float(src)
            if flat is not None:
                out[dst][row, col] = log1p_features(flat[keep])
    targets = np.zeros((B, max_len), np.int64)
    targets[:, :-1] = out["items"][:, 1:]
    targets[np.arange(max_len)[None, :] >= (length - 1)[:, None]] = 0
    targets[targets == UNK] = 0
    out["targets"] = targets
    out["length"] = length
    out["feats"] = user_features(cols, max_len, btyd_params)
    return out, all_items


def encode_last(
    users, vocab: Vocab, max_len: int, btyd_params: Optional[Dict] = None
) -> Dict[str, np.ndarray]:
    """Vectorised: the last ``max_len`` steps of each user, right-padded, as arrays
    (items, events, gaps, values, targets, length, feats). ``users``: a pandas frame
    of user rows or ``columns.UserColumns`` (the scoring hot path)."""
    cols = from_pandas(users) if isinstance(users, pd.DataFrame) else users
    return encode_columns(cols, vocab, max_len, btyd_params)[0]


def _step_arrays(row, vocab: Vocab):
    items = row["item_ids"] if row["item_ids"] is not None else []
    n = len(items)
    it = vocab.item_index(list(items))
    ev = vocab.event_index(
        list(row["event_types"] if row["event_types"] is not None else [None] * n)
    )
    gaps = log1p_features(
        np.asarray(
            row["time_gaps_hours"] if row["time_gaps_hours"] is not None else np.zeros(n),
            dtype=np.float64,
        )
    )
    vals = log1p_features(
        np.asarray(row["values"] if row["values"] is not None else np.zeros(n), dtype=np.float64)
    )
    return it, ev, gaps, vals


def _window(it, ev, gaps, vals, lo, hi, max_len, next_target: bool):
    """Steps [lo, hi) right-padded to max_len; per-step targets are the next step's item."""
    n = hi - lo
    out = {
        k: np.zeros(max_len, np.int32 if k in ("items", "events", "targets") else np.float32)
        for k in STEP_ARRAYS
    }
    out["items"][:n], out["events"][:n] = it[lo:hi], ev[lo:hi]
    out["gaps"][:n], out["values"][:n] = gaps[lo:hi], vals[lo:hi]
    if next_target and n > 1:
        out["targets"][: n - 1] = it[lo + 1 : hi]
        out["targets"][out["targets"] == UNK] = 0  # unknown items are not targets
    return out, n


EXAMPLE_COLUMNS = (
    "user_id",
    *STEP_ARRAYS,
    "length",
    "feats",
    "churn",
    "value",
    "label_w",
    "eval_target",
    "split",
)


def encode_users(
    pdf: pd.DataFrame,
    vocab: Vocab,
    max_len: int,
    mode: str = "last",
    holdout: int = 0,
    stride: Optional[int] = None,
    btyd_params: Optional[Dict] = None,
) -> pd.DataFrame:
    """user rows (user_sequences [+ lifecycle labels]) -> model example rows (``EXAMPLE_COLUMNS``).

    mode ``last``: one example per user from the last ``max_len`` steps, with
    next-item targets inside the window (training) — the user's state at D.
    mode ``loo``: the last step is held out as ``eval_target``; inputs are the
    steps before it (leave-one-out evaluation).
    mode ``windows``: RecBole-style training from a full history minus the last
    ``holdout`` steps, cut into windows of ``max_len`` + 1 steps that advance by
    ``stride`` (default ``max_len``); a later window trains only the targets the
    earlier one did not, so every target sees at least max_len - stride steps
    of history (RecBole trains every prefix); plus rows
    ``split=val`` (predict step n-2 from the steps before it) and ``split=test``
    (predict step n-1) when ``holdout`` = 2.
    Empty sequences, unknown items and NaN values are encoded, not rejected.
    """
    if mode not in ("last", "loo", "windows"):
        raise ValueError(f"unknown example mode '{mode}'; expected last, loo or windows")
    feats = user_features(pdf, max_len, btyd_params)
    has = (
        pdf["has_labels"].fillna(False).to_numpy(bool)
        if "has_labels" in pdf
        else np.zeros(len(pdf), bool)
    )
    churn = (
        pdf["churned_within_horizon"].astype("float64").fillna(0).to_numpy(np.float32)
        if "churned_within_horizon" in pdf
        else np.zeros(len(pdf), np.float32)
    )
    value = (
        np.nan_to_num(pdf["value_next_horizon"].astype("float64").to_numpy(np.float32))
        if "value_next_horizon" in pdf
        else np.zeros(len(pdf), np.float32)
    )
    rows = []
    for r, (_, row) in enumerate(pdf.iterrows()):
        it, ev, gaps, vals = _step_arrays(row, vocab)
        n = len(it)
        base = {
            "user_id": row["user_id"],
            "feats": feats[r],
            "churn": churn[r],
            "value": value[r],
            "label_w": np.float32(has[r]),
        }
        if mode == "last":
            w, length = _window(it, ev, gaps, vals, max(0, n - max_len), n, max_len, True)
            rows.append({**base, **w, "length": length, "eval_target": 0, "split": "train"})
        elif mode == "loo":
            if n < 2:
                continue
            w, length = _window(it, ev, gaps, vals, max(0, n - 1 - max_len), n - 1, max_len, False)
            rows.append(
                {**base, **w, "length": length, "eval_target": int(it[n - 1]), "split": "test"}
            )
        else:
            end = n - holdout
            step = max(1, min(stride or max_len, max_len))
            lo = 0
            while end - lo >= 2:
                hi = min(end, lo + max_len + 1)
                w, length = _window(it, ev, gaps, vals, lo, hi, max_len + 1, True)
                w = {k: v[:max_len] for k, v in w.items()}
                if lo > 0:
                    w["targets"][: max_len - step] = 0  # trained by the previous window
                rows.append(
                    {
                        **base,
                        **w,
                        "length": min(length, max_len),
                        "eval_target": 0,
                        "split": "train",
                    }
                )
                if hi == end:
                    break
                lo += step
            for name, t in (("val", n - 2), ("test", n - 1)) if holdout == 2 else ():
                if t >= 1:
                    w, length = _window(it, ev, gaps, vals, max(0, t - max_len), t, max_len, False)
                    rows.append(
                        {**base, **w, "length": length, "eval_target": int(it[t]), "split": name}
                    )
    if not rows:
        return pd.DataFrame({c: [] for c in EXAMPLE_COLUMNS})
    out = pd.DataFrame(rows)[list(EXAMPLE_COLUMNS)]
    out["length"] = out["length"].astype(np.int32)
    out["eval_target"] = out["eval_target"].astype(np.int32)
    return out
