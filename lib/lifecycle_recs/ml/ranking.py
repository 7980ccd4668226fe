"""The policy of :mod:`.recommend` at scoring speed: one pass over the catalog.

:func:`recommend.policy_scores` spells the policy out over a [users, items] score
matrix: the model score standardised per user, plus the standardised long-term
interest prior, plus each strategy's terms (content similarity and popularity for
new users, long-term value for at-risk users). Every one of those terms is linear
in a small per-user vector against a fixed per-item matrix, so each user's mean
and standard deviation over the catalog follow from the item matrices' mean and
covariance (``mean = x . m``, ``var = x' C x``, computed once per catalog) instead
of from a pass over the matrix. Per user the final score is then an affine map

    final = r * (raw + Q @ G') + c,      raw = user @ item_vectors'

with ``G`` = [category one-hot, log share in category, pop_z, ltv_z] (a few
columns) and per-user ``r`` > 0, ``Q``, ``c``: one matmul for ``raw``, one
``addmm_`` in place, a top-K, and the affine map applied to the K chosen scores
only (ranking by ``raw + Q @ G'`` is ranking by ``final``). New users with text
vectors add ``H @ text'`` in place on their rows (a chunk's users are reordered
so that they are contiguous). The catalog is held sorted by category, so the
model's softmax mass per category (the interests) is a ``logsumexp`` over each
category's column range instead of a softmax and a one-hot matmul. Equal to the
direct form within float32 rounding, up to the order of tied scores
(``tests/ml/test_scorer.py::test_fast_path_equals_the_reference_implementation``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from lifecycle_recs.config import RecommendConf
from lifecycle_recs.ml.recommend import (
    NEG_INF,
    ItemSide,
    candidate_pool,
    capped_topk,
    category_interests,
)


@dataclass
class Moments:
    """Mean [k] and covariance [k, k] (float64) of a matrix's rows; ``cov`` None when
    fewer than two rows (then the 'standard deviation' is 1 and the 'mean' the sum:
    ``recommend._standardise_rows`` on a catalog of one item or none)."""

    mean: torch.Tensor
    cov: Optional[torch.Tensor]

    @classmethod
    def of(cls, m: torch.Tensor) -> Moments:
        m = m.double()
        if m.shape[0] < 2:
            return cls(m.sum(0), None)
        return cls(m.mean(0), torch.cov(m.T).reshape(m.shape[1], m.shape[1]))

    def rows(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) over the catalog of ``x @ m'`` for each row of ``x`` (float64)."""
        x = x.double()
        mu = x @ self.mean
        if self.cov is None:
            return mu, torch.ones_like(mu)
        var = ((x @ self.cov) * x).sum(1).clamp(min=0)
        return mu, var.sqrt().clamp(min=1e-6)


# up to this many categories the interests use a logsumexp per category range
MAX_RANGE_CATEGORIES = 256


@dataclass
class RankingSide:
    """The real items (index >= 2), reordered by category (uncategorised last)."""

    order: torch.Tensor  # [n] item index - 2 at each position
    position: torch.Tensor  # [n] position of item index - 2 (the inverse of order)
    bounds: Optional[list]  # [n_cat + 1] column range of each category, or None (many categories)
    vectors: torch.Tensor  # [n, d] item vectors
    extra: torch.Tensor  # [n, n_cat + 3]: one-hot, log share, pop_z, ltv_z
    categories: torch.Tensor  # [n] category code (-1 = none)
    text: Optional[torch.Tensor]  # [n, t] unit text vectors
    m_vectors: Moments
    m_prior: Moments  # of extra[:, :n_cat + 1]
    m_text: Optional[Moments]

    @property
    def n_prior(self) -> int:
        return self.m_prior.mean.shape[0]


