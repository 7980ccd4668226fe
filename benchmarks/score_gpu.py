"""GPU scoring throughput of the batch functions alone (no Spark), on the lent H100.

    python benchmarks/score_gpu.py [--users 400000]

(a) the model at 50 steps (bf16): users/s on pre-encoded tensors, and the whole
    score_batch (pandas encode, strategies, category cap, explanations);
(b) top-100 over 100,000 items from user vectors (bf16 matmul + topk, chunked).
Untrained weights of the real shapes. Last line:
RESULT score_users_per_s=<a> top100_users_per_s=<b> score_batch_users_per_s=<c> gpu=<name>
"""
from __future__ import annotations

import argparse
import os
import time

from score_common import ROOT, make_artifact, users_frame


def timed(fn, reps=5):
    import torch

    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def main():
    import torch

    from lifecycle_recs.config import RecommendConf
    from lifecycle_recs.ml.features import Batch, encode_last
    from lifecycle_recs.ml.scorer import load_scorer, score_batch

    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=400_000)
    p.add_argument("--batch", type=int, default=16384)
    args = p.parse_args()
    gpu = torch.cuda.get_device_name(0)
    work = os.path.join(ROOT, ".bench", "score_gpu")
    art = make_artifact(os.path.join(work, "artifacts"), 100_000)
    sc = load_scorer(art, "cuda")
    model = sc.art.model
    users = users_frame(min(args.users, 200_000), 100_000, seed=1)
    t = time.perf_counter()
    enc = encode_last(users, sc.art.vocab, 50)
    enc_s = time.perf_counter() - t
    print(f"{gpu}: pandas -> tensors (encode_last) {len(users) / enc_s:,.0f} users/s on one CPU core", flush=True)
    tt = Batch.from_arrays(enc).to("cuda")
    n = len(users)
    # full 50-step sequences for the 50-step figure
    full = tt._replace(length=torch.full_like(tt.length, 50),
                       items=torch.randint(2, sc.art.vocab.n_items, tt.items.shape, device="cuda"))

    def run_model(t=full, bs=args.batch):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            for i in range(0, n, bs):
                model(t.rows(slice(i, i + bs)))

    s_model = timed(run_model)
    print(f"(a) model forward, 50 steps, bf16, batch {args.batch}: {n / s_model:,.0f} users/s", flush=True)

    iv = sc.items.vectors.to(torch.bfloat16)
    U = torch.randn(args.users, iv.shape[1], device="cuda", dtype=torch.bfloat16)

    def topk(bs=8192):
        for i in range(0, len(U), bs):
            (U[i:i + bs] @ iv.T).topk(100, dim=1)

    s_top = timed(topk)
    print(f"(b) top-100 over {iv.shape[0] - 2:,} items, bf16: {len(U) / s_top:,.0f} users/s", flush=True)

    conf = RecommendConf(k=10, chunk_size=8192, category_cap=4)
    part = users.iloc[:50_000]
    score_batch(part.iloc[:1000], sc, conf)
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = score_batch(part, sc, conf)
    torch.cuda.synchronize()
    s_batch = time.perf_counter() - t
    assert len(out) == len(part) and all(len(r) == 10 for r in out["rec_items"])
    print(f"(c) score_batch end to end (pandas in/out, strategies, category cap, explanations): "
          f"{len(part) / s_batch:,.0f} users/s", flush=True)
    print(f"RESULT score_users_per_s={n / s_model:.0f} top100_users_per_s={len(U) / s_top:.0f} "
          f"score_batch_users_per_s={len(part) / s_batch:.0f} gpu={gpu.replace(' ', '_')}")


if __name__ == "__main__":
    main()
