"""Training examples (Spark), petastorm feeding, the training loop and model artifacts.

The example builder is a function over pandas batches (``encode_users``): the
Spark job runs it in ``mapInPandas``; the scoring UDF reuses it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import pandas as pd
import torch

from .config import Config, ModelConf, TrainConf
from .model import (N_USER_FEATURES, ModelSpec, SequenceModel, churn_loss, log1p_features, next_item_loss,
                    value_loss)

log = logging.getLogger(__name__)
PAD, UNK = 0, 1
ARRAY_COLS = ("items", "events", "gaps", "values", "targets")


@dataclass
class Vocab:
    """Item ids -> indices (0 padding, 1 unknown) and event types likewise."""
    item_ids: List[str]
    event_types: List[str]
    categories: List[Optional[str]] = field(default_factory=list)
    _item_index: Dict[str, int] = field(default=None, repr=False)
    _event_index: Dict[str, int] = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        return len(self.item_ids) + 2

    @property
    def n_event_types(self) -> int:
        return len(self.event_types) + 2

    def item_index(self, ids) -> np.ndarray:
        if self._item_index is None:
            self._item_index = {k: i + 2 for i, k in enumerate(self.item_ids)}
        get = self._item_index.get
        return np.fromiter((get(x, UNK) if x is not None else UNK for x in ids), dtype=np.int32, count=len(ids))

    def event_index(self, types) -> np.ndarray:
        if self._event_index is None:
            self._event_index = {k: i + 2 for i, k in enumerate(self.event_types)}
        get = self._event_index.get
        return np.fromiter((get(x, UNK) for x in types), dtype=np.int32, count=len(types))

    def to_json(self) -> Dict:
        return {"item_ids": self.item_ids, "event_types": self.event_types, "categories": self.categories}

    @classmethod
    def from_json(cls, d: Dict) -> "Vocab":
        return cls(d["item_ids"], d["event_types"], d.get("categories", []))


# -- examples over pandas batches ---------------------------------------------------
def user_features(pdf: pd.DataFrame, max_len: int) -> np.ndarray:
    cols = ["days_since_last_event", "n_events", "tenure_days", "monetary_total", "active_days"]
    f = np.stack([log1p_features(pdf[c].to_numpy(dtype=np.float64)) if c in pdf else
                  np.zeros(len(pdf), np.float32) for c in cols], axis=1)
    seq_len = pdf["sequence_length"].to_numpy(dtype=np.float32) if "sequence_length" in pdf else np.zeros(len(pdf))
    return np.concatenate([f, (seq_len / max_len)[:, None].astype(np.float32)], axis=1)


def _step_arrays(row, vocab: Vocab):
    items = row["item_ids"] if row["item_ids"] is not None else []
    n = len(items)
    it = vocab.item_index(list(items))
    ev = vocab.event_index(list(row["event_types"] if row["event_types"] is not None else [None] * n))
    gaps = log1p_features(np.asarray(row["time_gaps_hours"] if row["time_gaps_hours"] is not None else
                                     np.zeros(n), dtype=np.float64))
    vals = log1p_features(np.asarray(row["values"] if row["values"] is not None else np.zeros(n),
                                     dtype=np.float64))
    return it, ev, gaps, vals


def _window(it, ev, gaps, vals, lo, hi, max_len, next_target: bool):
    """Steps [lo, hi) right-padded to max_len; per-step targets are the next step's item."""
    n = hi - lo
    out = {k: np.zeros(max_len, np.int32 if k in ("items", "events", "targets") else np.float32) for k in ARRAY_COLS}
    out["items"][:n], out["events"][:n] = it[lo:hi], ev[lo:hi]
    out["gaps"][:n], out["values"][:n] = gaps[lo:hi], vals[lo:hi]
    if next_target and n > 1:
        out["targets"][:n - 1] = it[lo + 1:hi]
    if next_target and n > 1:
        out["targets"][out["targets"] == UNK] = 0  # unknown items are not targets
    return out, n


