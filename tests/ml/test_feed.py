"""The streaming feed: every row once per epoch, seeded order, shards, no Spark."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lifecycle_recs.ml.feed import ParquetExampleStream, collect, table_arrays


def write_examples(path, n=1000, files=3, width=5, row_group=64):
    path.mkdir(parents=True, exist_ok=True)
    ids = np.arange(n)
    for f, part in enumerate(np.array_split(ids, files)):
        rows = {
            "items": [[int(i) % 7 + 2] * width for i in part],
            "events": [[2] * width for _ in part],
            "gaps": [[0.5] * width for _ in part],
            "values": [[1.0] * width for _ in part],
            "targets": [[0] * width for _ in part],
            "length": [width] * len(part),
            "feats": [[float(i)] * 6 for i in part],
            "churn": [float(i % 2) for i in part],
            "value": [0.0] * len(part),
            "label_w": [1.0] * len(part),
            "eval_target": [int(i) for i in part],
        }
        pq.write_table(pa.table(rows), path / f"part-{f:05d}.parquet", row_group_size=row_group)
    (path / "_SUCCESS").write_text("")
    return str(path)


def ids(stream):
    return np.concatenate([b.eval_target.numpy() for b in stream])


def test_every_row_once_per_epoch_in_a_seeded_order(tmp_path):
    p = write_examples(tmp_path / "f")
    s = ParquetExampleStream(p, 100, shuffle=True, seed=1, buffer_rows=256)
    assert s.rows == 1000 and len(s) == 10 and len(s.units) == 3 * 6
    e0 = ids(s)
    assert sorted(e0) == list(range(1000)) and not np.array_equal(e0, np.arange(1000))
    s.set_epoch(1)
    e1 = ids(s)
    assert sorted(e1) == list(range(1000)) and not np.array_equal(e0, e1)
    s2 = ParquetExampleStream(p, 100, shuffle=True, seed=1, buffer_rows=256)
    assert np.array_equal(ids(s2), e0)  # same seed, same epoch: same order
    sizes = [b.size for b in s]
    assert sum(sizes) == 1000 and max(sizes) == 100


def test_no_shuffle_keeps_the_stored_order_and_types(tmp_path):
    p = write_examples(tmp_path / "f", n=250)
    b = next(iter(ParquetExampleStream(p, 64, shuffle=False)))
    assert b.eval_target.tolist() == list(range(64))
    assert (
        b.items.dtype == torch.long and b.items.shape == (64, 5) and b.feats.dtype == torch.float32
    )
    assert np.array_equal(ids(ParquetExampleStream(p, 64, shuffle=False)), np.arange(250))


@pytest.mark.parametrize("workers", [0, 2])
def test_shards_over_ranks_and_loader_workers_cover_each_row_once(tmp_path, workers):
    p = write_examples(tmp_path / "f")
    got = []
    for rank in range(2):
        s = ParquetExampleStream(p, 50, shuffle=True, seed=3, rank=rank, world_size=2)
        loader = torch.utils.data.DataLoader(s, batch_size=None, num_workers=workers)
        got.append(np.concatenate([b.eval_target.numpy() for b in loader]))
    assert not set(got[0]) & set(got[1])
    assert sorted(np.concatenate(got)) == list(range(1000))


def test_ragged_lists_are_padded_and_collect_is_bounded(tmp_path):
    t = pa.table({"items": [[2, 3], [4], []], "feats": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]})
    a = table_arrays(t, ("items", "feats"))
    assert a["items"].tolist() == [[2, 3], [4, 0], [0, 0]] and a["feats"].shape == (3, 2)
    p = write_examples(tmp_path / "f", n=300)
    head = collect(ParquetExampleStream(p, 64, shuffle=False), max_rows=100)
    assert head.size == 100 and head.eval_target.tolist() == list(range(100))
    with pytest.raises(FileNotFoundError, match="no such path"):
        ParquetExampleStream(str(tmp_path / "missing"), 8)
