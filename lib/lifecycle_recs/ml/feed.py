"""The streaming training feed (Spark-free: pyarrow, numpy, torch).

Spark writes the example rows once per training run as Parquet (``feeding.write_examples``);
:class:`ParquetExampleStream` streams them back as :class:`~.features.Batch` es, epoch by
epoch, never holding the dataset in memory: each epoch visits the (file, row group) units
in a seeded order, sharded across ranks and then across ``DataLoader`` workers, and mixes
rows through a bounded shuffle buffer. It reads through ``pyarrow.fs`` (local paths, Unity
Catalog volumes, ``s3://``/``gs://``/``abfs://`` where pyarrow supports them), so it needs no
JVM and runs on shared/standard Databricks compute.

List columns are decoded through their flat values and offsets, never as Python objects.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pyarrow import fs as pafs

from lifecycle_recs.fs import filesystem
from lifecycle_recs.ml.features import STEP_ARRAYS, Batch

FEED_COLUMNS = (*STEP_ARRAYS, "length", "feats", "churn", "value", "label_w", "eval_target")


def parquet_files(path: str) -> Tuple[pafs.FileSystem, List[str]]:
    """The Parquet files under ``path`` (or ``path`` itself), sorted by name."""
    fs, root = filesystem(path)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        return fs, [root]
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"training feed: no such path {path}")
    files = [
        f.path
        for f in fs.get_file_info(pafs.FileSelector(root, recursive=True))
        if f.type == pafs.FileType.File
        and f.base_name.endswith(".parquet")
        and not f.base_name.startswith(("_", "."))
    ]
    return fs, sorted(files)


def _list_to_numpy(col: pa.ChunkedArray) -> np.ndarray:
    """A list column -> [n, width] array of its own value type, right-padded with zeros
    (through the flat values and offsets: zero-copy when every list has the same length)."""
    if isinstance(col, pa.ChunkedArray):
        arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    else:
        arr = col
    n = len(arr)
    values = arr.flatten().to_numpy(zero_copy_only=False)
    dtype = values.dtype
    if n == 0:
        return np.zeros((0, 0), dtype)
    offsets = arr.offsets.to_numpy()
    lengths = np.diff(offsets)
    width = int(lengths.max())
    if (lengths == width).all():
        return values.reshape(n, width)
    out = np.zeros((n, width), dtype)
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(len(values)) - np.repeat(offsets[:-1] - offsets[0], lengths)
    out[rows, cols] = values
    return out


def table_arrays(table: pa.Table, columns: Sequence[str] = FEED_COLUMNS) -> Dict[str, np.ndarray]:
    """Example rows (``schemas.EXAMPLE_SCHEMA``) -> numpy arrays by Batch field, in their
    stored types (int32/float32): ``Batch.from_arrays`` widens each batch as it is made."""
    out = {}
    for c in columns:
        col = table.column(c)
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            out[c] = _list_to_numpy(col)
        else:
            out[c] = col.to_numpy()
    return out


def _concat(parts: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    out = {}
    for k in parts[0]:
        if parts[0][k].ndim == 2:  # widths can differ between row groups: pad to the widest
            w = max(p[k].shape[1] for p in parts)
            out[k] = np.concatenate(
                [
                    p[k] if p[k].shape[1] == w else np.pad(p[k], ((0, 0), (0, w - p[k].shape[1])))
                    for p in parts
                ]
            )
        else:
            out[k] = np.concatenate([p[k] for p in parts])
    return out


def _take(
    parts: List[Dict[str, np.ndarray]], starts: np.ndarray, idx: np.ndarray
) -> Dict[str, np.ndarray]:
    """Rows ``idx`` (positions in the parts laid end to end) gathered from each part
    directly, so a buffer of several row groups is never copied whole; the rows of a
    batch come grouped by part (the batch is a random draw either way)."""
    if len(parts) == 1:
        return {k: np.take(v, idx, axis=0) for k, v in parts[0].items()}
    pid = np.searchsorted(starts, idx, side="right") - 1
    pieces = [
        {k: np.take(v, idx[pid == p] - starts[p], axis=0) for k, v in parts[p].items()}
        for p in np.unique(pid)
    ]
    return _concat(pieces)


class ParquetExampleStream(torch.utils.data.IterableDataset):
    """Batches of examples streamed from Parquet, ``batch_size`` rows each (the last
    batch of an epoch may be smaller). Use with ``DataLoader(stream, batch_size=None)``.

    ``shuffle``: (file, row group) order permuted per epoch from (seed, epoch), rows
    mixed in a buffer of ``buffer_rows``; without it, files and rows in stored order.
    ``rank``/``world_size``: this process's share of the units (distributed training).
    Memory: one buffer (``buffer_rows`` + one row group) per worker, whatever the size
    of the dataset."""

    def __init__(
        self,
        path: str,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        buffer_rows: int = 16384,
        rank: int = 0,
        world_size: int = 1,
        columns: Sequence[str] = FEED_COLUMNS,
    ):
        super().__init__()
        self.path, self.batch_size, self.shuffle, self.seed = (
            path,
            int(batch_size),
            shuffle,
            int(seed),
        )
        self.buffer_rows, self.rank, self.world_size = (
            max(int(buffer_rows), int(batch_size)),
            rank,
            world_size,
        )
        self.columns = tuple(columns)
        self.epoch = 0
        fs, files = parquet_files(path)
        self._fs = fs
        self.units: List[Tuple[str, int]] = []
        self.rows = 0
        for f in files:
            with fs.open_input_file(f) as fh:
                meta = pq.ParquetFile(fh).metadata
            for rg in range(meta.num_row_groups):
                if meta.row_group(rg).num_rows:
                    self.units.append((f, rg))
                    self.rows += meta.row_group(rg).num_rows

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:  # batches per epoch (for one rank and all its workers)
        return -(-self.rows // self.batch_size)

    def _my_units(self) -> List[Tuple[str, int]]:
        units = list(self.units)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(units))
            units = [units[i] for i in order]
        units = units[self.rank :: self.world_size]
        info = torch.utils.data.get_worker_info()
        if info is not None:
            units = units[info.id :: info.num_workers]
        return units

    def _read(self, unit: Tuple[str, int]) -> Dict[str, np.ndarray]:
        f, rg = unit
        with self._fs.open_input_file(f) as fh:
            table = pq.ParquetFile(fh).read_row_group(rg, columns=list(self.columns))
        return table_arrays(table, self.columns)

    def _prefetched(
        self, units: List[Tuple[str, int]], depth: int = 2
    ) -> Iterator[Dict[str, np.ndarray]]:
        """Row groups decoded by a background thread, ``depth`` ahead of the consumer
        (pyarrow decodes without the GIL, so decoding overlaps the batch gathering)."""
        with ThreadPoolExecutor(max_workers=1) as ex:
            pending = deque(ex.submit(self._read, u) for u in units[:depth])
            for u in units[depth:]:
                done = pending.popleft().result()
                pending.append(ex.submit(self._read, u))
                yield done
            while pending:
                yield pending.popleft().result()

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, info.id if info else 0])
        parts, held = [], 0
        for a in self._prefetched(self._my_units()):
            parts.append(a)
            held += len(a["length"])
            if held < self.buffer_rows:
                continue
            # rows are drawn in a random order one batch at a time (a gather of the
            # batch's rows); what does not fill a batch waits for the next buffer
            starts = np.cumsum([0] + [len(p["length"]) for p in parts])[:-1]
            order = rng.permutation(held) if self.shuffle else np.arange(held)
            n_full = held // self.batch_size * self.batch_size
            for lo in range(0, n_full, self.batch_size):
                yield Batch.from_arrays(_take(parts, starts, order[lo : lo + self.batch_size]))
            parts = [_take(parts, starts, np.sort(order[n_full:]))] if n_full < held else []
            held -= n_full
        if held:
            starts = np.cumsum([0] + [len(p["length"]) for p in parts])[:-1]
            order = rng.permutation(held) if self.shuffle else np.arange(held)
            for lo in range(0, held, self.batch_size):
                yield Batch.from_arrays(_take(parts, starts, order[lo : lo + self.batch_size]))


def batches(source, batch_size: int = 4096) -> Iterator[Batch]:
    """One pass over an in-memory Batch (in order, chunks of ``batch_size``) or a stream."""
    if isinstance(source, Batch):
        for i in range(0, source.size, batch_size):
            yield source.rows(slice(i, i + batch_size))
    else:
        yield from source


def collect(source, max_rows: Optional[int] = None) -> Optional[Batch]:
    """The first ``max_rows`` rows of a source as one Batch (bounded: for the small
    full-batch steps such as the heads refit); None when it is empty."""
    if isinstance(source, Batch):
        return source if max_rows is None else source.rows(slice(0, max_rows))
    parts, n = [], 0
    for b in batches(source):
        parts.append(b)
        n += b.size
        if max_rows is not None and n >= max_rows:
            break
    if not parts:
        return None
    width = max(p.items.shape[1] for p in parts)
    out = []
    for f in Batch._fields:
        ts = [getattr(p, f) for p in parts]
        if ts[0] is None:
            out.append(None)
            continue
        if ts[0].dim() == 2 and f != "feats":
            ts = [torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in ts]
        out.append(torch.cat(ts)[:max_rows] if max_rows is not None else torch.cat(ts))
    return Batch(*out)
