"""A plain reference implementation of scoring, for the equivalence test of the fast
path (``lifecycle_recs.ml.scorer``): the algorithm the product ran before the
vectorised path, spelled out per user where that is simplest.

It shares only the model, the artifact and the item side with the product; the
encoding is the training encoder (``encode_users``, a per-user loop), the model
call is the full ``forward`` (all steps), the policy is the direct
``recommend.policy_scores`` over the whole [users, items] matrix, and both
explanations and the output are per-user Python.
"""

import numpy as np
import pandas as pd
import torch

from lifecycle_recs.ml import lapsed, recommend, stacking
from lifecycle_recs.ml.features import USER_FEATURES, Batch, encode_users
from lifecycle_recs.ml.scorer import SCORED_COLUMNS
from lifecycle_recs.ml.vocab import UNK


@torch.no_grad()
def reference_score(pdf: pd.DataFrame, sc, conf) -> pd.DataFrame:
    model, dev, items, vocab = sc.art.model, sc.device, sc.items, sc.art.vocab
    ex = encode_users(pdf, vocab, sc.art.max_len, "last", btyd_params=sc.art.config.get("btyd"))
    arrays = {k: np.stack(ex[k].to_numpy()) for k in ("items", "events", "gaps", "values", "feats")}
    arrays["length"] = np.maximum(ex["length"].to_numpy(), 1)
    b = Batch.from_arrays(arrays).to(dev)
    out = model(b)
    user = out["user"].float()
    stack = sc.art.config.get("stack")  # the second stage, as specified by ml.stacking
    lapsed_params = sc.art.config.get(
        "lapsed"
    )  # lapsed users' silence model, as specified by ml.lapsed

    def churn_logit(logit, feats):
        return lapsed.churn_logit(lapsed_params, stacking.churn_logit(stack, logit, feats), feats)

    churn = torch.sigmoid(churn_logit(out["churn_logit"], b.feats))
    value = stacking.value(
        stack,
        model.predicted_value(
            out["value_logit"].float(),
            out["value_mu"].float(),
            float(sc.art.metrics.get("value_log_residual_var", 0.0)),
        ).clamp(min=0),
        b.feats,
    )
    B = len(pdf)
    stages = pdf["stage"].to_numpy() if "stage" in pdf else np.array(["active"] * B, dtype=object)
    n_events = pdf["n_events"].to_numpy() if "n_events" in pdf else ex["length"].to_numpy()
    is_new, at_risk = recommend.strategy_masks(stages, n_events, conf)

    s = user @ items.vectors.T
    s[:, :2] = -float("inf")
    prob = torch.softmax(s[:, 2:], dim=1) @ items.category_onehot
    prob = prob * recommend.category_interests(
        b.items, items, conf.interest_decay, conf.interest_prior_steps
    )
    prob = prob / prob.sum(1, keepdim=True).clamp(min=1e-12)
    tw, ti = prob.topk(min(conf.top_categories, len(sc.category_names)), dim=1)
    final = recommend.policy_scores(s, b.items, is_new, at_risk, items, conf)
    seen_rows, seen_cols = [], []
    for r, ids in enumerate(pdf["item_ids"]):
        idx = vocab.item_index(list(ids if ids is not None else []))
        seen_cols += [int(i) for i in idx if i > UNK]
        seen_rows += [r] * int((idx > UNK).sum())
    chosen_i, chosen_s = recommend.recommend(
        final,
        torch.as_tensor(seen_rows, dtype=torch.long),
        torch.as_tensor(seen_cols, dtype=torch.long),
        items,
        conf,
    )

    own = b.feats[
        :, : model.spec.n_user_features
    ]  # explanations: the model's features, not the stack's inputs
    ref = sc.feature_reference if sc.feature_reference is not None else torch.zeros(own.shape[1])
    effects = []
    for j in range(own.shape[1]):
        f2 = own.clone()
        f2[:, j] = ref[j]
        effects.append(churn - torch.sigmoid(churn_logit(model.heads(user, f2)["churn_logit"], f2)))
    effects = torch.stack(effects, 1).numpy()

    # because items: per user, each step's term a_s (W_pool h_s) . v of the user vector's score for
    # v, the mean vector of the user's recommended items; weights are the shares of the positive
    # terms
    h, _, _ = model._steps(b.items, b.events, b.gaps, b.values, b.length)
    w_pool = model.out.weight[:, h.shape[-1] :].float()
    vectors = model.item_vectors().float()
    relevance = torch.zeros_like(out["attention"], dtype=torch.float32)
    for r in range(B):
        shown = [int(i) for i, v in zip(chosen_i[r], chosen_s[r]) if np.isfinite(float(v))]
        v = vectors[shown].mean(0) if shown else torch.zeros(vectors.shape[1])
        terms = torch.stack(
            [
                out["attention"][r, t].float() * torch.dot(w_pool @ h[r, t].float(), v)
                for t in range(h.shape[1])
            ]
        )
        pos = terms.clamp(min=0)
        relevance[r] = pos / pos.sum() if pos.sum() > 0 else out["attention"][r].float()
    att = relevance.masked_fill(b.items <= UNK, -1.0)
    bw, bi = att.topk(min(conf.because_items, att.shape[1]), dim=1)
    rows = []
    for r in range(B):
        because, weights = [], []
        for pos, w in zip(bi[r].tolist(), bw[r].tolist()):
            item = sc.item_ids[int(b.items[r, pos])]
            if w >= 0 and item not in because:
                because.append(item)
                weights.append(w)
        order = sorted(range(effects.shape[1]), key=lambda j: -abs(effects[r, j]))[
            : conf.top_features
        ]
        recs = [
            (sc.item_ids[int(i)], float(v))
            for i, v in zip(chosen_i[r], chosen_s[r])
            if np.isfinite(float(v))
        ]
        rows.append(
            {
                "user_id": pdf["user_id"].iloc[r],
                "stage": stages[r],
                "interest_vector": user[r].numpy(),
                "top_category_names": [sc.category_names[int(c)] for c in ti[r]],
                "top_category_weights": [float(w) for w in tw[r]],
                "churn_probability": float(churn[r]),
                "predicted_value": float(value[r]),
                "because_item_ids": because,
                "because_weights": weights,
                "feature_names": [USER_FEATURES[j] for j in order],
                "feature_effects": [float(effects[r, j]) for j in order],
                "rec_items": [i for i, _ in recs],
                "rec_scores": [v for _, v in recs],
                "strategy": recommend.strategy_names(is_new[r : r + 1], at_risk[r : r + 1])[0],
            }
        )
    return pd.DataFrame(rows, columns=list(SCORED_COLUMNS))
