"""Metrics of the recommended lists, as Spark aggregates (nothing per user reaches the
driver): per-user Recall/NDCG@k against a set of relevant items (the Spark twin of
``ml.metrics.set_metrics``), and point figures over all users of a night: how much two
users' lists overlap, how popular their items are against a reference, how peaked the
interests and ``because_items`` weights are (``catalog`` and ``explanations`` rows)."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window


def jaccard(recs: DataFrame, pairs: int, seed: int) -> Tuple[Optional[float], int]:
    """Mean Jaccard overlap of the top-K lists of random user pairs (users paired
    within hash buckets of about two), and the number of pairs."""
    lists = recs.groupBy("user_id").agg(F.collect_set("item_id").alias("s"))
    n = lists.count()
    if n < 2:
        return None, 0
    buckets = max(1, min(n // 2, pairs))
    b = lists.withColumn("b", F.abs(F.xxhash64("user_id", F.lit(seed))) % buckets)
    j = b.alias("a").join(b.alias("c"), "b").where(F.col("a.user_id") < F.col("c.user_id"))
    jac = F.size(F.array_intersect("a.s", "c.s")) / F.greatest(
        F.size(F.array_union("a.s", "c.s")), F.lit(1)
    )
    row = j.select(jac.alias("j")).limit(pairs).agg(F.avg("j"), F.count("*")).first()
    return (float(row[0]) if row[0] is not None else None), int(row[1])


def popularity_metrics(
    lists: Dict[str, DataFrame], sequences: DataFrame, catalog: DataFrame, head_fraction: float
) -> Dict[str, Tuple[float, float, int]]:
    """Popularity bias of item lists (point figures, one Spark job). Popularity is an
    item's number of events in ``sequences``; the items ranked are those of ``catalog``
    (item_id) and of the sequences. For each named frame of (user_id, item_id) rows:
    the mean popularity percentile of its items (``percent_rank``: 0 for the least
    frequent items, ties sharing the lower rank, 1 for the most frequent) and the share
    of its items outside the head (the ceil(``head_fraction`` x items) most frequent
    items, ties broken by item id); an item unknown to both counts as never seen.
    Returns name -> (mean percentile, long-tail share, users)."""
    counts = (
        sequences.select(F.explode("item_ids").alias("item_id"))
        .where(F.col("item_id").isNotNull())
        .groupBy("item_id")
        .agg(F.count(F.lit(1)).alias("events"))
    )
    items = (
        catalog.select("item_id")
        .unionByName(counts.select("item_id"))
        .distinct()
        .join(counts, "item_id", "left")
        .fillna(0, ["events"])
    )
    # one row per item: the windows run in one partition, as a catalog-sized frame may
    every = Window.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    ranked = items.select(
        "item_id",
        F.percent_rank().over(Window.orderBy("events")).alias("pct"),
        (
            F.row_number().over(Window.orderBy(F.desc("events"), "item_id"))
            <= F.ceil(F.count(F.lit(1)).over(every) * F.lit(float(head_fraction)))
        ).alias("head"),
    )
    union = None
    for name, df in lists.items():
        part = df.select(F.lit(name).alias("list"), "user_id", "item_id")
        union = part if union is None else union.unionByName(part)
    if union is None:
        return {}
    rows = (
        union.join(F.broadcast(ranked), "item_id", "left")
        .groupBy("list")
        .agg(
            F.avg(F.coalesce("pct", F.lit(0.0))).alias("pct"),
            F.avg(F.when(F.coalesce("head", F.lit(False)), 0.0).otherwise(1.0)).alias("tail"),
            F.countDistinct("user_id").alias("n"),
        )
        .collect()
    )  # small: one row per list
    return {r["list"]: (float(r["pct"]), float(r["tail"]), int(r["n"])) for r in rows}


def explanation_metrics(
    scored: DataFrame, seq: DataFrame, max_len: int, min_steps: int = 20
) -> Dict[str, tuple]:
    """Point figures (Spark aggregates) of how personal the interests and explanations are:
    the mean entropy of each user's top-category weights (renormalised) against the
    entropy of a uniform distribution over as many categories, and, for users with at
    least ``min_steps`` steps in the model's window, the largest weight of
    ``because_items`` (``ml.explain.step_relevance``) times the number of steps (1 for
    weights spread evenly, as raw attention over a long window nearly is).
    Returns name -> (ours, uniform, n)."""
    w = F.col("top_category_weights")
    total = F.aggregate(w, F.lit(0.0), lambda a, x: a + x)
    entropy = F.aggregate(
        w, F.lit(0.0), lambda a, x: a - F.when(x > 0, x / total * F.log(x / total)).otherwise(0.0)
    )
    ent = (
        scored.where((F.size(w) >= 2) & (total > 0))
        .agg(F.avg(entropy), F.avg(F.log(F.size(w).cast("double"))), F.count(F.lit(1)))
        .first()
    )
    steps = F.least(F.col("sequence_length"), F.lit(max_len))
    att = (
        scored.select("user_id", "because_weights")
        .join(seq.select("user_id", "sequence_length"), "user_id")
        .where((steps >= min_steps) & (F.size("because_weights") > 0))
        .agg(F.avg(F.array_max("because_weights") * steps), F.count(F.lit(1)))
        .first()
    )
    out = {}
    if ent[2]:
        out["top_category_entropy"] = (float(ent[0]), float(ent[1]), int(ent[2]))
    if att[1]:
        out[f"because_top_weight_x_steps[steps>={min_steps}]"] = (float(att[0]), 1.0, int(att[1]))
    return out


def ranking_per_user(recs: DataFrame, truth: DataFrame, k: int) -> DataFrame:
    """(user_id, recall, ndcg) of ranked recs (user_id, rank, item_id) against
    ``truth`` (user_id, items array) for each user with a non-empty truth; a user
    with no recommendations scores 0."""
    ranked = (
        recs.where(F.col("rank") <= k)
        .groupBy("user_id")
        .agg(F.array_sort(F.collect_list(F.struct("rank", "item_id"))).alias("r"))
    )
    j = (
        truth.where(F.size("items") > 0)
        .join(ranked, "user_id", "left")
        .withColumn("r", F.coalesce("r", F.array().cast("array<struct<rank:int,item_id:string>>")))
    )
    gains = F.transform(
        "r",
        lambda x: F.when(
            F.array_contains(F.col("items"), x["item_id"]), 1.0 / F.log2(x["rank"] + 1.0)
        ).otherwise(0.0),
    )
    hits = F.size(F.filter("r", lambda x: F.array_contains(F.col("items"), x["item_id"])))
    n_ideal = F.least(F.size("items"), F.lit(k))
    idcg = F.aggregate(
        F.sequence(F.lit(1), n_ideal), F.lit(0.0), lambda acc, i: acc + 1.0 / F.log2(i + 1.0)
    )
    return j.select(
        "user_id",
        (hits / F.size("items")).alias("recall"),
        (F.aggregate(gains, F.lit(0.0), lambda a, g: a + g) / idcg).alias("ndcg"),
    )


def set_metrics_spark(recs: DataFrame, truth: DataFrame, k: int) -> Dict[str, float]:
    """Per-user Recall@k / NDCG@k averaged over users with a non-empty truth (users
    without recommendations count 0). The Spark twin of ``ml.metrics.set_metrics``."""
    row = ranking_per_user(recs, truth, k).agg(F.avg("recall"), F.avg("ndcg"), F.count("*")).first()
    nan = float("nan")
    return {
        f"recall@{k}": float(row[0]) if row[0] is not None else nan,
        f"ndcg@{k}": float(row[1]) if row[1] is not None else nan,
        "users": float(row[2]),
    }