def ranking_side(items: ItemSide) -> RankingSide:
    """The item-side matrices and their moments, once per catalog."""
    n = items.vectors.shape[0] - 2
    dev = items.vectors.device
    cats = items.categories[2:]
    key = torch.where(cats < 0, torch.full_like(cats, items.n_categories), cats)
    order = torch.sort(key, stable=True).indices
    position = torch.empty_like(order)
    position[order] = torch.arange(n, device=dev)
    bounds = (
        torch.searchsorted(
            key[order].contiguous(), torch.arange(items.n_categories + 1, device=dev)
        ).tolist()
        if items.n_categories <= MAX_RANGE_CATEGORIES
        else None
    )
    share = (
        items.log_share_in_category[2:]
        if items.log_share_in_category is not None
        else torch.zeros(n, device=dev)
    )
    extra = torch.cat(
        [items.category_onehot, share[:, None], items.pop_z[2:, None], items.ltv_z[2:, None]], 1
    )[order]
    text = items.text_unit[2:][order].contiguous() if items.text_unit is not None else None
    vectors = items.vectors[2:][order].contiguous()
    return RankingSide(
        order,
        position,
        bounds,
        vectors,
        extra.contiguous(),
        cats[order].contiguous(),
        text,
        Moments.of(vectors),
        Moments.of(extra[:, : items.n_categories + 1]),
        Moments.of(text) if text is not None else None,
    )


def _category_mass(raw: torch.Tensor, side: RankingSide, n_cat: int) -> torch.Tensor:
    """[b, n_cat], proportional per row to the softmax mass of each category."""
    if side.bounds is None:
        return torch.softmax(raw, dim=1) @ side.extra[:, :n_cat]
    lse = torch.full((raw.shape[0], n_cat), NEG_INF, device=raw.device)
    for c in range(n_cat):
        lo, hi = side.bounds[c], side.bounds[c + 1]
        if hi > lo:
            lse[:, c] = torch.logsumexp(raw[:, lo:hi], dim=1)
    top = lse.amax(1, keepdim=True)
    return torch.exp(lse - torch.where(torch.isfinite(top), top, torch.zeros_like(top)))


def _over_cap(
    top_i: torch.Tensor, top_s: torch.Tensor, cats: torch.Tensor, cap: int, n_cat: int
) -> torch.Tensor:
    """[b] bool: a finite item of the list is beyond ``cap`` in its category."""
    c = cats[top_i]
    onehot = torch.nn.functional.one_hot(c.clamp(min=0), n_cat).to(torch.int32)
    count = (torch.cumsum(onehot, dim=1) * onehot).sum(-1)
    return ((count > cap) & (c >= 0) & torch.isfinite(top_s)).any(1)


def _capped_top(raw: torch.Tensor, cats: torch.Tensor, conf: RecommendConf, n_cat: int):
    """``recommend.capped_topk`` over the candidate pool, computed from the plain top-K
    where that already respects the cap (then the pool changes nothing) and from
    the pool only for the rows where it does not."""
    k, n = int(conf.k), raw.shape[1]
    top_s, top_i = raw.topk(min(k, n), dim=1)
    if conf.category_cap <= 0:
        return top_i, top_s
    over = _over_cap(top_i, top_s, cats, conf.category_cap, n_cat)
    if bool(over.any()):
        rows = torch.nonzero(over).squeeze(1)
        pool_s, pool_i = raw[rows].topk(candidate_pool(k, n, conf), dim=1)
        i2, s2 = capped_topk(pool_s, pool_i, cats, k, conf.category_cap, n_cat)
        top_i[rows], top_s[rows] = i2, s2
    return top_i, top_s


def rank(
    user: torch.Tensor,
    history: torch.Tensor,
    is_new: np.ndarray,
    at_risk: np.ndarray,
    seen_rows: torch.Tensor,
    seen_cols: torch.Tensor,
    items: ItemSide,
    side: RankingSide,
    conf: RecommendConf,
    n_top_categories: int,
):
    """One chunk of users -> (item indices [b, k], final scores [b, k] (-inf where the
    catalog ran out), top category weights and codes [b, n_top_categories]).

    ``user`` [b, d] float32; ``history`` [b, L] item indices; ``seen_rows`` /
    ``seen_cols`` the (row, item index) pairs to filter where ``conf.filter_seen``."""
    b, dev = user.shape[0], user.device
    rows = np.argsort(is_new, kind="stable")  # new users last: one contiguous block
    n_old = int((~is_new).sum())
    if n_old < b and not np.array_equal(rows, np.arange(b)):
        perm = torch.as_tensor(rows, device=dev)
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(b, device=dev)
        out = _rank(
            user[perm],
            history[perm],
            is_new[rows],
            at_risk[rows],
            inverse[seen_rows],
            seen_cols,
            items,
            side,
            conf,
            n_top_categories,
            n_old,
        )
        return tuple(t[inverse] for t in out)
    return _rank(
        user,
        history,
        is_new,
        at_risk,
        seen_rows,
        seen_cols,
        items,
        side,
        conf,
        n_top_categories,
        n_old,
    )


