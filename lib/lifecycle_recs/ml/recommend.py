"""The lifecycle-aware recommendation policy, on arrays and tensors (no Spark,
no scorer). Its weights live in :class:`~lifecycle_recs.config.RecommendConf`.

Strategies (``names.STRATEGIES``):

* ``new_user_content_popularity`` — stage ``new`` or at most
  ``new_user_max_events`` events: few steps make a weak sequence signal, so the
  score blends the model (``new_user_model_weight``), content similarity to the
  items the user touched (mean text vector, ``new_user_content_weight``) and
  popularity (``new_user_popularity_weight``), each standardised per user;
  without text vectors, model and popularity only (``new_user_no_text_model_weight``);
* ``at_risk_long_term_value`` — stages ``at_risk`` and ``churned``: the model
  score plus ``at_risk_value_weight`` x the item's long-term-value association
  (standardised): the smoothed share of users who touched the item in the
  training snapshot and were still active H days later;
* ``personalized`` — everyone else: the model score.

A strategy in ``strategies_off`` is not applied: its users get the ``personalized`` ranking.

Then seen items are removed where ``filter_seen`` (and re-consumption is not expected:
:func:`seen_policy`), and a category cap keeps at
most ``category_cap`` items of one category in a user's top-K (filled from the
rest when the catalog is short), from a candidate pool of
``max(k * candidate_pool_factor, k + candidate_pool_extra)``.

:func:`policy_scores`, :func:`recommend` and :func:`strategy_masks` state the policy
directly over a [users, items] matrix (the reference); the scorer runs the same
policy in the one-pass form of :mod:`.ranking`, tested equal to this one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from lifecycle_recs.config import RecommendConf
from lifecycle_recs.names import (
    AT_RISK_STAGES,
    NEW_STAGE,
    STRATEGY_AT_RISK,
    STRATEGY_NEW_USER,
    STRATEGY_PERSONALIZED,
)

NEG_INF = -float("inf")


def seen_policy(conf: RecommendConf, repeat_share: Optional[float]) -> RecommendConf:
    """``conf`` with seen items kept (``filter_seen`` off) where re-consumption is expected:
    ``filter_seen`` is on, ``keep_seen_repeat_share`` is set, and at least that share of the
    items the artifact's training users touched in the next H days were already in their
    sequences (``repeat_share``, measured at train time; None for an artifact from before
    it was measured, which keeps ``filter_seen``)."""
    if (
        conf.filter_seen
        and conf.keep_seen_repeat_share is not None
        and repeat_share is not None
        and repeat_share >= conf.keep_seen_repeat_share
    ):
        return dataclasses.replace(conf, filter_seen=False)
    return conf


@dataclass
class ItemSide:
    """Everything about the catalog the policy needs, on the scoring device.
    Index 0 is padding and 1 unknown: never ranked."""

    vectors: torch.Tensor  # [n_items, d] item vectors of the model
    text_unit: Optional[torch.Tensor]  # [n_items, t] unit text vectors, or None
    pop_z: torch.Tensor  # [n_items] standardised log popularity
    ltv_z: torch.Tensor  # [n_items] standardised long-term-value association
    categories: torch.Tensor  # [n_items] category code (-1 = none)
    category_onehot: torch.Tensor  # [n_items - 2, n_cat]
    n_categories: int
    log_share_in_category: Optional[torch.Tensor] = None  # [n_items] log(pop / pop of its category)
    category_mix: Optional[torch.Tensor] = None  # [n_cat] catalog-wide category share


def _z_body(x: torch.Tensor) -> torch.Tensor:
    """Standardised by the mean/std of the real items (index >= 2)."""
    body = x[2:]
    if body.numel() < 2:  # a catalog of one item (or none): nothing to standardise against
        return torch.zeros_like(x)
    return (x - body.mean()) / body.std().clamp(min=1e-6)


def item_side(
    vectors: torch.Tensor,
    text_vectors: Optional[torch.Tensor],
    popularity: np.ndarray,
    ltv: np.ndarray,
    categories: np.ndarray,
    n_categories: int,
    device,
) -> ItemSide:
    """Per-item terms, standardised once (they are the same for every user)."""
    text_unit = (
        torch.nn.functional.normalize(text_vectors.float(), dim=1).to(device)
        if text_vectors is not None and text_vectors.numel()
        else None
    )
    pop = torch.as_tensor(np.log1p(np.maximum(popularity, 0)), dtype=torch.float32, device=device)
    ltv_t = torch.as_tensor(ltv, dtype=torch.float32, device=device)
    n_cat = max(1, n_categories)
    onehot = torch.zeros(len(categories) - 2, n_cat, device=device)
    cats = torch.as_tensor(categories[2:], device=device)
    ok = cats >= 0
    onehot[torch.arange(len(cats), device=device)[ok], cats[ok]] = 1.0
    # long-term interests: an item's share of its category's popularity (smoothed by 1
    # event per item) and the catalog's category mix
    raw = torch.as_tensor(np.maximum(popularity, 0), dtype=torch.float32, device=device)[2:] + 1.0
    cat_pop = raw @ onehot  # [n_cat]
    own = (onehot * cat_pop[None, :]).sum(1)  # its category's total
    share = torch.where(ok, raw / own.clamp(min=1.0), raw / raw.sum().clamp(min=1.0))
    log_share = torch.cat([torch.zeros(2, device=device), torch.log(share)])
    mix = cat_pop / cat_pop.sum().clamp(min=1e-9)
    return ItemSide(
        vectors.float().to(device),
        text_unit,
        _z_body(pop),
        _z_body(ltv_t),
        torch.as_tensor(categories, device=device),
        onehot,
        n_cat,
        log_share,
        mix,
    )


def category_interests(
    history: torch.Tensor, items: ItemSide, decay: float, prior_steps: float
) -> torch.Tensor:
    """[b, n_cat]: each user's long-term category mix, from the categories of the items
    in ``history`` ([b, L] item indices, right-padded; the last real step is the most
    recent), weighted ``decay`` ** (steps back from the last), plus ``prior_steps``
    pseudo-steps of the catalog's category mix. Rows sum to 1."""
    b, L = history.shape
    real = history > 1
    n = real.sum(1, keepdim=True)
    pos = torch.arange(L, device=history.device)[None, :]
    w = torch.where(
        real,
        torch.pow(torch.tensor(decay, device=history.device), (n - 1 - pos).clamp(min=0).float()),
        torch.zeros((), device=history.device),
    )
    cats = items.categories[history].clamp(min=0)
    has_cat = real & (items.categories[history] >= 0)
    counts = torch.zeros(b, items.n_categories, device=history.device)
    counts.scatter_add_(1, cats, w * has_cat)
    mix = (
        items.category_mix
        if items.category_mix is not None
        else torch.full((items.n_categories,), 1.0 / items.n_categories, device=history.device)
    )
    counts = counts + prior_steps * mix[None, :]
    return counts / counts.sum(1, keepdim=True).clamp(min=1e-9)


