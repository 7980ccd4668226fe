"""Nightly scoring and recommendations.

:func:`score_batch` is the function over pandas batches (no Spark): encode the
users' last steps, run the model (bf16 on CUDA, fp32 on CPU), and produce per
user: interest vector and top categories, churn probability and predicted
value with explanations, and top-K recommendations. :func:`score_users` runs it
in ``mapInPandas`` (model loaded once per Python worker; item vectors computed
once per worker) and the stage writes ``user_interests``, ``retention_scores``
and ``recommendations`` for D.

Lifecycle-aware ranking (``strategy``):

* ``new_user_content_popularity`` — stage ``new`` or at most
  ``new_user_max_events`` events: few steps make a weak sequence signal, so the
  score blends the model (0.3), content similarity to the items the user touched
  (mean text vector, 0.4) and popularity (0.3), each standardised per user;
* ``at_risk_long_term_value`` — stages ``at_risk`` and ``churned``: the model
  score plus ``at_risk_value_weight`` x the item's long-term-value association
  (standardised): the smoothed share of users who touched the item in the
  training snapshot and were still active H days later;
* ``personalized`` — everyone else: the model score.

Then seen items are removed where ``filter_seen`` (re-consumption not
expected), and a category cap keeps at most ``category_cap`` items of one
category in a user's top-K (filled from the rest when the catalog is short).
"""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

import numpy as np
import pandas as pd
import torch

from .config import RecommendConf
from .training import UNK, Artifact, encode_last, load_artifact, resolve_device

FEATURE_NAMES = ["days_since_last_event", "n_events", "tenure_days", "monetary_total", "active_days",
                 "sequence_length"]
OUT_SCHEMA = (
    "user_id string, stage string, interest_vector array<float>, top_category_names array<string>, "
    "top_category_weights array<double>, churn_probability double, predicted_value double, "
    "because_item_ids array<string>, because_weights array<double>, feature_names array<string>, "
    "feature_effects array<double>, rec_items array<string>, rec_scores array<double>, strategy string"
)


@dataclass
class Scorer:
    art: Artifact
    device: torch.device
    item_vecs: torch.Tensor          # [n_items, d]
    text_unit: Optional[torch.Tensor]  # [n_items, t] unit text vectors (or None)
    popularity: np.ndarray           # [n_items]
    ltv: np.ndarray                  # [n_items] long-term-value association
    categories: np.ndarray           # [n_items] category code per item index
    category_names: List[str]
    item_ids: np.ndarray             # [n_items] item id per index ('' for 0/1)
    _terms: Optional[tuple] = None


def item_stats_path(artifact_dir: str) -> str:
    return os.path.join(artifact_dir, "item_stats.npz")


def load_scorer(artifact_path: str, device: str = "auto") -> Scorer:
    """Model + item side, ready to score. ``artifact_path``: artifact dir or root with LATEST."""
    dev = resolve_device(device)
    art = load_artifact(artifact_path, device=str(dev))
    root = artifact_path
    if os.path.exists(os.path.join(root, "LATEST")):
        root = os.path.join(root, open(os.path.join(root, "LATEST")).read().strip())
    n = art.vocab.n_items
    with torch.no_grad():
        item_vecs = art.model.item_vectors().detach().float()
        tv = art.model.text_vectors
        text_unit = torch.nn.functional.normalize(tv.float(), dim=1) if tv.numel() else None
    stats = np.load(item_stats_path(root)) if os.path.exists(item_stats_path(root)) else None
    pop = stats["popularity"] if stats is not None else np.zeros(n)
    ltv = stats["ltv"] if stats is not None else np.zeros(n)
    cats = [None, None] + list(art.vocab.categories or [None] * (n - 2))
    names = sorted({c for c in cats if c is not None})
    code = {c: i for i, c in enumerate(names)}
    cat_codes = np.array([code.get(c, -1) for c in cats], dtype=np.int64)
    ids = np.array(["", ""] + list(art.vocab.item_ids), dtype=object)
    return Scorer(art, dev, item_vecs.to(dev), text_unit.to(dev) if text_unit is not None else None,
                  np.asarray(pop, np.float64), np.asarray(ltv, np.float64), cat_codes, names, ids)


