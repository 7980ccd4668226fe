"""Both explanations of a score, batched on the scoring device (no per-user Python).

* ``top_features``: the change in churn probability when one user feature is set
  to its reference value (the training users' mean stored in the artifact, 0
  without one): one batched pass of the heads over every (user, feature) pair.
  A fixed reference, not the batch mean: a user's explanation must not depend on
  which users share its batch (partitioning, task retries, a lost executor).
* ``because_items``: the steps with the most attention (known items only), each
  item named once, highest attention first.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from . import lapsed, stacking
from .vocab import UNK


@torch.no_grad()
def feature_effects(model, user: torch.Tensor, feats: torch.Tensor, churn: torch.Tensor,
                    reference: Optional[torch.Tensor] = None, stack: Optional[Dict] = None,
                    lapsed_params: Optional[Dict] = None) -> torch.Tensor:
    """[B, n_features]: churn - churn with feature j set to ``reference[j]`` (through the
    heads and, with ``stack``, the second stage of ``stacking``, and with ``lapsed_params``
    the lapsed users' silence model of ``lapsed``, as churn was scored)."""
    B, F = feats.shape
    if reference is None:
        reference = torch.zeros(F, dtype=feats.dtype, device=feats.device)
    ref = reference[:F].to(feats.dtype)
    f2 = feats.unsqueeze(0).repeat(F, 1, 1)                              # [F, B, F]
    j = torch.arange(F, device=feats.device)
    f2[j, :, j] = ref[:, None].expand(F, B)
    f2 = f2.reshape(F * B, F)
    logit = lapsed.churn_logit(lapsed_params, stacking.churn_logit(
        stack, model.heads(user.repeat(F, 1), f2)["churn_logit"].float(), f2), f2)
    return churn[None, :] - torch.sigmoid(logit).reshape(F, B)         # [F, B]


def top_features(effects_fb: torch.Tensor, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(feature codes [B, n], effects [B, n]) by |effect|, largest first; ties keep
    feature order (a stable sort)."""
    eff = effects_fb.T.contiguous()
    order = torch.sort(-eff.abs(), dim=1, stable=True).indices[:, :min(n, eff.shape[1])]
    return order, eff.gather(1, order)


def because_items(attention: torch.Tensor, items: torch.Tensor, n: int):
    """(item indices [B, m], weights [B, m], keep [B, m]) with m = min(n, steps):
    the ``n`` steps with the most attention; ``keep`` drops unknown items / padding
    and a repeat of an item already named by a step with more attention."""
    att = attention.float().masked_fill(items <= UNK, -1.0)
    w, pos = att.topk(min(n, att.shape[1]), dim=1)
    idx = items.gather(1, pos)
    valid = w >= 0
    same = (idx[:, :, None] == idx[:, None, :]) & valid[:, None, :]     # [B, j, k]: k names j's item
    earlier = torch.ones(same.shape[1], same.shape[1], dtype=torch.bool, device=idx.device).tril(-1)
    repeat = (same & earlier[None]).any(2)
    return idx, w, valid & ~repeat
