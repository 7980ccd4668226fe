"""Does the model recover the synthetic generator's per-user interests?

    python benchmarks/nightly_quality.py --dataset demo      # or synthetic: writes the lakehouse
    python benchmarks/interest_recovery.py [--dataset demo]  # reads it

The demo generator (``lifecycle_recs/synthetic.py``) gives every user two latent
category preferences (Dirichlet(0.3) over 16 categories) and drifts from the first
to the second over the user's life; sessions stick to one category, items within a
category follow a Zipf popularity. ``synthetic.true_interests`` replays each user's
draws and returns the true category distribution on night D.

Per user of ``user_interests`` at D: the Spearman rank correlation over all
categories between the true distribution and the landed top-category weights
(the top ``recommend.top_categories``, 0 for the rest), and whether the top
category is the true top one; against, in the same run on the same users,
(a) the catalog-wide category mix of the events (everyone the same) and (b) the
user's own category frequencies over the whole sequence (the empirical history),
each cut to the same number of categories. Mean over users, with the paired
difference ours - baseline and a 95% bootstrap interval over users (a small report:
one row per user on the driver). Last lines:

RESULT dataset=<d> metric=<m> ours=<a> baseline=<name>:<b> diff=<d> low=<l> high=<h> n=<users>
"""

from __future__ import annotations

import argparse
import os

from harness import ROOT


def top_vector(weights: dict, cats: list, n: int):
    import numpy as np

    v = np.zeros(len(cats))
    for c, w in sorted(weights.items(), key=lambda kv: -kv[1])[:n]:
        v[cats.index(c)] = w
    return v


def main():
    import numpy as np
    from harness import conf_for
    from pyspark.sql import functions as F
    from scipy.stats import spearmanr

    from lifecycle_recs.data.synthetic.shop import item_catalog, true_interests
    from lifecycle_recs.io import tables
    from lifecycle_recs.spark import get_spark

    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="demo", choices=["demo", "synthetic"])
    p.add_argument("--work", default=None)
    p.add_argument("--bootstrap", type=int, default=1000)
    args = p.parse_args()
    work = args.work or os.path.join(ROOT, ".bench", f"quality_{args.dataset}")
    cfg = conf_for(args.dataset, work, 6000 if args.dataset == "synthetic" else 0)
    spark = get_spark(cfg.spark)
    d = tables.read(spark, cfg, "user_interests").agg(F.max("snapshot_date")).first()[0].isoformat()
    n_top = cfg.recommend.top_categories
    landed = {
        r["user_id"]: {x["category"]: x["weight"] for x in r["top_categories"]}
        for r in tables.read(spark, cfg, "user_interests", d)
        .select("user_id", "top_categories")
        .collect()
    }
    item_cat = {r["item_id"]: r["category"] for r in tables.read(spark, cfg, "items").collect()}
    history = {
        r["user_id"]: r["item_ids"]
        for r in tables.read(spark, cfg, "user_sequences", d)
        .select("user_id", "item_ids")
        .collect()
    }
    cats = sorted(item_catalog(cfg.synthetic)["category"].unique())
    mix = {
        r["category"]: r["n"]
        for r in tables.read(spark, cfg, "events")
        .where(F.col("event_date") <= d)
        .join(tables.read(spark, cfg, "items").select("item_id", "category"), "item_id")
        .groupBy("category")
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    }
    users = sorted(u for u in landed if landed[u] and u.startswith("U"))
    truth = true_interests(cfg.synthetic, [int(u[1:]) for u in users], d)
    true_by = {
        u: g.set_index("category")["affinity"].reindex(cats).to_numpy()
        for u, g in truth.groupby("user_id")
    }

    def hist_mix(u):
        out = {}
        for i in history.get(u) or []:
            c = item_cat.get(i)
            if c is not None:
                out[c] = out.get(c, 0) + 1
        return out

    scores = {"ours": [], "catalog_mix": [], "history_mix": []}
    top1 = {k: [] for k in scores}
    for u in users:
        t = true_by[u]
        for name, w in (("ours", landed[u]), ("catalog_mix", mix), ("history_mix", hist_mix(u))):
            v = top_vector(w, cats, n_top)
            rho = spearmanr(t, v).statistic if v.any() else 0.0
            scores[name].append(0.0 if np.isnan(rho) else rho)
            top1[name].append(float(v.any() and int(np.argmax(v)) == int(np.argmax(t))))
    rng = np.random.default_rng(17)
    n = len(users)
    idx = rng.integers(0, n, (args.bootstrap, n))
    print(
        f"{args.dataset}: D={d}, {n} users with landed interests, {len(cats)} categories, top "
        f"{n_top}"
    )
    print("| metric | ours | baseline | baseline value | ours - baseline [95%] |")
    print("|---|---|---|---|---|")
    lines = []
    for metric, vals in (("spearman_true_affinity", scores), ("top1_is_true_top", top1)):
        ours = np.array(vals["ours"])
        for base in ("catalog_mix", "history_mix"):
            b = np.array(vals[base])
            diff = ours - b
            lo, hi = np.quantile(diff[idx].mean(1), [0.025, 0.975])
            print(
                f"| {metric} | {ours.mean():.4f} | {base} | {b.mean():.4f} | {diff.mean():+.4f} "
                f"[{lo:+.4f}, {hi:+.4f}] |"
            )
            lines.append(
                f"RESULT dataset={args.dataset} metric={metric} ours={ours.mean():.4f} "
                f"baseline={base}:{b.mean():.4f} diff={diff.mean():.4f} low={lo:.4f} high={hi:.4f} "
                f"n={n}"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