def _capped_topk(top_s: torch.Tensor, top_i: torch.Tensor, cats: torch.Tensor, k: int, cap: int, n_cat: int):
    """From candidates sorted by score, keep at most ``cap`` per category and take
    the first k; when too few remain (small catalog), fill with the best skipped ones.
    Vectorised over users (a running count per category along the sorted list)."""
    if cap <= 0:
        return top_i[:, :k], top_s[:, :k]
    c = cats[top_i].clamp(min=0)
    onehot = torch.nn.functional.one_hot(c, n_cat).to(torch.int32)
    seen_before = (torch.cumsum(onehot, dim=1) * onehot).sum(-1)    # 1-based count within category
    allowed = (seen_before <= cap) | (cats[top_i] < 0)
    allowed &= torch.isfinite(top_s)
    # allowed first (in score order), then the skipped ones
    pos = torch.arange(top_s.shape[1], device=top_s.device)[None, :]
    key = torch.where(allowed, pos, pos + top_s.shape[1])
    order = key.argsort(dim=1)[:, :k]
    return top_i.gather(1, order), top_s.gather(1, order)


def _item_terms(sc: Scorer):
    """Standardised log-popularity and long-term-value association, and the
    item -> category one-hot matrix; computed once per scorer."""
    if getattr(sc, "_terms", None) is None:
        dev = sc.device
        pop = torch.as_tensor(np.log1p(np.maximum(sc.popularity, 0)), dtype=torch.float32, device=dev)
        ltv = torch.as_tensor(sc.ltv, dtype=torch.float32, device=dev)

        def z(x):
            body = x[2:]
            return (x - body.mean()) / body.std().clamp(min=1e-6)

        n_cat = max(1, len(sc.category_names))
        onehot = torch.zeros(len(sc.categories) - 2, n_cat, device=dev)
        cats = torch.as_tensor(sc.categories[2:], device=dev)
        ok = cats >= 0
        onehot[torch.arange(len(cats), device=dev)[ok], cats[ok]] = 1.0
        sc._terms = (z(pop), z(ltv), onehot)
    return sc._terms


