"""Both explanations of a score, batched on the scoring device (no per-user Python).

* ``top_features``: the change in churn probability when one user feature is set
  to its reference value (the training users' mean stored in the artifact, 0
  without one): one batched pass of the heads over every (user, feature) pair.
  A fixed reference, not the batch mean: a user's explanation must not depend on
  which users share its batch (partitioning, task retries, a lost executor).
* ``because_items``: the history steps that raised the user's recommendations the
  most through the attention pooling (known items only), each item named once,
  highest first. The user vector is ``out([h_last, sum_s a_s h_s])``, a linear
  layer, so its score for the mean vector ``v`` of the user's recommended items
  holds the exact term ``sum_s a_s (W_pool h_s) . v``: step s's contribution is
  ``a_s (W_pool h_s) . v``, and its weight is its share of the positive
  contributions (:func:`step_relevance`). Raw attention alone spreads nearly
  evenly over a long window (the softmax of similar logits), which named no item;
  weighing it by what each pooled step does to the scores is the norm-based view
  of attention (Kobayashi et al., 2020) projected on the recommendations.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from lifecycle_recs.ml import lapsed, stacking
from lifecycle_recs.ml.vocab import UNK


@torch.no_grad()
def feature_effects(
    model,
    user: torch.Tensor,
    feats: torch.Tensor,
    churn: torch.Tensor,
    reference: Optional[torch.Tensor] = None,
    stack: Optional[Dict] = None,
    lapsed_params: Optional[Dict] = None,
) -> torch.Tensor:
    """[B, n_features]: churn - churn with feature j set to ``reference[j]`` (through the
    heads and, with ``stack``, the second stage of ``stacking``, and with ``lapsed_params``
    the lapsed users' silence model of ``lapsed``, as churn was scored)."""
    B, F = feats.shape
    if reference is None:
        reference = torch.zeros(F, dtype=feats.dtype, device=feats.device)
    ref = reference[:F].to(feats.dtype)
    f2 = feats.unsqueeze(0).repeat(F, 1, 1)  # [F, B, F]
    j = torch.arange(F, device=feats.device)
    f2[j, :, j] = ref[:, None].expand(F, B)
    f2 = f2.reshape(F * B, F)
    logit = lapsed.churn_logit(
        lapsed_params,
        stacking.churn_logit(stack, model.heads(user.repeat(F, 1), f2)["churn_logit"].float(), f2),
        f2,
    )
    return churn[None, :] - torch.sigmoid(logit).reshape(F, B)  # [F, B]


def top_features(effects_fb: torch.Tensor, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(feature codes [B, n], effects [B, n]) by |effect|, largest first; ties keep
    feature order (a stable sort)."""
    eff = effects_fb.T.contiguous()
    order = torch.sort(-eff.abs(), dim=1, stable=True).indices[:, : min(n, eff.shape[1])]
    return order, eff.gather(1, order)


def recommended_direction(
    item_vectors: torch.Tensor, rec_i: torch.Tensor, rec_s: torch.Tensor
) -> torch.Tensor:
    """[B, item_dim]: the mean model vector of each user's recommended items
    ``rec_i`` [B, K] (a slot whose score ``rec_s`` is not finite is empty); a
    user with no recommendation gets a zero direction."""
    shown = torch.isfinite(rec_s).float()
    return (item_vectors.float()[rec_i] * shown[..., None]).sum(1) / shown.sum(
        1, keepdim=True
    ).clamp(min=1)


@torch.no_grad()
def step_relevance(
    model, steps: torch.Tensor, attention: torch.Tensor, direction: torch.Tensor
) -> torch.Tensor:
    """[B, L] weights in [0, 1]: each step's share of the positive contributions
    ``a_s (W_pool h_s) . direction`` to the user vector's score for ``direction``
    [B, item_dim] (the mean vector of the recommended items). ``steps`` are the
    per-step hidden states [B, L, H] the attention ``attention`` [B, L] pools, and
    ``W_pool`` the pooled half of the model's output layer. A user whose steps
    contribute nothing positive (no recommendations, a zero direction) keeps the
    attention itself."""
    H = steps.shape[-1]
    towards = direction.float() @ model.out.weight[:, H:].float()  # [B, H]: W_pool^T direction
    c = attention.float() * torch.bmm(steps.float(), towards[:, :, None]).squeeze(
        -1
    )  # [B, L], no [B, L, H] temporary
    pos = c.clamp(min=0)
    total = pos.sum(1, keepdim=True)
    return torch.where(total > 0, pos / total.clamp(min=1e-30), attention.float())


def because_items(weights: torch.Tensor, items: torch.Tensor, n: int):
    """(item indices [B, m], weights [B, m], keep [B, m]) with m = min(n, steps):
    the ``n`` steps with the largest weight (``step_relevance``); ``keep`` drops
    unknown items / padding and a repeat of an item already named by a step with
    more weight."""
    att = weights.float().masked_fill(items <= UNK, -1.0)
    w, pos = att.topk(min(n, att.shape[1]), dim=1)
    idx = items.gather(1, pos)
    valid = w >= 0
    same = (idx[:, :, None] == idx[:, None, :]) & valid[:, None, :]  # [B, j, k]: k names j's item
    earlier = torch.ones(same.shape[1], same.shape[1], dtype=torch.bool, device=idx.device).tril(-1)
    repeat = (same & earlier[None]).any(2)
    return idx, w, valid & ~repeat
