"""GPU scoring throughput of the batch functions alone (no Spark), on the lent H100.

    python benchmarks/score_gpu.py [--users 400000]

(a) the model at 50 steps (bf16): users/s on pre-encoded tensors;
(b) top-100 over 100,000 items from user vectors (bf16 matmul + topk, chunked);
(c) the whole scoring path of the UDF without Spark (``score_stream`` over Arrow
    record batches: decode, encode, model, strategies, interest pooling, category
    cap, both explanations, Arrow output; the next batch's host side prepared in
    a thread), users with 50 steps, 20,000 items, top-10: the target is
    >= 300,000 users/s on one H100. ``benchmarks/score_steps.py --device cuda``
    shows where its time goes.
Untrained weights of the real shapes. ``--device cpu --users 20000`` runs it on
the CPU (a smoke run; the figures mean nothing there). Last line:
RESULT score_users_per_s=<a> top100_users_per_s=<b> score_stream_users_per_s=<c> gpu=<name>
"""

from __future__ import annotations

import argparse
import os
import time

from harness import ROOT, make_artifact, users_frame


def timed(fn, reps=5):
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()
    sync()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def main():
    import torch

    from lifecycle_recs.config import RecommendConf
    from lifecycle_recs.ml.features import Batch, encode_last
    from lifecycle_recs.ml.scorer import load_scorer, score_stream

    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=400_000)
    p.add_argument("--batch", type=int, default=16384)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    dev = args.device
    gpu = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"
    work = os.path.join(ROOT, ".bench", "score_gpu")
    art = make_artifact(os.path.join(work, "artifacts"), 100_000)
    sc = load_scorer(art, dev)
    model = sc.art.model
    users = users_frame(min(args.users, 200_000), 100_000, seed=1)
    t = time.perf_counter()
    enc = encode_last(users, sc.art.vocab, 50)
    enc_s = time.perf_counter() - t
    print(
        f"{gpu}: pandas -> tensors (encode_last) {len(users) / enc_s:,.0f} users/s on one CPU core",
        flush=True,
    )
    tt = Batch.from_arrays(enc).to(dev)
    n = len(users)
    # full 50-step sequences for the 50-step figure
    full = tt._replace(
        length=torch.full_like(tt.length, 50),
        items=torch.randint(2, sc.art.vocab.n_items, tt.items.shape, device=dev),
    )

    def run_model(t=full, bs=args.batch):
        with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            for i in range(0, n, bs):
                model.infer(t.rows(slice(i, i + bs)), sc.item_vectors)

    s_model = timed(run_model)
    print(
        f"(a) model forward, 50 steps, bf16, batch {args.batch}: {n / s_model:,.0f} users/s",
        flush=True,
    )

    iv = sc.items.vectors.to(torch.bfloat16)
    U = torch.randn(args.users, iv.shape[1], device=dev, dtype=torch.bfloat16)

    def topk(bs=8192):
        for i in range(0, len(U), bs):
            (U[i : i + bs] @ iv.T).topk(100, dim=1)

    s_top = timed(topk)
    print(
        f"(b) top-100 over {iv.shape[0] - 2:,} items, bf16: {len(U) / s_top:,.0f} users/s",
        flush=True,
    )

    import pyarrow as pa

    conf = RecommendConf(k=10, chunk_size=8192)
    sc20 = load_scorer(make_artifact(os.path.join(work, "artifacts20k"), 20_000), dev)
    part = users_frame(min(args.users, 200_000), 20_000, seed=2, fixed_length=True)
    batches = pa.Table.from_pandas(part, preserve_index=False).to_batches(max_chunksize=args.batch)

    def stream():
        return sum(rb.num_rows for rb in score_stream(iter(batches), sc20, conf))

    s_stream = timed(stream, reps=3)
    print(
        "(c) score_stream end to end (Arrow in/out, 50 steps, 20,000 items, top-10, strategies, "
        f"category cap, explanations): {len(part) / s_stream:,.0f} users/s",
        flush=True,
    )
    print(
        f"RESULT score_users_per_s={n / s_model:.0f} top100_users_per_s={len(U) / s_top:.0f} "
        f"score_stream_users_per_s={len(part) / s_stream:.0f} gpu={gpu.replace(' ', '_')}"
    )


if __name__ == "__main__":
    main()
