"""Content fingerprints of the train stage's inputs.

The sequences and lifecycle stages rewrite their snapshots on every run, so a Delta
version says nothing about whether the rows changed. The train stage instead
fingerprints what it trains from: the rows of the training frame (one aggregate
pass on the executors, nothing per user on the driver), the vocabulary and text
vectors, the BG/NBD parameters of T, the configuration sections that shape the
model, and the code. The train stage records the fingerprint of each artifact it
trains (``ml.artifacts.record_inputs``); a rerun whose fingerprint names an intact
artifact of the same training date reuses it instead of training again
(``train.reuse_same_inputs``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import TYPE_CHECKING, Dict, List, Optional

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lifecycle_recs.config import Config

if TYPE_CHECKING:  # Spark-side module: the ml core only as a type (adapters alone import both)
    from lifecycle_recs.ml.vocab import Vocab

# doubles are compared to this many decimals: a sum merged in another order by a
# shuffle differs in its last bits, which must not count as a change of the data
DECIMALS = 6
# configuration sections that shape the artifact; the train fields below only say
# where files go, which device runs, or decide promotion (which every run redoes),
# and the evaluation fields below only shape the evaluate stage
SECTIONS = (
    "validation",
    "sequences",
    "lifecycle",
    "embedding",
    "model",
    "train",
    "recommend",
    "evaluation",
)
NOT_SHAPING = {
    "train": ("feed_dir", "petastorm_cache_dir", "device", "max_metric_drop", "reuse_same_inputs"),
    # train reads only btyd_max_rows (the stack's BG/NBD fits) of evaluation
    "evaluation": ("bootstrap", "seed", "jaccard_pairs", "popularity_head_fraction"),
}


def _normalised(col: Column, dtype: T.DataType) -> Column:
    if isinstance(dtype, (T.DoubleType, T.FloatType)):
        return F.round(col.cast("double"), DECIMALS)
    if isinstance(dtype, T.ArrayType) and isinstance(
        dtype.elementType, (T.DoubleType, T.FloatType)
    ):
        return F.transform(col, lambda x: F.round(x.cast("double"), DECIMALS))
    return col


def frame_digest(df: DataFrame) -> str:
    """Order-independent digest of ``df``'s rows: the row count and two sums of
    independent 64-bit row hashes (decimal sums: no overflow), in one pass.
    Nulls are hashed as flags too, so a value moving between columns changes it."""
    fields = sorted(df.schema.fields, key=lambda f: f.name)
    cols = [_normalised(F.col(f.name), f.dataType) for f in fields]
    nulls = F.array(*[F.col(f.name).isNull() for f in fields])
    row = [F.lit(",".join(f.name for f in fields)), nulls, *cols]
    r = (
        df.select(
            F.xxhash64(*row).cast("decimal(38,0)").alias("a"),
            F.xxhash64(F.lit("second"), *row).cast("decimal(38,0)").alias("b"),
        )
        .agg(F.count(F.lit(1)).alias("n"), F.sum("a").alias("a"), F.sum("b").alias("b"))
        .first()
    )
    return hashlib.sha256(f"{r['n']}:{r['a']}:{r['b']}".encode()).hexdigest()


def shaping_config(cfg: Config) -> Dict:
    out = {}
    for name in SECTIONS:
        section = dataclasses.asdict(getattr(cfg, name))
        for key in NOT_SHAPING.get(name, ()):
            section.pop(key, None)
        out[name] = section
    return out


def package_sources() -> List[str]:
    """Every Python source of the package (all folders), relative to it, in a fixed order."""
    import lifecycle_recs

    root = os.path.dirname(os.path.abspath(lifecycle_recs.__file__))
    out = []
    for base, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        out += [
            os.path.relpath(os.path.join(base, n), root) for n in sorted(files) if n.endswith(".py")
        ]
    return out


def code_digest() -> str:
    """Digest of this package's Python sources (a deployment of other code retrains)."""
    import torch

    import lifecycle_recs

    root = os.path.dirname(os.path.abspath(lifecycle_recs.__file__))
    h = hashlib.sha256(f"torch {torch.__version__} numpy {np.__version__}".encode())
    for rel in package_sources():
        h.update(rel.encode())
        with open(os.path.join(root, rel), "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def _rounded(obj):
    if isinstance(obj, float):
        return float(f"{obj:.9g}")
    if isinstance(obj, dict):
        return {str(k): _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    return obj


def training_inputs(
    rows_digest: str,
    vocab: Vocab,
    text: Optional[np.ndarray],
    btyd_params: Dict,
    cfg: Config,
    lapsed_counts: Optional[tuple] = None,
) -> str:
    """The fingerprint of one training: rows, vocabulary, text vectors, BG/NBD of T,
    the lapsed users of the periods before T (``adapters.lapsed`` counts: a correction
    of old events can change them and leave the rows of T as they were), shaping
    configuration and code."""
    h = hashlib.sha256(rows_digest.encode())
    if lapsed_counts is not None:
        for a in lapsed_counts:
            h.update(np.round(np.asarray(a, np.float64), DECIMALS).tobytes())
    h.update(json.dumps(vocab.to_json(), sort_keys=True).encode())
    if text is not None:
        h.update(np.round(np.asarray(text, np.float64), DECIMALS).tobytes())
    h.update(json.dumps(_rounded(btyd_params), sort_keys=True, default=str).encode())
    h.update(json.dumps(shaping_config(cfg), sort_keys=True, default=str).encode())
    h.update(code_digest().encode())
    return h.hexdigest()[:32]
