"""Arrow record batches <-> flat numpy arrays, without a Python object per row.

The scoring hot path reads ``user_sequences`` rows as Arrow (``mapInArrow`` hands
them over as ``pyarrow.RecordBatch``): a list column is its flat values plus
offsets, ids stay Arrow strings and are looked up with Arrow's hash kernels
(``pyarrow.compute.index_in``), numbers become numpy views. The output side builds
list columns from flat values and offsets the same way. A pandas frame goes
through ``pa.RecordBatch.from_pandas`` first (tests, notebooks, MLflow pyfunc).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lifecycle_recs.ml.vocab import UNK

LIST_COLUMNS = ("item_ids", "event_types", "time_gaps_hours", "values")


@dataclass
class UserColumns:
    """One batch of users as flat arrays. ``offsets`` [n + 1] index the flat step
    arrays of the item list (``item_ids``); ``lists`` holds each list column's flat
    values and offsets; ``numeric`` every numeric column as float64 (null = NaN)."""

    n: int
    user_id: pa.Array
    stage: Optional[pa.Array]
    items: pa.Array  # flat item ids (strings)
    offsets: np.ndarray  # [n + 1] int64
    lists: Dict[str, tuple]  # name -> (flat values: pa.Array, offsets)
    numeric: Dict[str, np.ndarray]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def flat_float(self, name: str) -> Optional[np.ndarray]:
        """The flat values of a numeric list column aligned with ``items`` (same
        offsets), as float64 with nulls as NaN; None when absent or misaligned."""
        if name not in self.lists:
            return None
        flat, offs = self.lists[name]
        if not np.array_equal(offs, self.offsets):
            return None
        return _float(flat)


def _float(arr) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_null(arr.type):
        return np.full(len(arr), np.nan)
    return arr.cast(pa.float64()).to_numpy(zero_copy_only=False)


def list_parts(arr: pa.Array):
    """(flat values, offsets [n + 1] int64) of a list array, honouring slicing and
    null lists (which count as empty)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_null(arr.type):
        return pa.array([], pa.string()), np.zeros(len(arr) + 1, np.int64)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    return arr.flatten(), offsets_of(lengths)


def from_record_batch(rb) -> UserColumns:
    """A record batch (or table) of user rows -> :class:`UserColumns`."""
    names = rb.schema.names
    if "item_ids" not in names:
        raise ValueError(f"user rows need an 'item_ids' list column; got columns {names}")
    lists = {c: list_parts(rb.column(c)) for c in LIST_COLUMNS if c in names}
    numeric = {}
    for c in names:
        t = rb.schema.field(c).type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            numeric[c] = _float(rb.column(c))
    items, offsets = lists["item_ids"]
    return UserColumns(
        len(rb),
        _column(rb, "user_id"),
        _column(rb, "stage") if "stage" in names else None,
        items,
        offsets,
        lists,
        numeric,
    )


def _column(rb, name: str) -> pa.Array:
    col = rb.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def record_batch(pdf: pd.DataFrame) -> pa.RecordBatch:
    """A pandas frame of user rows (lists as Python lists or numpy arrays) as Arrow."""
    return pa.RecordBatch.from_pandas(pdf, preserve_index=False)


def from_pandas(pdf: pd.DataFrame) -> UserColumns:
    """A pandas frame of user rows -> :class:`UserColumns`."""
    return from_record_batch(record_batch(pdf))


def index_in(values: pa.Array, lookup: pa.Array) -> np.ndarray:
    """Ids -> vocabulary indices: position in ``lookup`` + 2, ``UNK`` for unknown or
    null ids (Arrow's hash lookup; no Python object per id)."""
    if len(values) == 0:
        return np.zeros(0, np.int64)
    if pa.types.is_null(values.type):
        return np.full(len(values), UNK, np.int64)
    if values.type != lookup.type:
        values = values.cast(lookup.type)
    got = pc.fill_null(pc.index_in(values, value_set=lookup), -1).to_numpy(zero_copy_only=False)
    return np.where(got >= 0, got + 2, UNK).astype(np.int64)


def list_array(flat: pa.Array, offsets: np.ndarray) -> pa.ListArray:
    """A list column from its flat values and offsets [n + 1]."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32), pa.int32()), flat)


def fixed_lists(values: np.ndarray, arrow_type: pa.DataType) -> pa.ListArray:
    """[n, m] values -> a list column of n lists of m values."""
    n, m = values.shape
    return list_array(
        pa.array(np.ascontiguousarray(values).reshape(-1), arrow_type), np.arange(n + 1) * m
    )


def offsets_of(counts: np.ndarray) -> np.ndarray:
    """Offsets [n + 1] of lists with ``counts`` values each."""
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def take_strings(names: pa.Array, idx: np.ndarray) -> pa.Array:
    """names[idx] for an index array of any shape, flattened (row-major)."""
    return names.take(pa.array(np.asarray(idx, dtype=np.int64).reshape(-1)))
