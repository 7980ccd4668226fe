"""CPU scoring throughput: the Spark scoring UDF vs a plain torch loop, same users, same machine.

    python benchmarks/score_cpu.py [--users 100000] [--items 20000]

Both score the same users with the same artifact: the plain loop runs
encode -> model (``SequenceModel.infer``, the model's scoring call, with the item
vectors computed once) -> user x item scores -> top-K in one process over pandas
batches; the Spark path runs the product's ``mapInArrow`` UDF (model loaded once
per worker, Arrow decode, lifecycle strategies, interest pooling, category cap,
both explanations, Arrow output) and writes to a no-op sink. Spark start-up is
excluded and reported. The two are timed ``--repeats`` times, interleaved
(plain, UDF, plain, UDF, ...); the ratio of the medians is printed with the
range of the per-pair ratios. Then one more UDF run with the scorer's steps
timed inside the Python workers (``--breakdown``, on by default): waiting for
Spark's next input batch, decode, encode, model, strategies, scores/top-K,
explanations, output, and handing the output back to Spark, summed over the
workers (worker-seconds: two workers run at once on ``local[2]``). Last line:
RESULT udf_over_torch=<median> low=<min> high=<max> users=<n> repeats=<r>
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

from harness import ROOT, make_artifact, users_frame


def main():
    import numpy as np
    import torch

    from lifecycle_recs.adapters.udfs import score_users
    from lifecycle_recs.config import RecommendConf, SparkSettings
    from lifecycle_recs.ml.features import Batch, encode_last
    from lifecycle_recs.ml.scorer import load_scorer
    from lifecycle_recs.spark import get_spark, sql_conf

    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--breakdown", type=int, default=1)
    args = p.parse_args()
    work = os.path.join(ROOT, ".bench", "score_cpu")
    shutil.rmtree(work, ignore_errors=True)
    art = make_artifact(os.path.join(work, "artifacts"), args.items)
    users = users_frame(args.users, args.items)
    conf = RecommendConf(k=10, chunk_size=1024)

    sc = load_scorer(art, "cpu")
    model, iv = sc.art.model, sc.item_vectors

    def plain_loop():
        t = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(users), args.batch):
                b = users.iloc[i : i + args.batch]
                enc = encode_last(b, sc.art.vocab, 50)
                enc["length"] = np.maximum(enc["length"], 1)
                out = model.infer(Batch.from_arrays(enc), iv)
                torch.sigmoid(out["churn_logit"])
                for lo in range(0, len(b), conf.chunk_size):
                    s = out["user"][lo : lo + conf.chunk_size] @ iv.T
                    s[:, :2] = -float("inf")
                    s.topk(conf.k, dim=1)
        return time.perf_counter() - t

    t = time.perf_counter()
    spark = get_spark(SparkSettings(shuffle_partitions=4, driver_memory="6g"))
    spark.range(1).count()
    start_s = time.perf_counter() - t
    sdf = spark.createDataFrame(users).repartition(4).persist()
    sdf.count()

    def udf_run():
        with sql_conf(spark, {"spark.sql.execution.arrow.maxRecordsPerBatch": str(args.batch)}):
            t = time.perf_counter()
            score_users(sdf, art, conf, "cpu").write.format("noop").mode("overwrite").save()
            return time.perf_counter() - t

    udf_run()  # loads the model into the Python workers once, as a nightly run's first batch does
    plain, udf = [], []
    for r in range(args.repeats):
        plain.append(plain_loop())
        udf.append(udf_run())
        print(
            f"run {r + 1}: plain torch loop {len(users) / plain[-1]:,.0f} users/s "
            f"({plain[-1]:.1f}s), Spark scoring UDF {len(users) / udf[-1]:,.0f} users/s "
            f"({udf[-1]:.1f}s)",
            flush=True,
        )
    ratios = [p / u for p, u in zip(plain, udf)]
    print(
        f"Spark start {start_s:.1f}s (excluded); median plain {len(users) / np.median(plain):,.0f} "
        f"users/s, median UDF {len(users) / np.median(udf):,.0f} users/s"
    )
    if args.breakdown:
        udf_breakdown(spark, sdf, art, conf, args.batch, os.path.join(work, "steps"), len(users))
    print(
        f"RESULT udf_over_torch={np.median(plain) / np.median(udf):.3f} low={min(ratios):.3f} "
        f"high={max(ratios):.3f} users={len(users)} repeats={args.repeats}"
    )


def udf_breakdown(spark, sdf, art: str, conf, batch: int, out_dir: str, n_users: int) -> None:
    """The product's UDF body (``score_stream``'s CPU path: prepare + run_prepared)
    with every step timed in the worker; each task writes its timings to a file."""
    import glob
    import json
    import uuid

    from lifecycle_recs.adapters.udfs import worker_cached
    from lifecycle_recs.ml.scorer import Steps, load_scorer, prepare, run_prepared
    from lifecycle_recs.schemas import SCORED_SCHEMA
    from lifecycle_recs.spark import sql_conf

    os.makedirs(out_dir, exist_ok=True)

    def run(batches):
        sc = worker_cached(("scorer", art, "cpu"), lambda: load_scorer(art, "cpu"))
        steps = Steps(sc.device)
        it = iter(batches)
        while True:
            with steps("Spark: next input batch"):
                rb = next(it, None)
            if rb is None:
                break
            if rb.num_rows:
                out = run_prepared(prepare(rb, sc, steps), sc, conf, steps)
                with steps("Spark: take the output"):
                    yield out
        with open(os.path.join(out_dir, f"{uuid.uuid4().hex}.json"), "w") as fh:
            json.dump(dict(steps.timings), fh)

    with sql_conf(spark, {"spark.sql.execution.arrow.maxRecordsPerBatch": str(batch)}):
        t = time.perf_counter()
        sdf.mapInArrow(run, SCORED_SCHEMA).write.format("noop").mode("overwrite").save()
        wall = time.perf_counter() - t
    total: dict = {}
    for f in glob.glob(os.path.join(out_dir, "*.json")):
        for k, v in json.load(open(f)).items():
            total[k] = total.get(k, 0.0) + v
    busy = sum(total.values())
    print(
        f"\nUDF path, steps inside the Python workers (one timed run, wall {wall:.1f}s, "
        f"{n_users / wall:,.0f} users/s; worker-seconds summed over the workers):"
    )
    print("| step | worker-s | share of worker time |")
    print("|---|---|---|")
    for k, v in sorted(total.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {v:.2f} | {v / busy:.1%} |")
    print(
        "RESULT udf_steps "
        + " ".join(
            f"{k.split(': ')[-1].replace(' ', '_').replace('/', '_')}={v / busy:.3f}"
            for k, v in total.items()
        )
    )


if __name__ == "__main__":
    main()