@torch.no_grad()
def score_batch(pdf: pd.DataFrame, sc: Scorer, conf: RecommendConf, new_stage: str = "new") -> pd.DataFrame:
    """user rows (user_sequences ⋈ user_lifecycle.stage) -> one scored row per user (``OUT_SCHEMA``)."""
    B = len(pdf)
    if B == 0:
        return pd.DataFrame({c.split()[0]: [] for c in OUT_SCHEMA.split(", ")})
    model, vocab, dev = sc.art.model, sc.art.vocab, sc.device
    enc = encode_last(pdf, vocab, sc.art.max_len)
    t = {k: torch.as_tensor(v).to(dev) for k, v in enc.items()}
    t["length"] = t["length"].clamp(min=1)  # an empty sequence scores from padding alone
    amp = dev.type == "cuda"
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
        out = model(t["items"], t["events"], t["gaps"], t["values"], t["length"], t["feats"])
    user = out["user"].float()
    churn = torch.sigmoid(out["churn_logit"].float())
    value = model.predicted_value(out["value_logit"].float(), out["value_mu"].float()).clamp(min=0)
    # retention explanation: change in churn probability when a feature is set to the batch mean
    z_user = user.to(next(model.churn_head.parameters()).dtype)
    effects = []
    for j in range(t["feats"].shape[1]):
        f2 = t["feats"].clone()
        f2[:, j] = f2[:, j].mean()
        p2 = torch.sigmoid(model.churn_head(torch.cat([z_user, model.feat(f2)], -1)).squeeze(-1).float())
        effects.append(churn - p2)
    effects = torch.stack(effects, 1).cpu().numpy()
    items_np = enc["items"]
    stages = pdf["stage"].to_numpy() if "stage" in pdf else np.array(["active"] * B, dtype=object)
    n_events = pdf["n_events"].to_numpy() if "n_events" in pdf else enc["length"]

    # every item of the user's sequence counts as seen, not only the model's window
    n_all = np.fromiter((len(x) if x is not None else 0 for x in pdf["item_ids"]), dtype=np.int64, count=B)
    flat = np.concatenate([np.asarray(x, dtype=object) for x in pdf["item_ids"] if x is not None and len(x)]) \
        if n_all.sum() else np.zeros(0, dtype=object)
    got = pd.Index(sc.item_ids[2:]).get_indexer(pd.Series(flat, dtype=object).fillna("\u0000").to_numpy())
    seen_rows, seen_cols = np.repeat(np.arange(B), n_all)[got >= 0], got[got >= 0] + 2
    # recommendations, in chunks of users against all items on this worker
    n_items = sc.item_vecs.shape[0]
    k = int(conf.k)
    rec_items, rec_scores, strategies, cat_names, cat_weights = [], [], [], [], []
    # per-item terms are the same for every user: standardised once
    pop_z, ltv_z, cat_onehot = _item_terms(sc)
    cat_t = torch.as_tensor(sc.categories, device=dev)
    n_cat = max(1, len(sc.category_names))
    is_new_all = np.array([(st == new_stage) or (ne <= conf.new_user_max_events) for st, ne in zip(stages, n_events)])
    at_risk_all = np.array([st in ("at_risk", "churned") for st in stages]) & ~is_new_all
    for lo in range(0, B, conf.chunk_size):
        hi = min(B, lo + conf.chunk_size)
        s = user[lo:hi] @ sc.item_vecs.T                          # [b, n_items]
        s[:, :2] = -float("inf")                                  # padding / unknown never ranked
        body = s[:, 2:]
        # interests: softmax mass per category
        prob = torch.softmax(body, dim=1)
        tw, ti = (prob @ cat_onehot).topk(min(3, n_cat), dim=1)
        mean = body.mean(1, keepdim=True)
        final = (s - mean) / body.std(1, keepdim=True).clamp(min=1e-6)
        is_new = np.flatnonzero(is_new_all[lo:hi])
        at_risk = np.flatnonzero(at_risk_all[lo:hi])
        if len(is_new):
            rows = torch.as_tensor(is_new, device=dev)
            if sc.text_unit is not None:
                it = t["items"][lo:hi][rows]
                hist = (sc.text_unit[it] * (it > 1).unsqueeze(-1)).sum(1)
                content = torch.nn.functional.normalize(hist, dim=1) @ sc.text_unit.T
                cb = content[:, 2:]
                content = (content - cb.mean(1, keepdim=True)) / cb.std(1, keepdim=True).clamp(min=1e-6)
                final[rows] = 0.3 * final[rows] + 0.4 * content + 0.3 * pop_z
            else:
                final[rows] = 0.5 * final[rows] + 0.5 * pop_z
        if len(at_risk):
            rows = torch.as_tensor(at_risk, device=dev)
            final[rows] = final[rows] + conf.at_risk_value_weight * ltv_z
        final[:, :2] = -float("inf")
        if conf.filter_seen:
            m = (seen_rows >= lo) & (seen_rows < hi)
            final[torch.as_tensor(seen_rows[m] - lo, device=dev), torch.as_tensor(seen_cols[m], device=dev)] = \
                -float("inf")
        pool = min(n_items - 2, max(k * 4, k + 50))
        top_s, top_i = final.topk(pool, dim=1)
        chosen_i, chosen_s = _capped_topk(top_s, top_i, cat_t, k, conf.category_cap, n_cat)
        ids_np = sc.item_ids[chosen_i.cpu().numpy()]
        sc_np = chosen_s.cpu().numpy().astype(np.float64)
        ok = np.isfinite(sc_np)
        rec_items += [row[m].tolist() for row, m in zip(ids_np, ok)]
        rec_scores += [row[m].tolist() for row, m in zip(sc_np, ok)]
        strategies += ["new_user_content_popularity" if n else "at_risk_long_term_value" if a else "personalized"
                       for n, a in zip(is_new_all[lo:hi], at_risk_all[lo:hi])]
        cat_names += [[sc.category_names[c] for c in row] for row in ti.cpu().numpy()]
        cat_weights += tw.cpu().numpy().astype(np.float64).tolist()

    # "because": the 3 steps with the most attention weight (known items only)
    att_t = out["attention"].float().masked_fill(t["items"] <= UNK, -1.0)
    bw, bi = att_t.topk(min(3, att_t.shape[1]), dim=1)
    bw, bi = bw.cpu().numpy(), bi.cpu().numpy()
    b_items = np.take_along_axis(items_np, bi, axis=1)
    because_ids, because_w = [], []
    for ri, rw in zip(b_items, bw):
        ids, ws = [], []
        for i, w in zip(ri, rw):
            if w >= 0 and sc.item_ids[i] not in ids:  # an item seen twice is named once
                ids.append(sc.item_ids[i])
                ws.append(float(w))
        because_ids.append(ids)
        because_w.append(ws)
    order = np.argsort(-np.abs(effects), axis=1)[:, :3]
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
        "feature_names": [[FEATURE_NAMES[j] for j in row] for row in order],
        "feature_effects": [[float(effects[i, j]) for j in row] for i, row in enumerate(order)],
        "rec_items": rec_items,
        "rec_scores": rec_scores,
        "strategy": strategies,
    })


_WORKER: Dict[str, Scorer] = {}


def score_users(users, artifact_path: str, conf: RecommendConf, device: str = "auto"):
    """Spark: (user_sequences ⋈ stage) -> ``OUT_SCHEMA`` rows, via mapInPandas."""
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        sc = _WORKER.get(artifact_path)
        if sc is None:  # once per Python worker
            sc = _WORKER[artifact_path] = load_scorer(artifact_path, device)
        for b in batches:
            if len(b):
                yield score_batch(b, sc, conf)

    return users.mapInPandas(run, OUT_SCHEMA)


