"""One trainer: seeded joint training with early stopping, the refit of the
churn/value heads on frozen user vectors, and full-catalog ranking for
validation. Early stopping is :class:`EarlyStopping`, used by both loops."""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Dict, Optional, Tuple

import numpy as np
import torch

from lifecycle_recs.config import ModelConf, TrainConf
from lifecycle_recs.ml import stacking
from lifecycle_recs.ml.features import Batch
from lifecycle_recs.ml.feed import batches, collect
from lifecycle_recs.ml.metrics import binary_metrics, rank_metrics
from lifecycle_recs.ml.model import ModelSpec, SequenceModel
from lifecycle_recs.ml.vocab import Vocab

if TYPE_CHECKING:
    from lifecycle_recs.ml.lapsed import TailCounts

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when there is one, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class EarlyStopping:
    """Keeps the best state by a score (higher is better) and says when
    ``patience`` evaluations in a row have not improved on it."""

    def __init__(self, patience: Optional[int] = None):
        self.patience = patience
        self.best = -float("inf")
        self.best_state: Optional[Dict[str, torch.Tensor]] = None
        self.bad = 0

    def step(self, score: float, model: torch.nn.Module) -> bool:
        """Record ``score``; True when training should stop."""
        if score > self.best:
            self.best, self.bad = score, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        self.bad += 1
        return self.patience is not None and self.bad >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        model.eval()


def build_model(
    vocab: Vocab, text_vectors: Optional[np.ndarray], mconf: ModelConf
) -> SequenceModel:
    spec = ModelSpec(
        n_items=vocab.n_items,
        n_event_types=vocab.n_event_types,
        text_dim=int(text_vectors.shape[1]) if (mconf.use_text and text_vectors is not None) else 0,
        encoder=mconf.encoder,
        hidden_dim=mconf.hidden_dim,
        item_dim=mconf.item_dim,
        event_dim=mconf.event_dim,
        layers=mconf.layers,
        dropout=mconf.dropout,
    )
    return SequenceModel(spec, text_vectors if spec.text_dim else None)


@torch.no_grad()
def rank_targets(
    model: SequenceModel, data, device, batch_size: int = 2048, exclude_seen: bool = False
) -> np.ndarray:
    """1-based rank of ``eval_target`` among all catalog items (full ranking, ties
    counted against the target), from the last step's user vector. ``data``: a Batch
    or a stream of them."""
    model.eval()
    iv = model.item_vectors()
    ranks = []
    for b in batches(data, batch_size):
        b = b.to(device)
        s = model(b)["user"] @ iv.T
        s[:, :2] = -float("inf")  # padding and unknown are never candidates
        if exclude_seen:
            seen = torch.zeros_like(s, dtype=torch.bool).scatter_(1, b.items, True)
            seen[:, :2] = True
            seen[torch.arange(len(s)), b.eval_target] = False
            s = s.masked_fill(seen, -float("inf"))
        tgt = s.gather(1, b.eval_target[:, None])
        ranks.append(((s > tgt).sum(1) + 1).cpu())
    return torch.cat(ranks).numpy() if ranks else np.zeros(0, dtype=np.int64)


def _validate(
    model: SequenceModel, val, device, weights, n_neg: int, next_item: bool = True
) -> Tuple[float, Dict[str, float]]:
    """(score, record): validation NDCG@10 when the rows have next-item targets, else
    -loss (mean over the rows' batches: without a next-item head, the labels' loss)."""
    model.eval()
    # an in-memory batch without next-item targets is validated by its loss; the
    # validation streams of the train stage are leave-one-out rows (targets)
    has_targets = next_item and (
        bool((val.eval_target > 1).any()) if isinstance(val, Batch) else True
    )
    with torch.no_grad():
        if has_targets:
            m = rank_metrics(rank_targets(model, val, device), 10)
            rec = {"val_ndcg10": m["ndcg@10"], "val_hit10": m["hit@10"]}
            return rec["val_ndcg10"], rec
        total, n = 0.0, 0
        for b in batches(val):
            vl, _ = model.loss(b.to(device), weights, n_neg)
            total, n = total + float(vl) * b.size, n + b.size
        vl = total / max(n, 1)
        return -vl, {"val_loss": vl}