def interest_scores(interests: torch.Tensor, items: ItemSide) -> torch.Tensor:
    """[b, n_items]: log P(category of the item | user) + log P(item | its category);
    items without a category get the log of their catalog-wide share (0 for index 0/1)."""
    per_item = torch.log(interests.clamp(min=1e-9)) @ items.category_onehot.T  # [b, n_items - 2]
    has = (items.category_onehot.sum(1) > 0)[None, :]
    per_item = torch.where(has, per_item, torch.zeros_like(per_item))
    out = torch.cat([torch.zeros(interests.shape[0], 2, device=interests.device), per_item], 1)
    return out + items.log_share_in_category[None, :]


def ltv_association(
    n_labelled: np.ndarray, n_retained: np.ndarray, prior_users: float
) -> Tuple[np.ndarray, float]:
    """Retained share per item shrunk towards the overall share ``prior`` as if
    ``prior_users`` more users had been seen at it; returns (per item, prior)."""
    prior = float(n_retained.sum() / max(1.0, n_labelled.sum()))
    return (n_retained + prior_users * prior) / (n_labelled + prior_users), prior


def strategy_masks(
    stages: Sequence, n_events: Sequence, conf: RecommendConf
) -> Tuple[np.ndarray, np.ndarray]:
    """(is_new, at_risk) per user; a new user is never also treated as at risk."""
    is_new = np.array(
        [(st == NEW_STAGE) or (ne <= conf.new_user_max_events) for st, ne in zip(stages, n_events)],
        dtype=bool,
    )
    at_risk = np.array([st in AT_RISK_STAGES for st in stages], dtype=bool) & ~is_new
    return strategies_applied(is_new, at_risk, conf)


def strategies_applied(
    is_new: np.ndarray, at_risk: np.ndarray, conf: RecommendConf
) -> Tuple[np.ndarray, np.ndarray]:
    """The masks with ``conf.strategies_off`` cleared: those users get the plain personalised
    ranking (a new user in an at-risk stage stays out of the at-risk strategy either way)."""
    off = set(conf.strategies_off)
    return (is_new & (STRATEGY_NEW_USER not in off)), (at_risk & (STRATEGY_AT_RISK not in off))


