"""Scoring without Spark: :func:`score_arrow` takes a batch of user rows as Arrow
(what ``mapInArrow`` hands over), encodes the users' last steps, runs the model
(bf16 on CUDA, fp32 on CPU) and returns, per user, as Arrow: interest vector and
top categories, churn probability and predicted value with explanations, and the
top-K recommendations of the policy in :mod:`.recommend` (computed in the
one-pass form of :mod:`.ranking`). The host side is vectorised end to end
(:mod:`.columns`): no Python object per user or per step. :func:`score_batch`
is the same over pandas (tests, notebooks, the MLflow model); the Spark UDF
(``udfs.score_users``) runs :func:`score_stream` in ``mapInArrow``, which on a GPU
prepares the next batch on the host while the current one runs."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lifecycle_recs.config import RecommendConf
from lifecycle_recs.ml import artifacts, columns, explain, lapsed, ranking, recommend, stacking
from lifecycle_recs.ml.artifacts import Artifact
from lifecycle_recs.ml.features import USER_FEATURES, Batch, encode_columns
from lifecycle_recs.ml.trainer import resolve_device
from lifecycle_recs.ml.vocab import UNK
from lifecycle_recs.names import (
    AT_RISK_STAGES,
    NEW_STAGE,
    STRATEGIES,
    STRATEGY_AT_RISK,
    STRATEGY_NEW_USER,
)

# Output columns of score_batch, in order (their Spark types: ``schemas.SCORED_SCHEMA``).
SCORED_ARROW = pa.schema(
    [
        ("user_id", pa.string()),
        ("stage", pa.string()),
        ("interest_vector", pa.list_(pa.float32())),
        ("top_category_names", pa.list_(pa.string())),
        ("top_category_weights", pa.list_(pa.float64())),
        ("churn_probability", pa.float64()),
        ("predicted_value", pa.float64()),
        ("because_item_ids", pa.list_(pa.string())),
        ("because_weights", pa.list_(pa.float64())),
        ("feature_names", pa.list_(pa.string())),
        ("feature_effects", pa.list_(pa.float64())),
        ("rec_items", pa.list_(pa.string())),
        ("rec_scores", pa.list_(pa.float64())),
        ("strategy", pa.string()),
    ]
)
SCORED_COLUMNS = tuple(SCORED_ARROW.names)


@dataclass
class Scorer:
    art: Artifact
    device: torch.device
    items: recommend.ItemSide
    category_names: List[str]
    item_ids: np.ndarray  # [n_items] item id per index ('' for 0/1)
    feature_reference: Optional[torch.Tensor] = None  # [n_features] training mean (explanations)
    ranking: Optional[ranking.RankingSide] = None
    item_vectors: Optional[torch.Tensor] = None  # the model's item vectors, computed once
    arrow_item_ids: Optional[pa.Array] = None
    arrow_categories: Optional[pa.Array] = None


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
        vectors = art.model.item_vectors().detach()
        side = recommend.item_side(
            vectors,
            art.model.text_vectors,
            art.item_stats.popularity,
            art.item_stats.ltv,
            cat_codes,
            len(names),
            dev,
        )
    ref = art.config.get("feature_reference")
    ref_t = torch.tensor(ref, dtype=torch.float32, device=dev) if ref else None
    ids = art.vocab.item_id_array()
    return Scorer(
        art,
        dev,
        side,
        names,
        ids,
        ref_t,
        ranking.ranking_side(side),
        vectors,
        pa.array(list(ids), pa.string()),
        pa.array(names, pa.string()),
    )


class Steps:
    """Wall time per scoring step (synchronising the device at each boundary, so a
    step's time is its own): ``timings`` name -> seconds, summed over calls."""

    def __init__(self, device: torch.device):
        self.device = device
        self.timings: Dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.timings[name] += time.perf_counter() - t


def _no_steps(name: str):
    return contextlib.nullcontext()


@dataclass
class Prepared:
    """A batch after the host side: decoded, encoded, on the device."""

    cols: columns.UserColumns
    batch: Batch
    n_events: np.ndarray
    seen_rows: np.ndarray  # (row, item index) of every known item of each user's whole sequence
    seen_cols: np.ndarray


def prepare(rb, sc: Scorer, steps=_no_steps) -> Prepared:
    """Host side of one batch (Arrow user rows): decode, encode, copy to the device."""
    with steps("decode"):
        cols = columns.from_record_batch(rb)
    with steps("encode"):
        enc, all_items = encode_columns(
            cols, sc.art.vocab, sc.art.max_len, sc.art.config.get("btyd")
        )
        ne = cols.numeric.get("n_events")
        n_events = ne if ne is not None else enc["length"].astype(np.float64)
        enc["length"] = np.maximum(enc["length"], 1)  # an empty sequence scores from padding alone
        known = all_items > UNK
        seen_rows = np.repeat(np.arange(cols.n), cols.lengths)[known]
        b = Batch.from_arrays(enc)
        if sc.device.type == "cuda":
            b = Batch(*[None if t is None else t.pin_memory() for t in b])
        b = b.to(sc.device)
    return Prepared(cols, b, n_events, seen_rows, all_items[known])


def _strategy_masks(cols: columns.UserColumns, n_events: np.ndarray, conf: RecommendConf):
    """(is_new, at_risk) per user, as ``recommend.strategy_masks`` (a null stage is neither)."""
    if cols.stage is None:
        is_new = n_events <= conf.new_user_max_events
        return recommend.strategies_applied(is_new, np.zeros(cols.n, bool), conf)
    stage = cols.stage.cast(pa.string())
    new_stage = pc.fill_null(pc.equal(stage, NEW_STAGE), False).to_numpy(zero_copy_only=False)
    risky = pc.fill_null(pc.is_in(stage, value_set=pa.array(list(AT_RISK_STAGES))), False).to_numpy(
        zero_copy_only=False
    )
    is_new = new_stage | (n_events <= conf.new_user_max_events)
    return recommend.strategies_applied(is_new, risky & ~is_new, conf)


@torch.no_grad()
def run_prepared(p: Prepared, sc: Scorer, conf: RecommendConf, steps=_no_steps) -> pa.RecordBatch:
    """Device side of one prepared batch, and the Arrow output."""
    model, dev, b, B = sc.art.model, sc.device, p.batch, p.cols.n
    with steps("model"):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out = model.infer(b, sc.item_vectors)
        user = out["user"].float()
        stack = sc.art.config.get("stack")
        lapsed_params = sc.art.config.get("lapsed")
        churn = torch.sigmoid(
            lapsed.churn_logit(
                lapsed_params, stacking.churn_logit(stack, out["churn_logit"], b.feats), b.feats
            )
        )
        value = stacking.value(
            stack,
            model.predicted_value(
                out["value_logit"].float(),
                out["value_mu"].float(),
                float(sc.art.metrics.get("value_log_residual_var", 0.0)),
            ).clamp(min=0),
            b.feats,
        )
    with steps("strategies"):
        is_new, at_risk = _strategy_masks(p.cols, p.n_events, conf)
        n_cat = min(conf.top_categories, len(sc.category_names))
    with steps("scores/top-K"):
        parts = []
        for lo in range(0, B, conf.chunk_size):
            hi = min(B, lo + conf.chunk_size)
            a, z = np.searchsorted(p.seen_rows, [lo, hi])
            parts.append(
                ranking.rank(
                    user[lo:hi],
                    b.items[lo:hi],
                    is_new[lo:hi],
                    at_risk[lo:hi],
                    torch.as_tensor(p.seen_rows[a:z] - lo, device=dev),
                    torch.as_tensor(p.seen_cols[a:z], device=dev),
                    sc.items,
                    sc.ranking,
                    conf,
                    n_cat,
                )
            )
        rec_i, rec_s, cat_w, cat_i = (torch.cat(x) for x in zip(*parts))
    with steps("explanations"):
        z_user = user.to(next(model.churn_head.parameters()).dtype)
        # the model's own features (an older artifact has fewer; the stack's value inputs follow
        # them)
        f_codes, f_eff = explain.top_features(
            explain.feature_effects(
                model,
                z_user,
                b.feats[:, : model.spec.n_user_features],
                churn,
                sc.feature_reference,
                stack,
                lapsed_params,
            ),
            conf.top_features,
        )
        relevance = explain.step_relevance(
            model,
            out["steps"],
            out["attention"],
            explain.recommended_direction(sc.item_vectors, rec_i, rec_s),
        )
        because_i, because_w, because_keep = explain.because_items(
            relevance, b.items, conf.because_items
        )
    with steps("output"):
        return _output(
            p.cols,
            sc,
            is_new,
            at_risk,
            user,
            churn,
            value,
            rec_i,
            rec_s,
            cat_w,
            cat_i,
            f_codes,
            f_eff,
            because_i,
            because_w,
            because_keep,
        )


def _np(t: torch.Tensor) -> np.ndarray:
    return t.cpu().numpy()


_STRATEGY_NAMES = pa.array(list(STRATEGIES), pa.string())
_FEATURE_NAMES = pa.array(list(USER_FEATURES), pa.string())


def _output(
    cols,
    sc,
    is_new,
    at_risk,
    user,
    churn,
    value,
    rec_i,
    rec_s,
    cat_w,
    cat_i,
    f_codes,
    f_eff,
    because_i,
    because_w,
    because_keep,
) -> pa.RecordBatch:
    B = cols.n
    f64 = pa.float64()
    rec_i, rec_s = _np(rec_i), _np(rec_s).astype(np.float64)
    ok = np.isfinite(rec_s)
    because_i, because_w, because_keep = (
        _np(because_i),
        _np(because_w).astype(np.float64),
        _np(because_keep),
    )
    strategy = np.where(
        is_new,
        STRATEGIES.index(STRATEGY_NEW_USER),
        np.where(at_risk, STRATEGIES.index(STRATEGY_AT_RISK), 0),
    )
    stage = (
        cols.stage.cast(pa.string())
        if cols.stage is not None
        else pa.array(["active"] * B, pa.string())
    )
    arrays = [
        cols.user_id.cast(pa.string()),
        stage,
        columns.fixed_lists(_np(user).astype(np.float32), pa.float32()),
        columns.list_array(
            columns.take_strings(sc.arrow_categories, _np(cat_i)), np.arange(B + 1) * cat_i.shape[1]
        ),
        columns.fixed_lists(_np(cat_w).astype(np.float64), f64),
        pa.array(_np(churn).astype(np.float64), f64),
        pa.array(_np(value).astype(np.float64), f64),
        columns.list_array(
            columns.take_strings(sc.arrow_item_ids, because_i[because_keep]),
            columns.offsets_of(because_keep.sum(1)),
        ),
        columns.list_array(
            pa.array(because_w[because_keep], f64), columns.offsets_of(because_keep.sum(1))
        ),
        columns.list_array(
            columns.take_strings(_FEATURE_NAMES, _np(f_codes)), np.arange(B + 1) * f_codes.shape[1]
        ),
        columns.fixed_lists(_np(f_eff).astype(np.float64), f64),
        columns.list_array(
            columns.take_strings(sc.arrow_item_ids, rec_i[ok]), columns.offsets_of(ok.sum(1))
        ),
        columns.list_array(pa.array(rec_s[ok], f64), columns.offsets_of(ok.sum(1))),
        _STRATEGY_NAMES.take(pa.array(strategy.astype(np.int64))),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=SCORED_ARROW)


def score_arrow(rb, sc: Scorer, conf: RecommendConf, steps=_no_steps) -> pa.RecordBatch:
    """User rows (``user_sequences`` ⋈ ``user_lifecycle.stage``, as Arrow) -> one
    scored row per user (``SCORED_ARROW``)."""
    if rb.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=SCORED_ARROW)
    return run_prepared(prepare(rb, sc, steps), sc, conf, steps)