def _size(data) -> int:
    return data.size if isinstance(data, Batch) else data.rows


def train_batches(train, epoch: int, batch_size: int, gen: torch.Generator, workers: int = 0):
    """The batches of one epoch: a seeded permutation of an in-memory Batch, or the
    stream's own seeded order for ``epoch`` (through a DataLoader with ``workers``)."""
    if isinstance(train, Batch):
        perm = torch.randperm(train.size, generator=gen)
        for i in range(0, train.size, batch_size):
            yield train.rows(perm[i : i + batch_size])
        return
    train.set_epoch(epoch)
    if isinstance(train, torch.utils.data.IterableDataset):
        yield from torch.utils.data.DataLoader(train, batch_size=None, num_workers=workers)
    else:  # a source with its own reader (petastorm)
        yield from train


def fit(
    train, val, vocab: Vocab, text_vectors: Optional[np.ndarray], mconf: ModelConf, tconf: TrainConf
) -> Tuple[SequenceModel, Dict]:
    """Seeded training with early stopping on validation NDCG@10 (when the
    validation rows have next-item targets) or validation loss. ``train`` and
    ``val``: in-memory Batches or streams (``ml.feed.ParquetExampleStream``)."""
    seed_everything(tconf.seed)
    device = resolve_device(tconf.device)
    model = build_model(vocab, text_vectors, mconf).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=tconf.lr, weight_decay=tconf.weight_decay)
    n_neg = mconf.n_negatives if vocab.n_items > mconf.sampled_softmax_threshold else 0
    # no items (an order-level log): no next-item head to train; churn and value only
    next_item = vocab.n_items > 2
    weights = dict(mconf.loss_weights) if next_item else {**mconf.loss_weights, "next_item": 0.0}
    use_amp = device.type == "cuda"
    gen = torch.Generator().manual_seed(tconf.seed)
    stopper, history = EarlyStopping(tconf.patience), []
    for epoch in range(tconf.epochs):
        model.train()
        t0 = time.perf_counter()
        steps, tot = 0, 0.0
        for b in train_batches(train, epoch, tconf.batch_size, gen, tconf.loader_workers):
            b = b.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, _ = model.loss(b, weights, n_neg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            tot += float(loss.detach())
            steps += 1
            if tconf.max_steps_per_epoch and steps >= tconf.max_steps_per_epoch:
                break
        rec = {
            "epoch": epoch,
            "train_loss": tot / max(1, steps),
            "seconds": time.perf_counter() - t0,
        }
        if val is not None and _size(val):
            score, vrec = _validate(model, val, device, weights, n_neg, next_item)
            rec.update(vrec)
        else:
            score = -rec["train_loss"]
        history.append(rec)
        log.info("epoch %s", rec)
        if stopper.step(score, model):
            break
    stopper.restore(model)
    return model, {
        "history": history,
        "best_score": stopper.best,
        "epochs_run": len(history),
        "device": str(device),
        "next_item_head": next_item,
        # float reductions depend on it: the same seed and data give the same weights
        # for the same count (in metrics.json, to explain a differing version)
        "torch_threads": torch.get_num_threads(),
    }


@torch.no_grad()
def user_vectors(model: SequenceModel, data: Batch, batch_size: int = 4096) -> torch.Tensor:
    """Last-step user vectors [N, item_dim] (an empty sequence scores from padding alone)."""
    model.eval()
    dev = next(model.parameters()).device
    outs = []
    for i in range(0, data.size, batch_size):
        b = data.rows(slice(i, i + batch_size)).to(dev)
        outs.append(model(b._replace(length=b.length.clamp(min=1)))["user"])
    return torch.cat(outs) if outs else torch.zeros(0, model.spec.item_dim, device=dev)


def fit_heads(
    model: SequenceModel,
    train,
    val,
    weights: Dict[str, float],
    steps: int = 400,
    lr: float = 0.01,
    seed: int = 0,
    max_rows: Optional[int] = None,
    vectors: Optional[Dict[str, tuple]] = None,
) -> Dict[str, float]:
    """Refit the churn and value heads on frozen user vectors (full batch, cheap).

    Joint training spends most of its steps on the next-item objective; the
    heads see each labelled user only a few times. With the encoder frozen,
    the user vectors are computed once and the small heads converge in a few
    hundred full-batch steps; the best step on the validation users is kept.
    From a stream, the first ``max_rows`` rows are used (bounded memory).
    Returns ``{}`` (heads untouched) when the training rows carry no labels. With
    ``vectors`` (a dict), the rows and their user vectors are left there as
    ``{"train": (batch, u), "val": (batch, u)}`` for the second stage."""
    torch.manual_seed(seed)
    dev = next(model.parameters()).device
    train, val = collect(train, max_rows), (collect(val, max_rows) if val is not None else None)
    if train is None or float(train.label_w.sum()) == 0:
        return {}
    u_tr, tr = user_vectors(model, train), train.to(dev)
    has_val = val is not None and float(val.label_w.sum()) > 0
    u_va, va = (user_vectors(model, val), val.to(dev)) if has_val else (None, None)
    params = [
        *model.feat.parameters(),
        *model.churn_head.parameters(),
        *model.value_head.parameters(),
    ]
    opt = torch.optim.Adam(params, lr=lr)
    stopper = EarlyStopping(patience=None)  # keeps the best of all steps
    for step in range(steps):
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = model.heads_loss(u_tr, tr, weights)
        loss.backward()
        opt.step()
        if step % 10 == 9 or step == steps - 1:
            model.eval()
            with torch.no_grad():
                score = float(model.heads_loss(u_va, va, weights)) if has_val else float(loss)
            stopper.step(-score, model)
    stopper.restore(model)
    with torch.no_grad():
        var = retransformation(model.heads(u_tr, tr.feats), tr)
    if vectors is not None:
        vectors["train"] = (tr, u_tr)
        if has_val:
            vectors["val"] = (va, u_va)
    # the key keeps its old name: artifacts saved before 2026-12-04 hold the residual variance
    # there, and scoring reads either as the same term s
    return {"heads_best_loss": -stopper.best, "value_log_residual_var": var}


def retransformation(heads: Dict[str, torch.Tensor], data: Batch) -> float:
    """The term ``s`` of ``SequenceModel.predicted_value`` (p x (exp(mu + s / 2) - 1))
    that makes the labelled users' predicted total equal their actual total (label
    weights applied): closed form, as exp(s / 2) multiplies every exp(mu).

    The value head fits the mean of log1p(value); exp(mu) is a median, and the
    normal-form correction s = residual variance of log1p(value) assumes normal,
    equal residuals. On the quality runs' training snapshots that left the totals
    2-7% above the actual (measured 2026-12-04); this is Duan's smearing idea (estimate the
    retransformation from the data, not from a normal law), fitted to the hurdle's
    product as scored. Falls back to the residual variance where the labelled users
    spent nothing."""
    from scipy.optimize import brentq

    w = data.label_w.double().cpu().numpy()
    p = torch.sigmoid(heads["value_logit"].double()).cpu().numpy()
    mu = heads["value_mu"].double().cpu().numpy()
    y = data.value.double().nan_to_num().cpu().numpy()
    pos = (y > 0) & (w > 0)
    normal = float(np.mean((mu[pos] - np.log1p(y[pos])) ** 2)) if int(pos.sum()) > 1 else 0.0
    actual, a = (
        float((w * np.maximum(y, 0)).sum()),
        float((w * p * np.exp(np.minimum(mu, 20))).sum()),
    )
    if actual <= 0 or a <= 0:
        return normal
    s0 = 2.0 * float(
        np.log((actual + float((w * p).sum())) / a)
    )  # without the clip at 0 of each prediction

    def excess(s):  # as scored: each prediction clipped at 0 (some are below where s < -2 mu)
        return float((w * np.maximum(p * np.expm1(np.minimum(mu + 0.5 * s, 20)), 0)).sum()) - actual

    s = s0 if excess(s0) <= 1e-9 * actual else float(brentq(excess, s0 - 80.0, s0, xtol=1e-12))
    log.info(
        "value retransformation: s = %.4f makes the %d labelled training users' predicted total "
        "their actual %.2f (the log-normal residual variance, used before 2026-12-04: %.4f)",
        s,
        int((w > 0).sum()),
        actual,
        normal,
    )
    return s


@torch.no_grad()
def stack_inputs(
    model: SequenceModel, data: Batch, u: torch.Tensor, log_residual_var: float = 0.0
) -> Dict[str, np.ndarray]:
    """Per labelled user of ``data`` (with its frozen user vectors ``u``, as
    :func:`fit_heads` hands them out): the model's churn logit and predicted value,
    the user features and the labels (the inputs of ``stacking.fit``)."""
    model.eval()
    keep = data.label_w > 0
    b = data.rows(keep)
    out = model.heads(u[keep.to(u.device)], b.feats.to(u.device))
    value = model.predicted_value(
        out["value_logit"].float(), out["value_mu"].float(), log_residual_var
    )
    return {
        "churn_logit": out["churn_logit"].float().cpu().numpy(),
        "value": value.clamp(min=0).cpu().numpy(),
        "feats": b.feats.cpu().numpy(),
        "y_churn": b.churn.cpu().numpy(),
        "y_value": b.value.cpu().numpy(),
    }


# -- after training: what the artifact keeps besides the weights ---------------------
def held_out_churn(model, val_labels) -> Tuple[Dict[str, object], list]:
    """Churn ROC AUC of the held-out users (for the log and the artifact), and their
    (churn logit, feats, churn, weight) batches for the lapsed users' check."""
    dev = next(model.parameters()).device
    ys, ps, ws, pairs = [], [], [], []
    with torch.no_grad():
        for b in batches(val_labels):
            logit = model(b.to(dev))["churn_logit"].float().cpu()
            ps.append(torch.sigmoid(logit).numpy())
            ys.append(b.churn.numpy())
            ws.append(b.label_w.numpy())
            pairs.append((logit, b.feats, b.churn, b.label_w))
    if not ys:
        return {}, pairs
    y, p, m = np.concatenate(ys), np.concatenate(ps), np.concatenate(ws) > 0
    if m.sum() and 0 < y[m].mean() < 1:
        return {"val_churn_auc": binary_metrics(y[m], p[m])["roc_auc"]}, pairs
    return {}, pairs


def feature_reference(feed, tail: Optional[TailCounts] = None) -> list:
    """Mean user features of the training examples (one pass over the feed): the fixed
    reference that ``top_features`` explanations perturb towards. With ``tail``, the
    same pass counts the lapsed labelled users for ``ml.lapsed``."""
    total, n = None, 0
    for b in batches(feed):
        s = b.feats.double().sum(0)
        total = s if total is None else total + s
        n += b.feats.shape[0]
        if tail is not None and b.churn is not None:
            tail.add(b.feats.numpy(), b.churn.numpy(), b.label_w.numpy())
    return [] if total is None else [float(x) for x in (total / max(n, 1)).tolist()]


def fit_stack(model, vectors: Dict[str, tuple], info: Dict, horizon_days: int) -> Dict:
    """The second stage (``ml.stacking``) on the labelled training users, from the
    rows and user vectors the heads refit used: feature models on all of them,
    blends on the held-out ones."""
    if "train" not in vectors:
        return {}
    var = float(info.get("value_log_residual_var", 0.0))
    parts = [stack_inputs(model, *vectors[k], var) for k in ("train", "val") if k in vectors]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    held_out = np.concatenate([np.full(len(p["y_churn"]), i > 0) for i, p in enumerate(parts)])
    stack = stacking.fit(
        cat["churn_logit"],
        cat["value"],
        cat["feats"],
        cat["y_churn"],
        cat["y_value"],
        held_out,
        horizon_days,
    )
    if stack:
        for part in ("churn", "value"):
            p = stack[part]
            log.info(
                "stack %s: %s (blend %s on %d users; out of fold %s)",
                part,
                "kept" if p["kept"] else "NOT kept, the model's output passes through",
                [round(x, 3) for x in p["blend"]],
                p["blend_users"],
                {
                    k: (round(v, 4) if isinstance(v, float) else v)
                    for k, v in p["out_of_fold"].items()
                },
            )
    return stack
