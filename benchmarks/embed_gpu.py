"""GPU embedding throughput of the pandas-batch function alone (no Spark).

    python benchmarks/embed_gpu.py --model <model dir> [--n 200000]

Runs on a machine with CUDA (the lent H100 through the device tool; see
benchmarks/README.md for the exact call). Texts are the synthetic catalog's
item texts (title. category. description). Reports texts/s for several
tokenizer-process counts, where the time goes (tokenization alone, forward
alone), GPU utilisation sampled by nvidia-smi, and fp16-vs-fp32 accuracy.
Last line: RESULT texts_per_s=<x> gpu=<name>
"""

from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time


def catalog_texts(n: int):
    from lifecycle_recs.config import SyntheticConf
    from lifecycle_recs.data.synthetic.shop import item_catalog

    cat = item_catalog(SyntheticConf(n_items=n, seed=5))
    return (cat["title"] + ". " + cat["category"] + ". " + cat["description"]).tolist()


class GpuSampler:
    def __init__(self):
        self.samples, self._stop = [], threading.Event()

    def __enter__(self):
        def loop():
            while not self._stop.is_set():
                try:
                    out = subprocess.run(
                        [
                            "nvidia-smi",
                            "--query-gpu=utilization.gpu",
                            "--format=csv,noheader,nounits",
                        ],
                        capture_output=True,
                        text=True,
                        timeout=5,
                    ).stdout.strip()
                    self.samples.append(float(out.splitlines()[0]))
                except Exception:
                    pass
                time.sleep(0.2)

        self._t = threading.Thread(target=loop, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()

    @property
    def mean(self):
        return sum(self.samples) / len(self.samples) if self.samples else float("nan")


def main():
    import numpy as np
    import pandas as pd
    import torch

    from lifecycle_recs.config import EmbeddingConf
    from lifecycle_recs.ml.text_encoder import TextEncoder, embed_pandas

    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument(
        "--configs",
        nargs="+",
        default=[
            "512:0:50000",
            "512:12:50000",
            "2048:12:200000",
            "2048:14:200000",
            "4096:14:200000",
        ],
        help="batch_size:tokenizer_processes:arrow_batch_rows",
    )
    p.add_argument("--reference", default=None, help=".npy of CPU fp32 vectors of the first texts")
    args = p.parse_args()
    gpu = torch.cuda.get_device_name(0)
    texts = catalog_texts(args.n)
    mean_chars = sum(map(len, texts)) / len(texts)
    print(
        f"{gpu}, {os.cpu_count()} CPUs, {len(texts):,} texts, mean {mean_chars:.0f} chars",
        flush=True,
    )
    frame = pd.DataFrame(
        {"item_id": [f"I{i}" for i in range(len(texts))], "text": texts, "text_hash": "h"}
    )

    rows, best = [], (0.0, None)
    for spec in args.configs:
        bs, w, arrow = (int(x) for x in spec.split(":"))
        enc = TextEncoder(args.model, device="cuda", batch_size=bs, tokenizer_workers=w)
        conf = EmbeddingConf(model=args.model, batch_size=bs, tokenizer_threads=w)
        embed_pandas(frame.iloc[:20_000], conf, enc)  # warm-up: CUDA kernels, the process pool
        torch.cuda.synchronize()
        with GpuSampler() as s:
            t = time.perf_counter()
            # the Spark UDF sees Arrow batches: feed the function the same way
            outs = [
                embed_pandas(frame.iloc[i : i + arrow], conf, enc)
                for i in range(0, len(frame), arrow)
            ]
            torch.cuda.synchronize()
            dt = time.perf_counter() - t
        n_out = sum(len(o) for o in outs)
        assert n_out == len(texts)
        tps = len(texts) / dt
        rows.append((bs, w, tps, s.mean))
        print(
            f"batch {bs:>5} tokenizer procs {w:>3} arrow batch {arrow:>7}: {tps:>10,.0f} texts/s  "
            f"GPU util {s.mean:5.1f}%",
            flush=True,
        )
        if tps > best[0]:
            best = (tps, (bs, w))
        enc.close()
        del enc
        torch.cuda.empty_cache()

    # where the time goes, at the best setting
    bs, w = best[1]
    enc = TextEncoder(args.model, device="cuda", batch_size=bs)
    order = np.argsort([len(x) for x in texts], kind="stable")
    chunks = [[texts[j] for j in order[i : i + bs]] for i in range(0, len(texts), bs)]
    t = time.perf_counter()
    toks = [enc.tokenize(c) for c in chunks]
    tok_s = time.perf_counter() - t
    with torch.inference_mode():
        enc._forward(*toks[0])
        torch.cuda.synchronize()
        t = time.perf_counter()
        for ids, mask in toks:
            enc._forward(ids, mask)
        torch.cuda.synchronize()
        fwd_s = time.perf_counter() - t
    mean_tokens = float(np.mean([m.sum(1).mean() for _, m in toks]))
    print(
        "tokenization alone, one process (Rust encode_batch + numpy pad): "
        f"{len(texts) / tok_s:,.0f} texts/s"
    )
    print(
        "fp16 forward + pooling alone on pre-tokenized length-sorted batches: "
        f"{len(texts) / fwd_s:,.0f} texts/s (mean {mean_tokens:.1f} tokens/text)"
    )

    if args.reference:
        ref = np.load(args.reference)
        got = TextEncoder(args.model, device="cuda", batch_size=bs).encode(texts[: len(ref)])
        cos = (got * ref).sum(1)
        print(
            f"fp16 GPU vs fp32 CPU reference on {len(ref)} texts: max abs diff "
            f"{np.abs(got - ref).max():.2e}, min cosine {cos.min():.6f}"
        )
    print(
        f"RESULT texts_per_s={best[0]:.0f} gpu={gpu.replace(' ', '_')} batch={bs} "
        f"tokenizer_procs={w}"
    )


if __name__ == "__main__":
    main()