def _flat(col: pd.Series, n: np.ndarray, dtype=None):
    parts = [np.asarray(x if x is not None else (), dtype=dtype) for x in col]
    if not parts:
        return np.zeros(0, dtype=dtype or object)
    return np.concatenate(parts) if int(n.sum()) else np.zeros(0, dtype=dtype or object)


def encode_last(pdf: pd.DataFrame, vocab: Vocab, max_len: int) -> Dict[str, np.ndarray]:
    """Vectorised: the last ``max_len`` steps of each user, right-padded, as arrays
    (items, events, gaps, values, targets, length, feats). The scoring hot path."""
    B = len(pdf)
    n_all = np.fromiter((len(x) if x is not None else 0 for x in pdf["item_ids"]), dtype=np.int64, count=B)
    start = np.maximum(n_all - max_len, 0)
    length = (n_all - start).astype(np.int64)
    out = {"items": np.zeros((B, max_len), np.int64), "events": np.zeros((B, max_len), np.int64),
           "gaps": np.zeros((B, max_len), np.float32), "values": np.zeros((B, max_len), np.float32)}
    if n_all.sum():
        # position of every flattened step inside its user's window
        offs = np.repeat(np.cumsum(n_all) - n_all, n_all)
        pos = np.arange(int(n_all.sum())) - offs - np.repeat(start, n_all)
        keep = pos >= 0
        row = np.repeat(np.arange(B), n_all)[keep]
        col = pos[keep]
        items = _flat(pdf["item_ids"], n_all)[keep]
        if vocab._item_index is None:
            vocab.item_index([])
        idx = pd.Index(list(vocab._item_index.keys()))
        got = idx.get_indexer(pd.Series(items).fillna("\u0000").to_numpy())
        out["items"][row, col] = np.where(got >= 0, got + 2, UNK)
        types = _flat(pdf["event_types"], n_all)[keep] if "event_types" in pdf else np.array([None] * len(row))
        tidx = pd.Index(vocab.event_types).get_indexer(pd.Series(types).fillna("\u0000").to_numpy())
        out["events"][row, col] = np.where(tidx >= 0, tidx + 2, UNK)
        for src, dst in (("time_gaps_hours", "gaps"), ("values", "values")):
            if src in pdf:
                lens = np.fromiter((len(x) if x is not None else 0 for x in pdf[src]), dtype=np.int64, count=B)
                if np.array_equal(lens, n_all):
                    out[dst][row, col] = log1p_features(_flat(pdf[src], n_all, np.float64)[keep])
    targets = np.zeros((B, max_len), np.int64)
    targets[:, :-1] = out["items"][:, 1:]
    targets[np.arange(max_len)[None, :] >= (length - 1)[:, None]] = 0
    targets[targets == UNK] = 0
    out["targets"] = targets
    out["length"] = length
    out["feats"] = user_features(pdf, max_len)
    return out


