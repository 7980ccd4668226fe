"""MovieLens-100K quality: our sequence model vs most-popular and Spark ALS,
beside RecBole's GRU4Rec / SASRec figures, under the RecBole protocol
(chronological leave-one-out, full ranking, seen items not removed, max 50 steps).

    python benchmarks/movielens_quality.py [--seeds 2020 2021 2022] [--epochs 200]

Reads ../shared/datasets/ml-100k through the project's own ingest (RecBole source),
embeds the titles with the real MiniLM, builds examples in Spark and feeds them
through petastorm. Churn: snapshot T = 1998-03-01, H = 30 days; the model is
trained on T-30 (labels (T-30, T]) and scored at T against (T, T+30], beside the
recency baseline. Writes evaluation_metrics (Delta) and a report under
.bench/ml100k/report/. Last line:
RESULT hit10=<x> ndcg10=<y> mrr10=<z> churn_auc=<a> recency_auc=<b>
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time

from harness import ROOT

ML = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "ml-100k")
RECBOLE = {
    "GRU4Rec (RecBole)": (0.1319, 0.0665, 0.0470),
    "SASRec (RecBole)": (0.1255, 0.0600, 0.0406),
    "most popular (RecBole)": (0.0498, 0.0226, 0.0143),
}


def als_factors(
    spark,
    triples,
    n_items: int,
    rank: int = 32,
    reg: float = 0.05,
    alpha: float = 10.0,
    seed: int = 2020,
    max_iter: int = 10,
):
    """Spark MLlib ALS (implicit) on (user_index, item_index, count) rows.
    Returns user factors {user_index: vector} and an item factor matrix [n_items, rank]:
    on the driver, which is fine for this benchmark's 943 users (it lived in the
    library before; nothing in the product collects per-user factors)."""
    import numpy as np
    from pyspark.ml.recommendation import ALS

    df = spark.createDataFrame(triples, "user int, item int, rating float")
    model = ALS(
        rank=rank,
        regParam=reg,
        alpha=alpha,
        implicitPrefs=True,
        seed=seed,
        maxIter=max_iter,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        coldStartStrategy="drop",
    ).fit(df)
    items = np.zeros((n_items, rank), np.float32)
    for r in model.itemFactors.collect():  # one row per catalog item: small
        items[r["id"]] = r["features"]
    users = {r["id"]: np.asarray(r["features"], np.float32) for r in model.userFactors.collect()}
    return users, items


def main():
    import numpy as np
    import torch
    from pyspark.sql import functions as F

    from lifecycle_recs.adapters.feeding import build_vocab, examples, write_examples
    from lifecycle_recs.config import SequenceConf, config_from_dict
    from lifecycle_recs.data.sequences import build_sequences
    from lifecycle_recs.evaluation import nightly as E
    from lifecycle_recs.io import tables
    from lifecycle_recs.ml.feed import ParquetExampleStream, collect
    from lifecycle_recs.ml.metrics import rank_metrics
    from lifecycle_recs.ml.trainer import fit, rank_targets
    from lifecycle_recs.pipeline import run_nightly
    from lifecycle_recs.spark import get_spark

    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--encoder", default="lstm")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--item-dim", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.003)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--no-text", action="store_true")
    p.add_argument("--stride", type=int, default=10)
    p.add_argument(
        "--dump",
        default=None,
        help="save the prepared tensors here and stop (for tuning elsewhere)",
    )
    p.add_argument("--work", default=os.path.join(ROOT, ".bench", "ml100k"))
    args = p.parse_args()
    if not os.path.exists(os.path.join(ML, "ml-100k.inter")):
        sys.exit(f"MovieLens-100K not found at {ML}")
    cfg = config_from_dict(
        {
            "lakehouse": os.path.join(args.work, "lake"),
            "artifacts": os.path.join(args.work, "artifacts"),
            "reports": os.path.join(args.work, "report"),
            "source": {"kind": "recbole", "recbole_dir": ML, "recbole_dataset": "ml-100k"},
            "validation": {"event_types": ["rating"]},
            "sequences": {"max_length": 50, "value_event_types": ["rating"]},
            "lifecycle": {"horizon_days": 30, "churn_days": 30, "at_risk_days": 14},
            "embedding": {"text_columns": ["title", "year", "category"]},
            "model": {
                "encoder": args.encoder,
                "hidden_dim": args.hidden,
                "item_dim": args.item_dim,
                "dropout": args.dropout,
                "use_text": not args.no_text,
                "loss_weights": {"next_item": 1.0, "churn": 0.5, "value": 0.1},
            },
            "train": {
                "epochs": args.epochs,
                "patience": args.patience,
                "lr": args.lr,
                "batch_size": args.batch,
            },
            "stages": ["ingest", "embeddings"],
        },
        base=ROOT,
    )
    shutil.rmtree(args.work, ignore_errors=True)
    spark = get_spark(cfg.spark)
    t0 = time.perf_counter()
    run_nightly(spark, cfg, "1998-04-23", ["ingest", "embeddings"])
    vocab, text = build_vocab(spark, cfg)
    events = tables.read(spark, cfg, "events")
    # the whole history per user, for RecBole-style windows and leave-one-out
    full = build_sequences(
        events, "1998-12-31", SequenceConf(max_length=100000, value_event_types=("rating",))
    )
    ex = examples(full, vocab, 50, "windows", holdout=2, stride=args.stride).persist()
    feed = os.path.join(args.work, "feed")
    for split in ("train", "val", "test"):
        write_examples(ex.where(F.col("split") == split), os.path.join(feed, split), 4)
    train_t = ParquetExampleStream(
        os.path.join(feed, "train"), args.batch, shuffle=True, seed=args.seeds[0]
    )
    val_t, test_t = (
        collect(ParquetExampleStream(os.path.join(feed, s_), 4096, shuffle=False))
        for s_ in ("val", "test")
    )
    print(
        f"data ready in {time.perf_counter() - t0:.0f}s: {train_t.rows} training windows, "
        f"{val_t.size} val users, {test_t.size} test users",
        flush=True,
    )

    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
        torch.save(
            {
                "train": collect(train_t)._asdict(),
                "val": val_t._asdict(),
                "test": test_t._asdict(),
                "text": text,
                "vocab": vocab.to_json(),
            },
            os.path.join(args.dump, "ml100k_tensors.pt"),
        )
        return
    rows, results = [], {}
    for seed in args.seeds:
        t = time.perf_counter()
        train_t.seed = seed
        model, info = fit(
            train_t, val_t, vocab, text, cfg.model, dataclasses.replace(cfg.train, seed=seed)
        )
        dev = next(model.parameters()).device
        r = rank_targets(model, test_t, dev)
        ru = rank_targets(model, test_t, dev, exclude_seen=True)
        results[seed] = (rank_metrics(r, 10), rank_metrics(ru, 10))
        print(
            f"seed {seed}: {results[seed][0]}  unseen: {results[seed][1]}  epochs "
            f"{info['epochs_run']} ({time.perf_counter() - t:.0f}s)",
            flush=True,
        )
    ours = {
        k: float(np.mean([v[0][k] for v in results.values()])) for k in results[args.seeds[0]][0]
    }
    ours_unseen = {
        k: float(np.mean([v[1][k] for v in results.values()])) for k in results[args.seeds[0]][1]
    }

    # baselines on the same split, from the same ordering: training part = all but each user's last
    # 2 events
    steps = full.select(
        "user_id", F.posexplode("item_ids").alias("pos", "item_id"), "sequence_length"
    )
    train_part = steps.where(F.col("pos") < F.col("sequence_length") - 2)
    test_target = steps.where(F.col("pos") == F.col("sequence_length") - 1).select(
        "user_id", "item_id"
    )
    counts = (
        train_part.groupBy("user_id", "item_id").count().collect()
    )  # 100k ratings: a small benchmark
    users = sorted({r["user_id"] for r in counts})
    uidx = {u: i for i, u in enumerate(users)}
    iidx = vocab.item_index([r["item_id"] for r in counts])
    triples = [(uidx[r["user_id"]], int(i), float(r["count"])) for r, i in zip(counts, iidx)]
    pop = np.bincount(iidx, weights=[r["count"] for r in counts], minlength=vocab.n_items).astype(
        float
    )
    pop[:2] = -1
    tt = test_target.collect()
    targets = vocab.item_index([r["item_id"] for r in tt])
    popular = rank_metrics(E.popular_ranks(pop, targets), 10)
    uf, itf = als_factors(spark, triples, vocab.n_items, seed=args.seeds[0])
    als_r = []
    for r, tgt in zip(tt, targets):
        s_ = itf @ uf.get(uidx.get(r["user_id"], -1), np.zeros(itf.shape[1], np.float32))
        s_[:2] = -np.inf
        als_r.append((s_ > s_[tgt]).sum() + 1)
    als = rank_metrics(np.array(als_r), 10)

    # churn at T = 1998-03-01 with H = 30: train on T-30, score at T
    churn_rows, churn_plot = churn_eval(spark, cfg, vocab, text)

    D = "1998-04-23"
    for name, m in (("ours", ours), ("most_popular", popular), ("als", als)):
        rows += E.metric_rows(D, "ml-100k", name, name, "next_item", m)
    rows += E.metric_rows(D, "ml-100k", "ours", "ours", "next_item_unseen", ours_unseen)
    rows += churn_rows
    tables.replace_metric_rows(spark, cfg, rows, D, "ml-100k")
    report = E.write_report(
        cfg.reports,
        "MovieLens-100K quality",
        rows,
        churn_plot,
        notes=f"RecBole protocol; our figures are the mean of seeds {args.seeds}.",
    )

    print("\n| model | Hit@10 | NDCG@10 | MRR@10 |\n|---|---|---|---|")
    print(
        f"| ours ({args.encoder}, mean of {len(args.seeds)} seeds) | {ours['hit@10']:.4f} | "
        f"{ours['ndcg@10']:.4f} | {ours['mrr@10']:.4f} |"
    )
    print(
        f"| ours, seen items removed | {ours_unseen['hit@10']:.4f} | {ours_unseen['ndcg@10']:.4f} "
        f"| {ours_unseen['mrr@10']:.4f} |"
    )
    print(
        f"| most popular (this run) | {popular['hit@10']:.4f} | {popular['ndcg@10']:.4f} | "
        f"{popular['mrr@10']:.4f} |"
    )
    print(
        f"| Spark ALS implicit (this run) | {als['hit@10']:.4f} | {als['ndcg@10']:.4f} | "
        f"{als['mrr@10']:.4f} |"
    )
    for k, (h, n, m) in RECBOLE.items():
        print(f"| {k} | {h:.4f} | {n:.4f} | {m:.4f} |")
    ch = {r["model"] + ":" + r["metric"]: r["value"] for r in churn_rows}
    print(
        f"\nchurn within 30d at 1998-03-01: ours AUC {ch['ours:roc_auc']:.4f} PR-AUC "
        f"{ch['ours:pr_auc']:.4f} Brier {ch['ours:brier']:.4f}; recency AUC "
        f"{ch['recency:roc_auc']:.4f} PR-AUC {ch['recency:pr_auc']:.4f}"
    )
    print(f"report: {report}")
    print(
        f"RESULT hit10={ours['hit@10']:.4f} ndcg10={ours['ndcg@10']:.4f} "
        f"mrr10={ours['mrr@10']:.4f} churn_auc={ch['ours:roc_auc']:.4f} "
        f"recency_auc={ch['recency:roc_auc']:.4f}"
    )


def churn_eval(spark, cfg, vocab, text):
    """Train on T-H (labels (T-H, T]), score users at T, compare with days-since-last-event."""
    import numpy as np
    import torch

    from lifecycle_recs.adapters.feeding import examples, training_frame, write_examples
    from lifecycle_recs.data.lifecycle import build_lifecycle
    from lifecycle_recs.data.sequences import build_sequences
    from lifecycle_recs.evaluation import nightly as E
    from lifecycle_recs.io import tables
    from lifecycle_recs.ml.feed import ParquetExampleStream, collect
    from lifecycle_recs.ml.metrics import binary_metrics, calibration, lift_curve
    from lifecycle_recs.ml.trainer import fit, fit_heads

    events = tables.read(spark, cfg, "events")
    T, T1 = "1998-03-01", "1998-01-30"
    for d in (T1, T):
        seq = build_sequences(events, d, cfg.sequences)
        tables.write_snapshot(spark, cfg, "user_sequences", seq, d)
        lc = build_lifecycle(
            events,
            tables.read(spark, cfg, "user_sequences", d),
            d,
            cfg.lifecycle,
            cfg.sequences,
            True,
        )
        tables.write_snapshot(spark, cfg, "user_lifecycle", lc, d)
    feed = os.path.join(cfg.artifacts, "feed")
    write_examples(
        examples(training_frame(spark, cfg, T1), vocab, 50, "last"),
        os.path.join(feed, "churn_train"),
        4,
    )
    write_examples(
        examples(training_frame(spark, cfg, T), vocab, 50, "last"),
        os.path.join(feed, "churn_test"),
        4,
    )
    tr = ParquetExampleStream(
        os.path.join(feed, "churn_train"), cfg.train.batch_size, shuffle=True, seed=2020
    )
    te = collect(ParquetExampleStream(os.path.join(feed, "churn_test"), 4096, shuffle=False))
    model, _ = fit(
        tr,
        None,
        vocab,
        text,
        cfg.model,
        dataclasses.replace(cfg.train, seed=2020, epochs=30, patience=30),
    )
    fit_heads(model, tr, None, cfg.model.loss_weights, seed=2020)
    with torch.no_grad():
        p = torch.sigmoid(model(te)["churn_logit"]).numpy()
    y = te.churn.numpy()
    recency = np.expm1(te.feats[:, 0].numpy())  # days since last event (first feature, log1p)
    ours = binary_metrics(y, p)
    rec = binary_metrics(y, recency)
    rec.pop("brier")  # recency is a score, not a probability
    rows = E.metric_rows("1998-04-23", "ml-100k", "ours", "ours", "churn", ours)
    rows += E.metric_rows("1998-04-23", "ml-100k", "recency", "recency", "churn", rec)
    return rows, {"ours": {"calibration": calibration(y, p), "gain": lift_curve(y, p)}}


if __name__ == "__main__":
    main()
