"""Where scoring time goes, per step, for ``score_arrow`` alone (no Spark) and for
the plain torch loop, over the same users and artifact, on the CPU or a GPU:

    python benchmarks/score_steps.py [--device cpu|cuda] [--users 100000] [--items 20000] \\
        [--batch 4096]

Steps of the product path (``ml.scorer.Steps``; the device is synchronised at each
step boundary, so each step's time is its own): decode (Arrow -> flat numpy),
encode (vocabulary lookups, windows, user features, copy to the device), model
(``SequenceModel.infer``), strategies (lifecycle masks), scores/top-K (interest
pooling, the one-pass policy, seen filter, category cap), explanations (batched
feature perturbation, attention items), output (Arrow arrays). The plain loop
times encode, model and scores/top-K the same way. Each path runs ``--repeats``
times, interleaved; per step the median is printed. Last lines:

RESULT path=score_arrow device=<d> users_per_s=<median> low=<min> high=<max> <step>=<share> ...
RESULT path=plain_loop device=<d> users_per_s=<median> low=<min> high=<max>
"""

from __future__ import annotations

import argparse
import time

from harness import make_artifact, users_frame

STEPS = ("decode", "encode", "model", "strategies", "scores/top-K", "explanations", "output")


def main():
    import os

    import numpy as np
    import pyarrow as pa
    import torch
    from harness import ROOT

    from lifecycle_recs.config import RecommendConf
    from lifecycle_recs.ml import columns
    from lifecycle_recs.ml.features import Batch, encode_columns
    from lifecycle_recs.ml.scorer import Steps, load_scorer, score_arrow

    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    art = make_artifact(os.path.join(ROOT, ".bench", "score_steps", "artifacts"), args.items)
    table = pa.Table.from_pandas(users_frame(args.users, args.items), preserve_index=False)
    batches = table.to_batches(max_chunksize=args.batch)
    sc = load_scorer(art, args.device)
    dev = sc.device
    conf = RecommendConf(k=10, chunk_size=args.chunk)
    score_arrow(batches[0], sc, conf)  # warm-up (allocator, kernels)

    def product():
        steps = Steps(dev)
        t = time.perf_counter()
        for rb in batches:
            score_arrow(rb, sc, conf, steps)
        return time.perf_counter() - t, dict(steps.timings)

    def plain():
        steps = Steps(dev)
        t = time.perf_counter()
        with torch.no_grad():
            for rb in batches:
                with steps("decode"):
                    cols = columns.from_record_batch(rb)
                with steps("encode"):
                    enc = encode_columns(cols, sc.art.vocab, sc.art.max_len)[0]
                    enc["length"] = np.maximum(enc["length"], 1)
                    b = Batch.from_arrays(enc).to(dev)
                with steps("model"):
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                        out = sc.art.model.infer(b, sc.item_vectors)
                    torch.sigmoid(out["churn_logit"].float())
                with steps("scores/top-K"):
                    for lo in range(0, rb.num_rows, conf.chunk_size):
                        s = out["user"][lo : lo + conf.chunk_size].float() @ sc.item_vectors.T
                        s[:, :2] = -float("inf")
                        s.topk(conf.k, dim=1)[1].cpu()
        return time.perf_counter() - t, dict(steps.timings)

    runs = {"score_arrow": [], "plain_loop": []}
    for r in range(args.repeats):
        for name, fn in (("plain_loop", plain), ("score_arrow", product)):
            runs[name].append(fn())
            total = runs[name][-1][0]
            print(
                f"run {r + 1} {name}: {args.users / total:,.0f} users/s ({total:.2f}s)", flush=True
            )
    for name in ("plain_loop", "score_arrow"):
        totals = np.array([t for t, _ in runs[name]])
        med = float(np.median(totals))
        print(f"\n{name} on {dev}: {args.users / med:,.0f} users/s (median of {args.repeats})")
        print("| step | s (median) | share | users/s of the step alone |")
        print("|---|---|---|---|")
        shares = {}
        for step in STEPS:
            vals = [t.get(step) for _, t in runs[name] if step in t]
            if not vals:
                continue
            s = float(np.median(vals))
            shares[step] = s / med
            print(f"| {step} | {s:.3f} | {s / med:.1%} | {args.users / s:,.0f} |")
        per = args.users / totals
        print(
            f"RESULT path={name} device={dev.type} users_per_s={np.median(per):.0f} "
            f"low={per.min():.0f} high={per.max():.0f} "
            + " ".join(f"{k.replace('/', '_')}={v:.3f}" for k, v in shares.items())
        )


if __name__ == "__main__":
    main()
