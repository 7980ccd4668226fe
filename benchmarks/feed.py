"""The streaming training feed vs reading the same Parquet with pyarrow alone.

    python benchmarks/feed.py                     # 100k, 1M and 4M examples, 3 runs each
    python benchmarks/feed.py --sizes 100000 --runs 1

Examples of the real shape (50 steps: items, events, targets int; gaps, values float;
6 user features; labels), with sequence lengths drawn like a real log (geometric, mean
~20), are written once per size with pyarrow under .bench/feed/ (files of 250k rows,
row groups of 16k rows, as Spark's writer would leave them). Then, each in its own
process so that its peak memory is its own, one epoch is read by:

* ``stream``: ``ml.feed.ParquetExampleStream`` (shuffled row-group order + 16k-row
  shuffle buffer, seeded) through a torch ``DataLoader``, batches of 1,024 as Batches;
* ``pyarrow``: ``ParquetFile.iter_batches`` of 1,024 rows, every column to numpy
  (list columns through their flat values) — the floor for reading these files.

Runs are interleaved (stream, pyarrow, stream, ...), medians and spreads printed.
Driver RSS is the process's peak resident set (ru_maxrss). Last line:
RESULT rss_growth_4M_over_100k=<x> stream_over_pyarrow_4M=<y> examples_per_s_4M=<z>
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from harness import ROOT, median_spread

L = 50


def write(
    path: str, n: int, seed: int = 0, file_rows: int = 250_000, rg_rows: int = 16_384
) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if os.path.exists(os.path.join(path, "_SUCCESS")):
        return
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(seed)
    for f, lo in enumerate(range(0, n, file_rows)):
        m = min(file_rows, n - lo)
        length = np.clip(rng.geometric(1 / 20, m), 1, L)
        mask = np.arange(L)[None, :] < length[:, None]
        items = np.where(mask, rng.integers(2, 20_000, (m, L)), 0).astype(np.int32)
        targets = np.zeros_like(items)
        targets[:, :-1] = items[:, 1:]
        cols = {
            "items": items,
            "events": np.where(mask, rng.integers(2, 7, (m, L)), 0).astype(np.int32),
            "gaps": np.where(mask, rng.exponential(2, (m, L)), 0).astype(np.float32),
            "values": np.where(
                mask & (rng.random((m, L)) < 0.05), rng.exponential(3, (m, L)), 0
            ).astype(np.float32),
            "targets": targets,
        }
        offsets = pa.array(np.arange(0, (m + 1) * L, L, dtype=np.int32))
        table = {k: pa.ListArray.from_arrays(offsets, pa.array(v.ravel())) for k, v in cols.items()}
        feats = rng.random((m, 6)).astype(np.float32)
        table["feats"] = pa.ListArray.from_arrays(
            pa.array(np.arange(0, (m + 1) * 6, 6, dtype=np.int32)), pa.array(feats.ravel())
        )
        table["length"] = pa.array(length.astype(np.int32))
        for k in ("churn", "value", "label_w"):
            table[k] = pa.array(rng.random(m).astype(np.float32))
        table["eval_target"] = pa.array(np.zeros(m, np.int32))
        pq.write_table(
            pa.table(table), os.path.join(path, f"part-{f:05d}.parquet"), row_group_size=rg_rows
        )
    open(os.path.join(path, "_SUCCESS"), "w").close()


def child(method: str, path: str) -> None:
    """One epoch by ``method``; prints a JSON line with examples, seconds and peak RSS."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from lifecycle_recs.ml.feed import ParquetExampleStream, parquet_files

    torch.set_num_threads(1)
    t = time.perf_counter()
    n = 0
    if method == "stream":
        s = ParquetExampleStream(path, 1024, shuffle=True, seed=0, buffer_rows=16_384)
        for b in torch.utils.data.DataLoader(s, batch_size=None, num_workers=0):
            n += b.size
    else:
        _, files = parquet_files(path)
        for f in files:
            for rb in pq.ParquetFile(f).iter_batches(batch_size=1024):
                for col in rb.columns:
                    (col.flatten() if pa.types.is_list(col.type) else col).to_numpy(
                        zero_copy_only=False
                    )
                n += rb.num_rows
    secs = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    print(json.dumps({"examples": n, "seconds": secs, "rss_mib": rss}))
    del np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 4_000_000])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(*args.child)
    results = {}
    for n in args.sizes:
        path = os.path.join(ROOT, ".bench", "feed", str(n))
        t = time.perf_counter()
        write(path, n)
        print(f"{n:,} examples ready ({time.perf_counter() - t:.0f}s)", flush=True)
        for run in range(args.runs):
            for method in ("stream", "pyarrow"):
                out = (
                    subprocess.run(
                        [sys.executable, __file__, "--child", method, path],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    .stdout.strip()
                    .splitlines()[-1]
                )
                r = json.loads(out)
                assert r["examples"] == n, r
                results.setdefault((n, method), []).append(r)
                print(
                    f"  run {run} {method:<8} {n / r['seconds']:>10,.0f} examples/s  peak RSS "
                    f"{r['rss_mib']:,.0f} MiB",
                    flush=True,
                )
    print(
        "\n| examples | stream examples/s | pyarrow examples/s | stream / pyarrow time | stream "
        "peak RSS (MiB) |"
    )
    print("|---|---|---|---|---|")
    summary = {}
    for n in args.sizes:
        s, a = results[(n, "stream")], results[(n, "pyarrow")]
        ratios = [x["seconds"] / y["seconds"] for x, y in zip(s, a)]
        summary[n] = {
            "eps": median_spread([n / x["seconds"] for x in s])[0],
            "ratio": median_spread(ratios)[0],
            "rss": median_spread([x["rss_mib"] for x in s])[0],
        }
        print(
            f"| {n:,} | {summary[n]['eps']:,.0f} "
            f"({min(n / x['seconds'] for x in s):,.0f}-{max(n / x['seconds'] for x in s):,.0f}) | "
            f"{median_spread([n / y['seconds'] for y in a])[0]:,.0f} | {summary[n]['ratio']:.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}) | {summary[n]['rss']:,.0f} "
            f"({min(x['rss_mib'] for x in s):,.0f}-{max(x['rss_mib'] for x in s):,.0f}) |"
        )
    lo, hi = min(args.sizes), max(args.sizes)
    print(
        "RESULT "
        f"rss_growth_{hi // 1_000_000 or hi}M_over_{lo // 1000}k="
        f"{summary[hi]['rss'] / summary[lo]['rss']:.3f} "
        f"stream_over_pyarrow={summary[hi]['ratio']:.3f} examples_per_s={summary[hi]['eps']:.0f}"
    )


if __name__ == "__main__":
    main()
