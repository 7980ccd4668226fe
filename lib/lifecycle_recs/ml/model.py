"""The sequence model: a plain ``torch.nn.Module`` that knows nothing of Spark.

Per step: item-ID embedding (index 0 = padding, 1 = unknown item) plus the
item's frozen Transformer text vector (projected), an event-type embedding and
time-gap / value features. An LSTM (or GRU, or a small causal Transformer)
encodes the steps; causal attention pooling over the steps so far, joined with
the current hidden state, gives the user vector at every step.

Heads:
* next item — user vector · item vector over the catalog (item vectors share the
  input item embeddings + projected text), full softmax or sampled softmax;
* churn — probability of no activity in the next H days;
* value — a hurdle model for skewed, zero-heavy values: P(value > 0) and the
  mean of log1p(value) when positive; prediction = p * expm1(mu).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as nnf

from lifecycle_recs.ml.features import USER_FEATURES, Batch


@dataclass
class ModelSpec:
    n_items: int  # vocabulary size including padding (0) and unknown (1)
    n_event_types: int  # including padding (0) and unknown (1)
    text_dim: int = 0  # 0 = no text vectors
    encoder: str = "lstm"
    hidden_dim: int = 64
    item_dim: int = 64
    event_dim: int = 8
    layers: int = 1
    dropout: float = 0.2
    n_user_features: int = len(USER_FEATURES)

    def to_dict(self) -> Dict:
        return asdict(self)


class SequenceModel(nn.Module):
    def __init__(self, spec: ModelSpec, text_vectors: Optional[np.ndarray] = None):
        super().__init__()
        self.spec = spec
        s = spec
        self.item_emb = nn.Embedding(s.n_items, s.item_dim, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=0.05)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        if s.text_dim:
            tv = (
                torch.zeros(s.n_items, s.text_dim)
                if text_vectors is None
                else torch.as_tensor(np.asarray(text_vectors, dtype=np.float32))
            )
            self.register_buffer("text_vectors", tv)  # frozen
            self.text_proj = nn.Linear(s.text_dim, s.item_dim)
        else:
            self.register_buffer("text_vectors", torch.zeros(0))
            self.text_proj = None
        self.event_emb = nn.Embedding(s.n_event_types, s.event_dim, padding_idx=0)
        self.in_proj = nn.Linear(s.item_dim + s.event_dim + 2, s.hidden_dim)
        self.drop = nn.Dropout(s.dropout)
        if s.encoder == "lstm":
            self.rnn = nn.LSTM(
                s.hidden_dim,
                s.hidden_dim,
                num_layers=s.layers,
                batch_first=True,
                dropout=s.dropout if s.layers > 1 else 0.0,
            )
        elif s.encoder == "gru":
            self.rnn = nn.GRU(
                s.hidden_dim,
                s.hidden_dim,
                num_layers=s.layers,
                batch_first=True,
                dropout=s.dropout if s.layers > 1 else 0.0,
            )
        elif s.encoder == "transformer":
            layer = nn.TransformerEncoderLayer(
                s.hidden_dim,
                nhead=2,
                dim_feedforward=2 * s.hidden_dim,
                dropout=s.dropout,
                batch_first=True,
            )
            self.rnn = nn.TransformerEncoder(layer, num_layers=max(1, s.layers))
            self.pos = nn.Embedding(512, s.hidden_dim)
        else:
            raise ValueError(f"model.encoder must be lstm, gru or transformer; got '{s.encoder}'")
        self.att = nn.Sequential(
            nn.Linear(s.hidden_dim, s.hidden_dim), nn.Tanh(), nn.Linear(s.hidden_dim, 1)
        )
        self.out = nn.Linear(2 * s.hidden_dim, s.item_dim)
        self.feat = nn.Sequential(nn.Linear(s.n_user_features, 32), nn.ReLU())
        head_in = s.item_dim + 32
        self.churn_head = nn.Sequential(nn.Linear(head_in, 32), nn.ReLU(), nn.Linear(32, 1))
        self.value_head = nn.Sequential(nn.Linear(head_in, 32), nn.ReLU(), nn.Linear(32, 2))

    # -- item side --------------------------------------------------------------
    def item_vectors(self) -> torch.Tensor:
        """[n_items, item_dim]: the vectors users are scored against."""
        v = self.item_emb.weight
        if self.text_proj is not None:
            v = v + self.text_proj(self.text_vectors)
        return v

    # -- user side --------------------------------------------------------------
    def _steps(self, items, events, gaps, values, lengths, item_vectors=None):
        """Per-step hidden states [B, L, H], the padding mask and attention logits [B, L]."""
        B, L = items.shape
        mask = torch.arange(L, device=items.device)[None, :] < lengths[:, None]
        iv = nnf.embedding(
            items, self.item_vectors() if item_vectors is None else item_vectors, padding_idx=0
        )
        x = torch.cat(
            [iv, self.event_emb(events), gaps.unsqueeze(-1), values.unsqueeze(-1)], dim=-1
        )
        x = self.drop(torch.relu(self.in_proj(x)))
        if self.spec.encoder == "transformer":
            pos = self.pos(torch.arange(L, device=items.device).clamp(max=511))[None]
            causal = torch.triu(torch.ones(L, L, dtype=torch.bool, device=items.device), 1)
            h = self.rnn(x + pos, mask=causal, src_key_padding_mask=~mask)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
            )
            h, _ = self.rnn(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=L)
        h = h * mask.unsqueeze(-1)
        e = self.att(h).squeeze(-1).float().masked_fill(~mask, -1e4)
        return h, mask, e

    def encode(self, items, events, gaps, values, lengths):
        """Per-step user vectors [B, L, item_dim] and attention logits [B, L].

        Padding steps (index >= length) never contribute: they are packed away
        from the RNN and masked out of the attention.
        """
        h, mask, e = self._steps(items, events, gaps, values, lengths)
        # causal attention pooling: pool_t = sum_{s<=t} a_s h_s / sum_{s<=t} a_s
        w = torch.exp(e - e.max(dim=1, keepdim=True).values) * mask
        num = torch.cumsum(w.unsqueeze(-1) * h.float(), dim=1)
        den = torch.cumsum(w, dim=1).clamp(min=1e-9).unsqueeze(-1)
        pooled = (num / den).to(h.dtype)
        user = self.out(self.drop(torch.cat([h, pooled], dim=-1)))
        return user, e

    def infer(
        self, batch: Batch, item_vectors: Optional[torch.Tensor] = None
    ) -> Dict[str, torch.Tensor]:
        """Scoring: what :meth:`forward` returns for the last step only (``user``,
        ``attention``, the heads; and ``steps``, the per-step hidden states the attention
        pools, for ``explain.step_relevance``), without the per-step user vectors every earlier
        step would need for training. ``item_vectors``: :meth:`item_vectors`
        computed once by the caller (it projects every item's text vector)."""
        lengths = batch.length
        h, mask, e = self._steps(
            batch.items, batch.events, batch.gaps, batch.values, lengths, item_vectors
        )
        last = lengths.clamp(min=1) - 1
        rows = torch.arange(len(last), device=last.device)
        w = torch.exp(e - e.max(dim=1, keepdim=True).values) * mask
        pooled = ((w.unsqueeze(-1) * h.float()).sum(1) / w.sum(1).clamp(min=1e-9).unsqueeze(-1)).to(
            h.dtype
        )
        user = self.out(torch.cat([h[rows, last], pooled], dim=-1))
        return {
            "user": user,
            "attention": torch.softmax(e, dim=1),
            "steps": h,
            **self.heads(user, batch.feats),
        }

    def heads(self, user: torch.Tensor, feats: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Churn logit and value (hurdle logit, mu) from user vectors and user features
        (the first ``spec.n_user_features`` columns: the second stage's inputs follow them)."""
        n = self.spec.n_user_features
        if feats.shape[-1] != n:
            feats = feats[..., :n].contiguous()
        z = torch.cat([user, self.feat(feats)], dim=-1)
        v = self.value_head(z)
        return {
            "churn_logit": self.churn_head(z).squeeze(-1),
            "value_logit": v[:, 0],
            "value_mu": v[:, 1],
        }

    def forward(self, batch: Batch) -> Dict[str, torch.Tensor]:
        """Returns per-step user vectors, the last-step user vector, attention
        weights over the steps (softmax, for explanations), churn logit, and
        value (hurdle logit, mu)."""
        lengths = batch.length
        user_steps, e = self.encode(batch.items, batch.events, batch.gaps, batch.values, lengths)
        last = lengths.clamp(min=1) - 1
        user = user_steps[torch.arange(len(last), device=last.device), last]
        attention = torch.softmax(e, dim=1)
        return {
            "user_steps": user_steps,
            "user": user,
            "attention": attention,
            **self.heads(user, batch.feats),
        }

    def loss(self, batch: Batch, weights: Dict[str, float], n_negatives: int = 0):
        """Weighted next-item + churn + value loss of a labelled batch, and its parts."""
        out = self(batch)
        l_next = next_item_loss(out["user_steps"], batch.targets, self.item_vectors(), n_negatives)
        l_churn = churn_loss(out["churn_logit"], batch.churn, batch.label_w)
        l_value = value_loss(out["value_logit"], out["value_mu"], batch.value, batch.label_w)
        total = (
            weights.get("next_item", 1.0) * l_next
            + weights.get("churn", 0.5) * l_churn
            + weights.get("value", 0.2) * l_value
        )
        return total, {
            "next_item": float(l_next.detach()),
            "churn": float(l_churn.detach()),
            "value": float(l_value.detach()),
        }

    def heads_loss(
        self, user: torch.Tensor, batch: Batch, weights: Dict[str, float]
    ) -> torch.Tensor:
        """Weighted churn + value loss from given (frozen) user vectors: the heads refit."""
        h = self.heads(user, batch.feats)
        return weights.get("churn", 0.5) * churn_loss(
            h["churn_logit"], batch.churn, batch.label_w
        ) + weights.get("value", 0.2) * value_loss(
            h["value_logit"], h["value_mu"], batch.value, batch.label_w
        )

    @staticmethod
    def predicted_value(value_logit, value_mu, log_residual_var: float = 0.0):
        """P(value > 0) x E[value | value > 0]. ``mu`` is the mean of log1p(value), so
        expm1(mu) is a median, not a mean: exp(mu + s / 2) - 1 is used, where train fits
        ``s`` (``trainer.retransformation``) so that the labelled training users'
        predicted total equals their actual one (before 2026-12-04 s was the residual
        variance of log1p(value), the log-normal mean, which left totals 2-7% high);
        without it, totals are underestimated."""
        return torch.sigmoid(value_logit) * torch.expm1(
            (value_mu + 0.5 * log_residual_var).clamp(max=20)
        )


def next_item_loss(user_steps, targets, item_vectors, n_negatives: int = 0, generator=None):
    """Cross-entropy of the next item at every step with a target (target 0 = none).

    ``n_negatives`` > 0 uses sampled softmax with shared uniform negatives
    (accidental hits masked) instead of the full catalog.
    """
    m = targets > 0
    if not m.any():
        return user_steps.sum() * 0.0
    u = user_steps[m]
    t = targets[m]
    if n_negatives <= 0 or n_negatives >= item_vectors.shape[0] - 2:
        logits = u @ item_vectors.T
        logits[:, 0] = -1e4  # padding is never a candidate
        return nnf.cross_entropy(logits.float(), t)
    neg = torch.randint(
        2, item_vectors.shape[0], (n_negatives,), device=u.device, generator=generator
    )
    pos_logit = (u * item_vectors[t]).sum(-1, keepdim=True)
    neg_logit = u @ item_vectors[neg].T
    neg_logit = neg_logit.masked_fill(neg[None, :] == t[:, None], -1e4)
    logits = torch.cat([pos_logit, neg_logit], dim=1)
    return nnf.cross_entropy(logits.float(), torch.zeros(len(t), dtype=torch.long, device=u.device))


def value_loss(value_logit, value_mu, target, weight):
    """Hurdle loss: BCE on value > 0, plus squared error of log1p(value) where positive."""
    pos = (target > 0).float()
    bce = nnf.binary_cross_entropy_with_logits(value_logit, pos, reduction="none")
    se = (value_mu - torch.log1p(target.clamp(min=0))) ** 2 * pos
    return ((bce + se) * weight).sum() / weight.sum().clamp(min=1.0)


def churn_loss(churn_logit, target, weight):
    bce = nnf.binary_cross_entropy_with_logits(churn_logit, target, reduction="none")
    return (bce * weight).sum() / weight.sum().clamp(min=1.0)