def encode_users(pdf: pd.DataFrame, vocab: Vocab, max_len: int, mode: str = "last",
                 holdout: int = 0, stride: Optional[int] = None) -> pd.DataFrame:
    """user rows (user_sequences [+ lifecycle labels]) -> model example rows.

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
    feats = user_features(pdf, max_len)
    has = pdf["has_labels"].fillna(False).to_numpy(bool) if "has_labels" in pdf else np.zeros(len(pdf), bool)
    churn = pdf["churned_within_horizon"].astype("float64").fillna(0).to_numpy(np.float32) \
        if "churned_within_horizon" in pdf else np.zeros(len(pdf), np.float32)
    value = np.nan_to_num(pdf["value_next_horizon"].astype("float64").to_numpy(np.float32)) \
        if "value_next_horizon" in pdf else np.zeros(len(pdf), np.float32)
    rows = []
    for r, (_, row) in enumerate(pdf.iterrows()):
        it, ev, gaps, vals = _step_arrays(row, vocab)
        n = len(it)
        base = {"user_id": row["user_id"], "feats": feats[r], "churn": churn[r], "value": value[r],
                "label_w": np.float32(has[r])}
        if mode == "last":
            w, length = _window(it, ev, gaps, vals, max(0, n - max_len), n, max_len, True)
            rows.append({**base, **w, "length": length, "eval_target": 0, "split": "train"})
        elif mode == "loo":
            if n < 2:
                continue
            w, length = _window(it, ev, gaps, vals, max(0, n - 1 - max_len), n - 1, max_len, False)
            rows.append({**base, **w, "length": length, "eval_target": int(it[n - 1]), "split": "test"})
        elif mode == "windows":
            end = n - holdout
            step = max(1, min(stride or max_len, max_len))
            lo = 0
            while end - lo >= 2:
                hi = min(end, lo + max_len + 1)
                w, length = _window(it, ev, gaps, vals, lo, hi, max_len + 1, True)
                w = {k: v[:max_len] for k, v in w.items()}
                if lo > 0:
                    w["targets"][:max_len - step] = 0  # trained by the previous window
                rows.append({**base, **w, "length": min(length, max_len), "eval_target": 0, "split": "train"})
                if hi == end:
                    break
                lo += step
            for name, t in (("val", n - 2), ("test", n - 1)) if holdout == 2 else ():
                if t >= 1:
                    w, length = _window(it, ev, gaps, vals, max(0, t - max_len), t, max_len, False)
                    rows.append({**base, **w, "length": length, "eval_target": int(it[t]), "split": name})
        else:
            raise ValueError(f"unknown example mode '{mode}'")
    cols = ["user_id", *ARRAY_COLS, "length", "feats", "churn", "value", "label_w", "eval_target", "split"]
    if not rows:
        return pd.DataFrame({c: [] for c in cols})
    out = pd.DataFrame(rows)[cols]
    out["length"] = out["length"].astype(np.int32)
    out["eval_target"] = out["eval_target"].astype(np.int32)
    return out


EXAMPLE_SCHEMA = (
    "user_id string, items array<int>, events array<int>, gaps array<float>, values array<float>, "
    "targets array<int>, length int, feats array<float>, churn float, value float, label_w float, "
    "eval_target int, split string"
)


def examples(df, vocab: Vocab, max_len: int, mode: str = "last", holdout: int = 0, stride: Optional[int] = None):
    """Spark: user rows -> example rows (``EXAMPLE_SCHEMA``), built on the workers."""
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for b in batches:
            yield encode_users(b, vocab, max_len, mode, holdout, stride)

    return df.mapInPandas(run, EXAMPLE_SCHEMA)


def tensors_from_pandas(ex: pd.DataFrame) -> Dict[str, torch.Tensor]:
    out = {k: torch.as_tensor(np.stack(ex[k].to_numpy())) for k in (*ARRAY_COLS, "feats")}
    for k in ("length", "eval_target"):
        out[k] = torch.as_tensor(ex[k].to_numpy(np.int64))
    for k in ("churn", "value", "label_w"):
        out[k] = torch.as_tensor(ex[k].to_numpy(np.float32))
    out["items"], out["events"], out["targets"] = out["items"].long(), out["events"].long(), out["targets"].long()
    return out


def _read_materialised(cache_dir_url: str, cols) -> Dict[str, List[torch.Tensor]]:
    import pyarrow.parquet as pq

    path = cache_dir_url.replace("file://", "")
    parts: Dict[str, List[torch.Tensor]] = {c: [] for c in cols}
    files = sorted(f for f in os.listdir(path) if f.endswith(".parquet"))
    for f in files:
        for rb in pq.ParquetFile(os.path.join(path, f)).iter_batches(batch_size=4096, columns=list(cols)):
            t = rb.to_pydict()
            if not t[cols[0]]:
                continue
            for c in cols:
                parts[c].append(torch.as_tensor(np.asarray(t[c])))
    return parts


def tensors_via_petastorm(spark, df, cache_dir: str, batch_size: int = 1024) -> Dict[str, torch.Tensor]:
    """Read an example DataFrame into tensors through petastorm
    (``make_spark_converter`` -> ``make_torch_dataloader``), one pass, in a fixed order."""
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    os.makedirs(cache_dir, exist_ok=True)
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, "file://" + os.path.abspath(cache_dir))
    cols = [*ARRAY_COLS, "length", "feats", "churn", "value", "label_w", "eval_target"]
    from petastorm.spark import spark_dataset_converter as sdc

    # petastorm 0.13.1 reuses a cached conversion when it judges two plans equal; every
    # conversion here is deleted after use, so forget them all before a new one
    with sdc._cache_df_meta_list_lock:
        sdc._cache_df_meta_list.clear()
    conv = make_spark_converter(df.select(*cols))
    parts: Dict[str, List[torch.Tensor]] = {c: [] for c in cols}
    try:
        with conv.make_torch_dataloader(batch_size=batch_size, num_epochs=1, workers_count=1,
                                        shuffling_queue_capacity=0) as loader:
            for batch in loader:
                for c in cols:
                    parts[c].append(torch.as_tensor(batch[c]))
        if not parts["length"]:
            # Seen here, intermittently (several conversions in one session): the
            # reader yields nothing from a non-empty materialisation. Read the files
            # petastorm wrote directly rather than lose the data.
            parts = _read_materialised(conv.cache_dir_url, cols)
            if parts["length"]:
                log.warning("petastorm reader returned no rows; read its %d materialised rows directly",
                            sum(len(x) for x in parts["length"]))
    finally:
        conv.delete()
    if not parts["length"]:
        raise ValueError("no training examples: the training snapshot has no users with sequences")
    out = {c: torch.cat(v) for c, v in parts.items()}
    # petastorm row-group order is not fixed: sort rows by content for a reproducible order
    key = (out["items"].long() * 1000003 + out["length"][:, None]).sum(1) + out["targets"].long().sum(1) * 7
    order = torch.argsort(key * 1000 + out["length"], stable=True)
    out = {c: v[order] for c, v in out.items()}
    for c in ("items", "events", "targets", "length", "eval_target"):
        out[c] = out[c].long()
    for c in ("gaps", "values", "feats", "churn", "value", "label_w"):
        out[c] = out[c].float()
    return out


# -- training -----------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _batch(t: Dict[str, torch.Tensor], idx, device):
    return {k: v[idx].to(device, non_blocking=True) for k, v in t.items()}


@torch.no_grad()
def rank_targets(model: SequenceModel, t: Dict[str, torch.Tensor], device, batch_size: int = 2048,
                 exclude_seen: bool = False) -> np.ndarray:
    """1-based rank of ``eval_target`` among all catalog items (full ranking, ties
    counted against the target), from the last step's user vector."""
    model.eval()
    iv = model.item_vectors()
    ranks = []
    for i in range(0, len(t["length"]), batch_size):
        b = _batch(t, slice(i, i + batch_size), device)
        out = model(b["items"], b["events"], b["gaps"], b["values"], b["length"], b["feats"])
        s = out["user"] @ iv.T
        s[:, :2] = -float("inf")  # padding and unknown are never candidates
        if exclude_seen:
            seen = torch.zeros_like(s, dtype=torch.bool).scatter_(1, b["items"], True)
            seen[:, :2] = True
            seen[torch.arange(len(s)), b["eval_target"]] = False
            s = s.masked_fill(seen, -float("inf"))
        tgt = s.gather(1, b["eval_target"][:, None])
        ranks.append(((s > tgt).sum(1) + 1).cpu())
    return torch.cat(ranks).numpy() if ranks else np.zeros(0, dtype=np.int64)


