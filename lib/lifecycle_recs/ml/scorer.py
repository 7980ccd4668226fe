"""Scoring over pandas batches (no Spark): :func:`score_batch` encodes the users'
last steps, runs the model (bf16 on CUDA, fp32 on CPU) and returns, per user:
interest vector and top categories, churn probability and predicted value with
explanations, and the top-K recommendations of the policy in :mod:`.recommend`.
The Spark UDF (``udfs.score_users``) runs it in ``mapInPandas``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import pandas as pd
import torch

from ..config import RecommendConf
from . import artifacts, recommend
from .artifacts import Artifact
from .features import USER_FEATURES, Batch, encode_last, flatten, list_lengths
from .trainer import resolve_device
from .vocab import UNK

# Output columns of score_batch, in order (their Spark types: ``schemas.SCORED_SCHEMA``).
SCORED_COLUMNS = (
    "user_id", "stage", "interest_vector", "top_category_names", "top_category_weights", "churn_probability",
    "predicted_value", "because_item_ids", "because_weights", "feature_names", "feature_effects", "rec_items",
    "rec_scores", "strategy",
)


@dataclass
class Scorer:
    art: Artifact
    device: torch.device
    items: recommend.ItemSide
    category_names: List[str]
    item_ids: np.ndarray             # [n_items] item id per index ('' for 0/1)
    feature_reference: Optional[torch.Tensor] = None  # [n_features] training mean (explanations)


def load_scorer(artifact_path: str, device: str = "auto") -> Scorer:
    """Model + item side, ready to score. ``artifact_path``: artifact dir or root with LATEST."""
    dev = resolve_device(device)
    art = artifacts.load(artifact_path, device=str(dev))
    n = art.vocab.n_items
    cats = [None, None] + list(art.vocab.categories or [None] * (n - 2))
    names = sorted({c for c in cats if c is not None})
    code = {c: i for i, c in enumerate(names)}
    cat_codes = np.array([code.get(c, -1) for c in cats], dtype=np.int64)
    with torch.no_grad():
        side = recommend.item_side(art.model.item_vectors().detach(), art.model.text_vectors,
                                   art.item_stats.popularity, art.item_stats.ltv, cat_codes, len(names), dev)
    ref = art.config.get("feature_reference")
    ref_t = torch.tensor(ref, dtype=torch.float32, device=dev) if ref else None
    return Scorer(art, dev, side, names, art.vocab.item_id_array(), ref_t)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in SCORED_COLUMNS})


@torch.no_grad()
def feature_effects(model, user: torch.Tensor, feats: torch.Tensor, churn: torch.Tensor,
                    reference: Optional[torch.Tensor] = None) -> np.ndarray:
    """[B, n_features]: change in churn probability when one feature is set to its
    reference value: the training users' mean stored in the artifact (0 for an
    artifact without one). A fixed reference, not the batch mean: a user's
    explanation must not depend on which users share its batch (partitioning,
    task retries, a lost executor)."""
    if reference is None:
        reference = torch.zeros(feats.shape[1], dtype=feats.dtype, device=feats.device)
    effects = []
    for j in range(feats.shape[1]):
        f2 = feats.clone()
        f2[:, j] = reference[j]
        p2 = torch.sigmoid(model.heads(user, f2)["churn_logit"].float())
        effects.append(churn - p2)
    return torch.stack(effects, 1).cpu().numpy()


def because_items(attention: torch.Tensor, items: torch.Tensor, item_ids: np.ndarray, n: int):
    """The ``n`` steps with the most attention (known items only), each item named once."""
    att = attention.float().masked_fill(items <= UNK, -1.0)
    bw, bi = att.topk(min(n, att.shape[1]), dim=1)
    bw, bi = bw.cpu().numpy(), bi.cpu().numpy()
    b_items = np.take_along_axis(items.cpu().numpy(), bi, axis=1)
    ids_out, w_out = [], []
    for ri, rw in zip(b_items, bw):
        ids, ws = [], []
        for i, w in zip(ri, rw):
            if w >= 0 and item_ids[i] not in ids:
                ids.append(item_ids[i])
                ws.append(float(w))
        ids_out.append(ids)
        w_out.append(ws)
    return ids_out, w_out


@torch.no_grad()
def score_batch(pdf: pd.DataFrame, sc: Scorer, conf: RecommendConf) -> pd.DataFrame:
    """user rows (user_sequences ⋈ user_lifecycle.stage) -> one scored row per user (``SCORED_COLUMNS``)."""
    B = len(pdf)
    if B == 0:
        return _empty()
    model, dev, items = sc.art.model, sc.device, sc.items
    enc = encode_last(pdf, sc.art.vocab, sc.art.max_len, sc.art.config.get("btyd"))
    enc["feats"] = enc["feats"][:, :model.spec.n_user_features]  # an older artifact has fewer
    n_events = pdf["n_events"].to_numpy() if "n_events" in pdf else enc["length"].copy()
    enc["length"] = np.maximum(enc["length"], 1)  # an empty sequence scores from padding alone
    b = Batch.from_arrays(enc).to(dev)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        out = model(b)
    user = out["user"].float()
    churn = torch.sigmoid(out["churn_logit"].float())
    value = model.predicted_value(out["value_logit"].float(), out["value_mu"].float(),
                                  float(sc.art.metrics.get("value_log_residual_var", 0.0))).clamp(min=0)
    z_user = user.to(next(model.churn_head.parameters()).dtype)
    effects = feature_effects(model, z_user, b.feats, churn, sc.feature_reference)
    stages = pdf["stage"].to_numpy() if "stage" in pdf else np.array(["active"] * B, dtype=object)
    is_new_all, at_risk_all = recommend.strategy_masks(stages, n_events, conf)

    # every item of the user's sequence counts as seen, not only the model's window
    n_all = list_lengths(pdf["item_ids"])
    seen = sc.art.vocab.item_index(flatten(pdf["item_ids"], n_all))
    known = seen > UNK
    seen_rows, seen_cols = np.repeat(np.arange(B), n_all)[known], seen[known]
    rec_items, rec_scores, cat_names, cat_weights = [], [], [], []
    for lo in range(0, B, conf.chunk_size):
        hi = min(B, lo + conf.chunk_size)
        s = user[lo:hi] @ items.vectors.T                          # [b, n_items]
        s[:, :2] = -float("inf")                                  # padding / unknown never ranked
        # interests: the model's softmax mass per category times the user's long-term
        # category mix (recency-weighted history), renormalised: a distribution over the
        # categories this user has shown interest in, sharpened or shifted by the model
        prob = torch.softmax(s[:, 2:], dim=1) @ items.category_onehot
        mix = recommend.category_interests(b.items[lo:hi], items, conf.interest_decay, conf.interest_prior_steps)
        prob = prob * mix
        prob = prob / prob.sum(1, keepdim=True).clamp(min=1e-12)
        # a tiny catalog may have fewer named categories than asked for (or none)
        tw, ti = prob.topk(min(conf.top_categories, len(sc.category_names)), dim=1)
        final = recommend.policy_scores(s, b.items[lo:hi], is_new_all[lo:hi], at_risk_all[lo:hi], items, conf)
        m = (seen_rows >= lo) & (seen_rows < hi)
        chosen_i, chosen_s = recommend.recommend(final, torch.as_tensor(seen_rows[m] - lo, device=dev),
                                                 torch.as_tensor(seen_cols[m], device=dev), items, conf)
        ids_np = sc.item_ids[chosen_i.cpu().numpy()]
        sc_np = chosen_s.cpu().numpy().astype(np.float64)
        ok = np.isfinite(sc_np)
        rec_items += [row[mk].tolist() for row, mk in zip(ids_np, ok)]
        rec_scores += [row[mk].tolist() for row, mk in zip(sc_np, ok)]
        cat_names += [[sc.category_names[c] for c in row] for row in ti.cpu().numpy()]
        cat_weights += tw.cpu().numpy().astype(np.float64).tolist()

    because_ids, because_w = because_items(out["attention"], b.items, sc.item_ids, conf.because_items)
    order = np.argsort(-np.abs(effects), axis=1)[:, :conf.top_features]
    return pd.DataFrame({
        "user_id": pdf["user_id"].to_numpy(),
        "stage": stages,
        "interest_vector": list(user.cpu().numpy().astype(np.float32)),
        "top_category_names": cat_names,
        "top_category_weights": cat_weights,
        "churn_probability": churn.cpu().numpy().astype(np.float64),
        "predicted_value": value.cpu().numpy().astype(np.float64),
        "because_item_ids": because_ids,
        "because_weights": because_w,
        "feature_names": [[USER_FEATURES[j] for j in row] for row in order],
        "feature_effects": [[float(effects[i, j]) for j in row] for i, row in enumerate(order)],
        "rec_items": rec_items,
        "rec_scores": rec_scores,
        "strategy": recommend.strategy_names(is_new_all, at_risk_all),
    })