def score_stream(
    batches: Iterator, sc: Scorer, conf: RecommendConf, prefetch: Optional[bool] = None
) -> Iterator[pa.RecordBatch]:
    """:func:`score_arrow` over a stream of record batches, in order. With
    ``prefetch`` (default: on a GPU) the host side of the next batch (decode,
    encode, pinned copy) runs in a thread while the device scores the current one;
    on the CPU one after the other (the host side would only take cores from the
    model)."""
    if not (sc.device.type == "cuda" if prefetch is None else prefetch):
        for rb in batches:
            if rb.num_rows:
                yield score_arrow(rb, sc, conf)
        return
    with ThreadPoolExecutor(1) as pool:
        pending = None
        for rb in batches:
            if not rb.num_rows:
                continue
            nxt = pool.submit(prepare, rb, sc)
            if pending is not None:
                yield run_prepared(pending.result(), sc, conf)
            pending = nxt
        if pending is not None:
            yield run_prepared(pending.result(), sc, conf)


def to_pandas(rb: pa.RecordBatch) -> pd.DataFrame:
    """Scored Arrow rows -> pandas with Python lists (the interest vector as float32 arrays)."""
    out = {}
    for name in SCORED_COLUMNS:
        col = rb.column(name)
        if name == "interest_vector":
            flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
            out[name] = list(flat.reshape(len(col), -1)) if len(col) else []
        elif pa.types.is_list(col.type):
            out[name] = col.to_pylist()
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return pd.DataFrame(out, columns=list(SCORED_COLUMNS))


def score_batch(pdf: pd.DataFrame, sc: Scorer, conf: RecommendConf) -> pd.DataFrame:
    """user rows (user_sequences ⋈ user_lifecycle.stage) as pandas -> one scored row per
    user (``SCORED_COLUMNS``), through :func:`score_arrow`."""
    if len(pdf) == 0:
        return pd.DataFrame({c: [] for c in SCORED_COLUMNS})
    return to_pandas(score_arrow(columns.record_batch(pdf), sc, conf))