def _losses(model, b, w: Dict[str, float], n_neg: int):
    out = model(b["items"], b["events"], b["gaps"], b["values"], b["length"], b["feats"])
    l_next = next_item_loss(out["user_steps"], b["targets"], model.item_vectors(), n_neg)
    l_churn = churn_loss(out["churn_logit"], b["churn"], b["label_w"])
    l_value = value_loss(out["value_logit"], out["value_mu"], b["value"], b["label_w"])
    total = w.get("next_item", 1.0) * l_next + w.get("churn", 0.5) * l_churn + w.get("value", 0.2) * l_value
    return total, {"next_item": float(l_next.detach()), "churn": float(l_churn.detach()), "value": float(l_value.detach())}


def train_model(train: Dict[str, torch.Tensor], val: Optional[Dict[str, torch.Tensor]], vocab: Vocab,
                text_vectors: Optional[np.ndarray], mconf: ModelConf, tconf: TrainConf,
                max_len: int) -> Tuple[SequenceModel, Dict]:
    """Seeded training with early stopping on validation NDCG@10 (when the
    validation rows have next-item targets) or validation loss."""
    seed_everything(tconf.seed)
    device = resolve_device(tconf.device)
    spec = ModelSpec(n_items=vocab.n_items, n_event_types=vocab.n_event_types,
                     text_dim=int(text_vectors.shape[1]) if (mconf.use_text and text_vectors is not None) else 0,
                     encoder=mconf.encoder, hidden_dim=mconf.hidden_dim, item_dim=mconf.item_dim,
                     event_dim=mconf.event_dim, layers=mconf.layers, dropout=mconf.dropout)
    model = SequenceModel(spec, text_vectors if spec.text_dim else None).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=tconf.lr, weight_decay=tconf.weight_decay)
    n_neg = mconf.n_negatives if vocab.n_items > mconf.sampled_softmax_threshold else 0
    use_amp = device.type == "cuda"
    gen = torch.Generator().manual_seed(tconf.seed)
    n = len(train["length"])
    best, best_state, bad_epochs, history = -float("inf"), None, 0, []
    for epoch in range(tconf.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        steps, tot = 0, 0.0
        for i in range(0, n, tconf.batch_size):
            b = _batch(train, perm[i:i + tconf.batch_size], device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, parts = _losses(model, b, mconf.loss_weights, n_neg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            tot += float(loss.detach())
            steps += 1
            if tconf.max_steps_per_epoch and steps >= tconf.max_steps_per_epoch:
                break
        rec = {"epoch": epoch, "train_loss": tot / max(1, steps), "seconds": time.perf_counter() - t0}
        if val is not None and len(val["length"]):
            model.eval()
            with torch.no_grad():
                if (val["eval_target"] > 1).any():
                    r = rank_targets(model, val, device)
                    rec["val_ndcg10"] = float(np.mean(np.where(r <= 10, 1 / np.log2(r + 1), 0)))
                    rec["val_hit10"] = float(np.mean(r <= 10))
                    score = rec["val_ndcg10"]
                else:
                    vb = _batch(val, slice(0, len(val["length"])), device)
                    vl, _ = _losses(model, vb, mconf.loss_weights, n_neg)
                    rec["val_loss"] = float(vl)
                    score = -rec["val_loss"]
        else:
            score = -rec["train_loss"]
        history.append(rec)
        log.info("epoch %s", rec)
        if score > best:
            best, bad_epochs = score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
            if bad_epochs >= tconf.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model, {"history": history, "best_score": best, "epochs_run": len(history), "device": str(device)}


def fit_heads(model: SequenceModel, train: Dict[str, torch.Tensor], val: Optional[Dict[str, torch.Tensor]],
              weights: Dict[str, float], steps: int = 400, lr: float = 0.01, seed: int = 0) -> Dict[str, float]:
    """Refit the churn and value heads on frozen user vectors (full batch, cheap).

    Joint training spends most of its steps on the next-item objective; the
    heads see each labelled user only a few times. With the encoder frozen,
    the user vectors are computed once and the small heads converge in a few
    hundred full-batch steps; the best step on the validation users is kept."""
    torch.manual_seed(seed)
    dev = next(model.parameters()).device

    @torch.no_grad()
    def user_vectors(t):
        model.eval()
        outs = []
        for i in range(0, len(t["length"]), 4096):
            b = _batch(t, slice(i, i + 4096), dev)
            outs.append(model(b["items"], b["events"], b["gaps"], b["values"], b["length"].clamp(min=1),
                              b["feats"])["user"])
        return torch.cat(outs) if outs else torch.zeros(0, model.spec.item_dim, device=dev)

    def loss_of(u, t):
        z = torch.cat([u, model.feat(t["feats"].to(dev))], -1)
        v = model.value_head(z)
        w = t["label_w"].to(dev)
        return (weights.get("churn", 0.5) * churn_loss(model.churn_head(z).squeeze(-1), t["churn"].to(dev), w)
                + weights.get("value", 0.2) * value_loss(v[:, 0], v[:, 1], t["value"].to(dev), w))

    if float(train["label_w"].sum()) == 0:
        return {}
    u_tr = user_vectors(train)
    u_va = user_vectors(val) if val is not None and float(val["label_w"].sum()) > 0 else None
    params = [*model.feat.parameters(), *model.churn_head.parameters(), *model.value_head.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    best, best_state = float("inf"), None
    for step in range(steps):
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = loss_of(u_tr, train)
        loss.backward()
        opt.step()
        if step % 10 == 9 or step == steps - 1:
            model.eval()
            with torch.no_grad():
                score = float(loss_of(u_va, val)) if u_va is not None else float(loss)
            if score < best:
                best = score
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return {"heads_best_loss": best}


# -- artifacts ----------------------------------------------------------------------
def save_artifact(root: str, model: SequenceModel, vocab: Vocab, max_len: int, metrics: Dict,
                  extra: Optional[Dict] = None) -> str:
    """Write weights, config, vocabulary, metrics and a version string under
    ``root/<version>/`` and point ``root/LATEST`` at it. Returns the directory."""
    state = model.state_dict()
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().numpy().tobytes())
    # deterministic: a rerun of the same night (same data, same seed) gives the same
    # weights, hence the same version, hence identical output tables
    stamp = str((extra or {}).get("training_date") or dt.date.today().isoformat())
    version = f"{model.spec.encoder}-{stamp}-{h.hexdigest()[:8]}"
    d = os.path.join(root, version)
    os.makedirs(d, exist_ok=True)
    torch.save(state, os.path.join(d, "model.pt"))
    with open(os.path.join(d, "config.json"), "w") as fh:
        json.dump({"spec": model.spec.to_dict(), "max_len": max_len, "version": version, **(extra or {})}, fh, indent=1)
    with open(os.path.join(d, "vocab.json"), "w") as fh:
        json.dump(vocab.to_json(), fh)
    with open(os.path.join(d, "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=1, default=float)
    tmp = os.path.join(root, "LATEST.tmp")
    with open(tmp, "w") as fh:
        fh.write(version)
    os.replace(tmp, os.path.join(root, "LATEST"))  # atomic switch
    return d


@dataclass
class Artifact:
    model: SequenceModel
    vocab: Vocab
    version: str
    max_len: int
    config: Dict


def load_artifact(path: str, device: str = "cpu") -> Artifact:
    """Load an artifact directory, or the LATEST one under an artifacts root."""
    if os.path.exists(os.path.join(path, "LATEST")):
        with open(os.path.join(path, "LATEST")) as fh:
            path = os.path.join(path, fh.read().strip())
    if not os.path.exists(os.path.join(path, "model.pt")):
        raise FileNotFoundError(f"no model artifact at {path}: run the train stage first")
    with open(os.path.join(path, "config.json")) as fh:
        cfg = json.load(fh)
    with open(os.path.join(path, "vocab.json")) as fh:
        vocab = Vocab.from_json(json.load(fh))
    model = SequenceModel(ModelSpec(**cfg["spec"]))
    model.load_state_dict(torch.load(os.path.join(path, "model.pt"), map_location="cpu"))
    model.to(device).eval()
    return Artifact(model, vocab, cfg["version"], int(cfg["max_len"]), cfg)


# -- Spark side ---------------------------------------------------------------------
def build_vocab(spark, cfg: Config):
    """Vocabulary from the items table (small: one row per item) and the text
    vectors of the configured model aligned to it (zeros where missing)."""
    from pyspark.sql import functions as F

    from . import tables

    items = tables.read(spark, cfg, "items").select("item_id", "category").orderBy("item_id").collect()
    vocab = Vocab([r["item_id"] for r in items], list(cfg.validation.event_types), [r["category"] for r in items])
    text = None
    if cfg.model.use_text and tables.exists(spark, cfg, "item_embeddings"):
        emb = (tables.read(spark, cfg, "item_embeddings")
               .where(F.col("model_name") == cfg.embedding.model_name).select("item_id", "embedding").collect())
        if emb:
            dim = len(emb[0]["embedding"])
            text = np.zeros((vocab.n_items, dim), np.float32)
            idx = vocab.item_index([r["item_id"] for r in emb])
            text[idx] = np.asarray([r["embedding"] for r in emb], np.float32)
            text[:2] = 0
    return vocab, text


def training_frame(spark, cfg: Config, snapshot_date: str):
    """user_sequences ⋈ user_lifecycle labels for one snapshot."""
    from . import tables

    seq = tables.read(spark, cfg, "user_sequences", snapshot_date)
    lab = tables.read(spark, cfg, "user_lifecycle", snapshot_date).select(
        "user_id", "stage", "has_labels", "churned_within_horizon", "value_next_horizon", "items_next_horizon",
        "value_last_horizon")
    return seq.join(lab, on="user_id", how="inner")


def holdout_flag(fraction: float, seed: int):
    """A user-level split column, stable across runs: hash(user_id, seed) < fraction."""
    from pyspark.sql import functions as F

    return (F.abs(F.xxhash64(F.col("user_id"), F.lit(seed))) % 10000) < int(fraction * 10000)


def run_stage(ctx) -> Dict[str, object]:
    """Nightly stage ``train``: fit on the training snapshot T = D - H (labels (T, D]),
    hold out a fraction of users for early stopping, save a versioned artifact."""
    from pyspark.sql import functions as F

    spark, cfg = ctx.spark, ctx.cfg
    t_date = ctx.training_date
    vocab, text = build_vocab(spark, cfg)
    frame = training_frame(spark, cfg, t_date).withColumn("_val", holdout_flag(cfg.train.validation_fraction,
                                                                                cfg.train.seed))
    L = cfg.sequences.max_length
    cache = cfg.train.petastorm_cache_dir or os.path.join(cfg.artifacts, "_petastorm")
    train_t = tensors_via_petastorm(spark, examples(frame.where(~F.col("_val")), vocab, L, "last"), cache)
    val_t = tensors_via_petastorm(spark, examples(frame.where(F.col("_val")), vocab, L, "loo"), cache)
    val_labels = tensors_via_petastorm(spark, examples(frame.where(F.col("_val")), vocab, L, "last"), cache)
    model, info = train_model(train_t, val_t, vocab, text, cfg.model, cfg.train, L)
    info.update(fit_heads(model, train_t, val_labels, cfg.model.loss_weights, seed=cfg.train.seed))
    metrics = {"train_rows": len(train_t["length"]), "val_rows": len(val_t["length"]), **info}
    # churn quality on the held-out users, for the log and the artifact
    from .evaluation import binary_metrics

    with torch.no_grad():
        dev = next(model.parameters()).device
        vb = _batch(val_labels, slice(0, len(val_labels["length"])), dev)
        out = model(vb["items"], vb["events"], vb["gaps"], vb["values"], vb["length"], vb["feats"])
        p = torch.sigmoid(out["churn_logit"]).cpu().numpy()
    m = val_labels["label_w"].numpy() > 0
    if m.sum() and 0 < val_labels["churn"].numpy()[m].mean() < 1:
        metrics["val_churn_auc"] = binary_metrics(val_labels["churn"].numpy()[m], p[m])["roc_auc"]
    d = save_artifact(cfg.artifacts, model, vocab, L, metrics, {"training_date": t_date,
                                                                "embedding_model": cfg.embedding.model_name})
    return {"artifact": os.path.basename(d), "train_rows": metrics["train_rows"], "val_rows": metrics["val_rows"],
            "epochs": info["epochs_run"], "val_churn_auc": metrics.get("val_churn_auc")}