def compute_item_stats(spark, cfg, training_date: str, vocab) -> Dict[str, np.ndarray]:
    """Per item index: popularity (events in the training sequences) and long-term
    value association (smoothed share of its users still active H days later)."""
    from pyspark.sql import functions as F

    from . import tables

    seq = tables.read(spark, cfg, "user_sequences", training_date).select("user_id", "item_ids")
    lab = tables.read(spark, cfg, "user_lifecycle", training_date).select("user_id", "churned_within_horizon")
    per_item = (seq.select("user_id", F.explode("item_ids").alias("item_id")).where(F.col("item_id").isNotNull())
                .groupBy("item_id", "user_id").count()
                .join(lab, "user_id", "left")
                .groupBy("item_id").agg(F.sum("count").alias("n"), F.count("*").alias("users"),
                                        F.sum(F.when(F.col("churned_within_horizon") == False, 1)  # noqa: E712
                                              .otherwise(0)).alias("retained"),
                                        F.sum(F.when(F.col("churned_within_horizon").isNotNull(), 1)
                                              .otherwise(0)).alias("labelled")))
    rows = per_item.collect()  # one row per catalog item: small
    n = vocab.n_items
    pop, ltv = np.zeros(n), np.zeros(n)
    if rows:
        idx = vocab.item_index([r["item_id"] for r in rows])
        lab_n = np.array([r["labelled"] for r in rows], float)
        ret = np.array([r["retained"] for r in rows], float)
        prior = ret.sum() / max(1.0, lab_n.sum())
        pop[idx] = [r["n"] for r in rows]
        ltv[:] = prior  # items never seen get the mean
        ltv[idx] = (ret + 10 * prior) / (lab_n + 10)  # shrink rarely seen items to the mean
    pop[:2] = 0
    return {"popularity": pop, "ltv": ltv}


def run_stage(ctx) -> Dict[str, object]:
    """Nightly stage ``score``: score every user of D with the latest artifact and
    write user_interests, retention_scores and recommendations for D."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from . import tables

    spark, cfg, d = ctx.spark, ctx.cfg, ctx.snapshot_date
    art_root = cfg.artifacts
    art = load_artifact(art_root)
    art_dir = os.path.join(art_root, art.version)
    if not os.path.exists(item_stats_path(art_dir)):
        st = compute_item_stats(spark, cfg, art.config.get("training_date", ctx.training_date), art.vocab)
        np.savez(item_stats_path(art_dir), **st)
    users = tables.read(spark, cfg, "user_sequences", d).join(
        tables.read(spark, cfg, "user_lifecycle", d).select("user_id", "stage"), "user_id", "inner")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    scored = score_users(users, art_dir, cfg.recommend, cfg.train.device).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n = scored.count()
        base = [F.lit(d).cast("date").alias("snapshot_date"), "user_id"]
        meta = [F.lit(art.version).alias("model_version"), F.lit(now).cast("timestamp").alias("scored_at")]
        because = F.transform(F.arrays_zip("because_item_ids", "because_weights"),
                              lambda x: F.struct(x["because_item_ids"].alias("item_id"),
                                                 x["because_weights"].alias("weight")))
        interests = scored.select(*base, "interest_vector", F.transform(
            F.arrays_zip("top_category_names", "top_category_weights"),
            lambda x: F.struct(x["top_category_names"].alias("category"),
                               x["top_category_weights"].alias("weight"))).alias("top_categories"), *meta)
        retention = scored.select(
            *base, "stage", "churn_probability", (1 - F.col("churn_probability")).alias("retention_score"),
            "predicted_value", F.lit(cfg.lifecycle.horizon_days).alias("horizon_days"),
            because.alias("because_items"),
            F.transform(F.arrays_zip("feature_names", "feature_effects"),
                        lambda x: F.struct(x["feature_names"].alias("feature"),
                                           x["feature_effects"].alias("effect"))).alias("top_features"), *meta)
        recs = scored.select(*base, "strategy", because.alias("because_items"),
                             F.posexplode(F.arrays_zip("rec_items", "rec_scores")).alias("pos", "r"), *meta) \
            .select(*base[:1], "user_id", (F.col("pos") + 1).alias("rank"), F.col("r.rec_items").alias("item_id"),
                    F.col("r.rec_scores").alias("score"), "strategy", "because_items", "model_version", "scored_at")
        tables.write_snapshot(spark, cfg, "user_interests", interests, d)
        tables.write_snapshot(spark, cfg, "retention_scores", retention, d)
        m = tables.write_snapshot(spark, cfg, "recommendations", recs, d)
        strategies = {r["strategy"]: r["count"] for r in scored.groupBy("strategy").count().collect()}
    finally:
        scored.unpersist()
    return {"users": n, "recommendation_rows": m.get("numOutputRows", 0), "model_version": art.version,
            "strategies": strategies}
