"""CPU scoring throughput: the Spark scoring UDF vs a plain torch loop, same users, same machine.

    python benchmarks/score_cpu.py [--users 100000] [--items 20000]

Both score the same users with the same artifact: the plain loop runs
encode -> model -> user x item scores -> top-K in one process over pandas
batches; the Spark path runs the product's mapInPandas UDF (model loaded once per
worker, lifecycle strategies, category cap, explanations) and writes to a no-op
sink. Spark start-up is excluded and reported. Last line:
RESULT udf_over_torch=<x> users=<n>
"""
from __future__ import annotations

import argparse
import os
import shutil
import time

from score_common import ROOT, make_artifact, users_frame


def main():
    import numpy as np
    import torch

    from lifecycle_recs.config import RecommendConf, SparkConf
    from lifecycle_recs.scoring import load_scorer, score_users
    from lifecycle_recs.spark import get_spark
    from lifecycle_recs.training import encode_last

    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=4096)
    args = p.parse_args()
    work = os.path.join(ROOT, ".bench", "score_cpu")
    shutil.rmtree(work, ignore_errors=True)
    art = make_artifact(os.path.join(work, "artifacts"), args.items)
    users = users_frame(args.users, args.items)
    conf = RecommendConf(k=10, chunk_size=1024)

    # plain torch loop
    sc = load_scorer(art, "cpu")
    model, iv = sc.art.model, sc.item_vecs
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(users), args.batch):
            b = users.iloc[i:i + args.batch]
            enc = encode_last(b, sc.art.vocab, 50)
            tt = {k: torch.as_tensor(v) for k, v in enc.items()}
            out = model(tt["items"], tt["events"], tt["gaps"], tt["values"], tt["length"].clamp(min=1), tt["feats"])
            torch.sigmoid(out["churn_logit"])
            for lo in range(0, len(b), conf.chunk_size):
                s = out["user"][lo:lo + conf.chunk_size] @ iv.T
                s[:, :2] = -float("inf")
                s.topk(conf.k, dim=1)
    torch_s = time.perf_counter() - t
    print(f"plain torch loop: {len(users) / torch_s:,.0f} users/s ({torch_s:.1f}s)", flush=True)

    t = time.perf_counter()
    spark = get_spark(SparkConf(shuffle_partitions=4, driver_memory="6g"))
    spark.range(1).count()
    start_s = time.perf_counter() - t
    sdf = spark.createDataFrame(users).repartition(4).persist()
    sdf.count()
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.batch))
    t = time.perf_counter()
    score_users(sdf, art, conf, "cpu").write.format("noop").mode("overwrite").save()
    udf_s = time.perf_counter() - t
    print(f"Spark scoring UDF: {len(users) / udf_s:,.0f} users/s ({udf_s:.1f}s; Spark start {start_s:.1f}s, "
          f"excluded)", flush=True)
    print(f"RESULT udf_over_torch={torch_s / udf_s:.3f} users={len(users)}")


if __name__ == "__main__":
    main()