def _rank(
    user, history, is_new, at_risk, seen_rows, seen_cols, items, side, conf, n_top_categories, n_old
):
    b, dev = user.shape[0], user.device
    n = side.vectors.shape[0]
    raw = user @ side.vectors.T  # [b, n]
    # interests: the model's softmax mass per category x the long-term category mix
    mix = category_interests(history, items, conf.interest_decay, conf.interest_prior_steps)
    prob = _category_mass(raw, side, items.n_categories) * mix
    prob = prob / prob.sum(1, keepdim=True).clamp(min=1e-12)
    cat_w, cat_i = prob.topk(n_top_categories, dim=1)

    # the policy as final = r * (raw + Q @ G') + c, built up in "final" units first
    mu_r, sd_r = side.m_vectors.rows(user)
    model_w = torch.ones(
        b, dtype=torch.float64, device=dev
    )  # weight of the standardised model score
    coef = torch.zeros(b, side.extra.shape[1], dtype=torch.float64, device=dev)
    const = torch.zeros(b, dtype=torch.float64, device=dev)
    if conf.interest_weight and items.log_share_in_category is not None and n > 1:
        x = torch.cat([torch.log(mix.clamp(min=1e-9)), torch.ones(b, 1, device=dev)], 1)
        mu_p, sd_p = side.m_prior.rows(x)
        coef[:, : side.n_prior] = conf.interest_weight * x.double() / sd_p[:, None]
        const -= conf.interest_weight * mu_p / sd_p
    pop_col, ltv_col = side.n_prior, side.n_prior + 1
    risk = torch.as_tensor(np.flatnonzero(at_risk), device=dev, dtype=torch.long)
    coef[risk, ltv_col] += conf.at_risk_value_weight
    new = slice(n_old, b)  # is_new rows are last
    text_coef = None
    if n_old < b:
        with_text = side.text is not None
        m = conf.new_user_model_weight if with_text else conf.new_user_no_text_model_weight
        w_pop = conf.new_user_popularity_weight if with_text else 1.0 - m
        model_w[new] = m
        coef[new] *= m
        const[new] *= m
        coef[new, pop_col] += w_pop
        if with_text and conf.new_user_content_weight:
            it = history[new]
            h = torch.nn.functional.normalize(
                (items.text_unit[it] * (it > 1).unsqueeze(-1)).sum(1), dim=1
            )
            mu_c, sd_c = side.m_text.rows(h)
            text_coef = conf.new_user_content_weight * h.double() / sd_c[:, None]
            const[new] -= conf.new_user_content_weight * mu_c / sd_c
    # final = model_w * (raw - mu_r) / sd_r + coef @ G' + const; divide through by the
    # raw coefficient r = model_w / sd_r (rows with model weight 0 keep r = 1, raw = 0)
    r = model_w / sd_r
    const -= model_w * mu_r / sd_r
    zero = r == 0
    if bool(zero.any()):
        raw[zero] = 0.0
        r = torch.where(zero, torch.ones_like(r), r)
    raw.addmm_((coef / r[:, None]).float(), side.extra.T)
    if text_coef is not None:
        raw[new].addmm_((text_coef / r[new][:, None]).float(), side.text.T)
    if conf.filter_seen and len(seen_rows):
        raw[seen_rows, side.position[seen_cols - 2]] = NEG_INF
    idx, s = _capped_top(raw, side.categories, conf, items.n_categories)
    final = (r[:, None] * s.double() + const[:, None]).float()
    return side.order[idx] + 2, final, cat_w, cat_i
