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

    from lifecycle_recs.config import RecommendConf, SparkSettings
    from lifecycle_recs.ml.features import Batch, encode_last
    from lifecycle_recs.ml.scorer import load_scorer
    from lifecycle_recs.spark import get_spark, sql_conf
    from lifecycle_recs.udfs import score_users

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
    model, iv = sc.art.model, sc.items.vectors
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(users), args.batch):
            b = users.iloc[i:i + args.batch]
            enc = encode_last(b, sc.art.vocab, 50)
            enc["length"] = np.maximum(enc["length"], 1)
            out = model(Batch.from_arrays(enc))
            torch.sigmoid(out["churn_logit"])
            for lo in range(0, len(b), conf.chunk_size):
                s = out["user"][lo:lo + conf.chunk_size] @ iv.T
                s[:, :2] = -float("inf")
                s.topk(conf.k, dim=1)
    torch_s = time.perf_counter() - t
    print(f"plain torch loop: {len(users) / torch_s:,.0f} users/s ({torch_s:.1f}s)", flush=True)

    t = time.perf_counter()
    spark = get_spark(SparkSettings(shuffle_partitions=4, driver_memory="6g"))
    spark.range(1).count()
    start_s = time.perf_counter() - t
    sdf = spark.createDataFrame(users).repartition(4).persist()
    sdf.count()
    with sql_conf(spark, {"spark.sql.execution.arrow.maxRecordsPerBatch": str(args.batch)}):
        t = time.perf_counter()
        score_users(sdf, art, conf, "cpu").write.format("noop").mode("overwrite").save()
        udf_s = time.perf_counter() - t
    print(f"Spark scoring UDF: {len(users) / udf_s:,.0f} users/s ({udf_s:.1f}s; Spark start {start_s:.1f}s, "
          f"excluded)", flush=True)
    print(f"RESULT udf_over_torch={torch_s / udf_s:.3f} users={len(users)}")


if __name__ == "__main__":
    main()