def strategy_names(is_new: np.ndarray, at_risk: np.ndarray) -> List[str]:
    return [
        STRATEGY_NEW_USER if n else STRATEGY_AT_RISK if a else STRATEGY_PERSONALIZED
        for n, a in zip(is_new, at_risk)
    ]


def _standardise_rows(s: torch.Tensor) -> torch.Tensor:
    body = s[:, 2:]
    if body.shape[1] < 2:  # one candidate (or none): nothing to standardise against
        return s - body.sum(1, keepdim=True)
    return (s - body.mean(1, keepdim=True)) / body.std(1, keepdim=True).clamp(min=1e-6)


def policy_scores(
    raw: torch.Tensor,
    history: torch.Tensor,
    is_new: np.ndarray,
    at_risk: np.ndarray,
    items: ItemSide,
    conf: RecommendConf,
) -> torch.Tensor:
    """Model scores [b, n_items] (padding/unknown already -inf) -> the ranking score of
    each user's strategy. ``history``: the users' item indices [b, L] (content similarity)."""
    final = _standardise_rows(raw)
    dev = raw.device
    if conf.interest_weight and items.log_share_in_category is not None and raw.shape[1] > 3:
        prior = interest_scores(
            category_interests(history, items, conf.interest_decay, conf.interest_prior_steps),
            items,
        )
        prior[:, :2] = NEG_INF
        final = final + conf.interest_weight * _standardise_rows(prior)
    new_rows = np.flatnonzero(is_new)
    if len(new_rows):
        rows = torch.as_tensor(new_rows, device=dev)
        if items.text_unit is not None:
            it = history[rows]
            hist = (items.text_unit[it] * (it > 1).unsqueeze(-1)).sum(1)
            content = _standardise_rows(
                torch.nn.functional.normalize(hist, dim=1) @ items.text_unit.T
            )
            final[rows] = (
                conf.new_user_model_weight * final[rows]
                + conf.new_user_content_weight * content
                + conf.new_user_popularity_weight * items.pop_z
            )
        else:
            w = conf.new_user_no_text_model_weight
            final[rows] = w * final[rows] + (1.0 - w) * items.pop_z
    risk_rows = np.flatnonzero(at_risk)
    if len(risk_rows):
        rows = torch.as_tensor(risk_rows, device=dev)
        final[rows] = final[rows] + conf.at_risk_value_weight * items.ltv_z
    final[:, :2] = NEG_INF
    return final


def candidate_pool(k: int, n_candidates: int, conf: RecommendConf) -> int:
    return min(n_candidates, max(k * conf.candidate_pool_factor, k + conf.candidate_pool_extra))


def capped_topk(
    top_s: torch.Tensor, top_i: torch.Tensor, cats: torch.Tensor, k: int, cap: int, n_cat: int
):
    """From candidates sorted by score, keep at most ``cap`` per category and take
    the first k; when too few remain (small catalog), fill with the best skipped ones.
    Vectorised over users (a running count per category along the sorted list)."""
    if cap <= 0:
        return top_i[:, :k], top_s[:, :k]
    c = cats[top_i].clamp(min=0)
    onehot = torch.nn.functional.one_hot(c, n_cat).to(torch.int32)
    seen_before = (torch.cumsum(onehot, dim=1) * onehot).sum(-1)  # 1-based count within category
    allowed = (seen_before <= cap) | (cats[top_i] < 0)
    allowed &= torch.isfinite(top_s)
    # allowed first (in score order), then the skipped ones
    pos = torch.arange(top_s.shape[1], device=top_s.device)[None, :]
    key = torch.where(allowed, pos, pos + top_s.shape[1])
    order = key.argsort(dim=1)[:, :k]
    return top_i.gather(1, order), top_s.gather(1, order)


def recommend(
    final: torch.Tensor,
    seen_rows: torch.Tensor,
    seen_cols: torch.Tensor,
    items: ItemSide,
    conf: RecommendConf,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Ranking scores -> (item indices, scores) [b, k]: seen items removed where
    ``filter_seen``, category-capped. Scores are -inf where the catalog ran out."""
    if conf.filter_seen and len(seen_rows):
        final[seen_rows, seen_cols] = NEG_INF
    pool = candidate_pool(int(conf.k), final.shape[1] - 2, conf)
    top_s, top_i = final.topk(pool, dim=1)
    return capped_topk(
        top_s, top_i, items.categories, int(conf.k), conf.category_cap, items.n_categories
    )
