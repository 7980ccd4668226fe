"""Seeded synthetic e-commerce data at any scale.

Items have real-looking titles, categories, descriptions and prices. Users
arrive over time, hold latent category interests that drift, browse in sessions
through a view -> click -> add_to_cart -> purchase funnel, churn with a daily
hazard and sometimes come back (reactivation).

Events are generated inside Spark tasks (``mapInPandas`` over user-id ranges),
one user at a time from a per-user seed, so any number of events can be written
without the driver holding them and the output does not depend on partitioning.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterator, List

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from lifecycle_recs.config import SyntheticConf

CATEGORIES = {
    "Electronics": (
        ["Wireless", "Bluetooth", "Smart", "Portable", "4K", "Noise-Cancelling", "USB-C"],
        ["Headphones", "Speaker", "Charger", "Monitor", "Webcam", "Keyboard", "Router"],
        80.0,
    ),
    "Books": (
        ["Illustrated", "Paperback", "Hardcover", "Collected", "Annotated", "Pocket"],
        [
            "Mystery Novel",
            "Cookbook",
            "History of Rome",
            "Poetry Anthology",
            "Sci-Fi Saga",
            "Field Guide",
        ],
        18.0,
    ),
    "Home & Kitchen": (
        ["Stainless", "Non-Stick", "Ceramic", "Cast-Iron", "Bamboo", "Glass"],
        ["Frying Pan", "Knife Set", "Mixing Bowls", "Coffee Grinder", "Cutting Board", "Teapot"],
        35.0,
    ),
    "Sports & Outdoors": (
        ["Lightweight", "Waterproof", "Insulated", "Foldable", "Trail", "Pro"],
        ["Running Shoes", "Tent", "Yoga Mat", "Water Bottle", "Backpack", "Bike Helmet"],
        55.0,
    ),
    "Beauty": (
        ["Hydrating", "Organic", "Vitamin C", "Fragrance-Free", "Matte", "Daily"],
        ["Face Serum", "Moisturizer", "Lip Balm", "Shampoo", "Sunscreen SPF 50", "Body Wash"],
        22.0,
    ),
    "Toys & Games": (
        ["Classic", "Educational", "Wooden", "Deluxe", "Family", "Magnetic"],
        [
            "Puzzle 1000 pcs",
            "Board Game",
            "Building Blocks",
            "Card Game",
            "Plush Bear",
            "Train Set",
        ],
        28.0,
    ),
    "Grocery": (
        ["Organic", "Fair-Trade", "Gluten-Free", "Roasted", "Raw", "Spiced"],
        ["Coffee Beans", "Green Tea", "Olive Oil", "Dark Chocolate", "Granola", "Honey"],
        12.0,
    ),
    "Fashion": (
        ["Slim-Fit", "Linen", "Merino", "Denim", "Vintage", "Quilted"],
        ["Jacket", "Shirt", "Sneakers", "Scarf", "Jeans", "Dress"],
        45.0,
    ),
    "Garden": (
        ["Heirloom", "Self-Watering", "Solar", "Ergonomic", "Compact", "Weatherproof"],
        ["Tomato Seeds", "Planter", "Garden Lights", "Pruning Shears", "Hose Reel", "Bird Feeder"],
        25.0,
    ),
    "Automotive": (
        ["Heavy-Duty", "Universal", "Magnetic", "LED", "All-Weather", "Quick-Release"],
        ["Phone Mount", "Floor Mats", "Jump Starter", "Dash Cam", "Tire Inflator", "Seat Cover"],
        40.0,
    ),
    "Pet Supplies": (
        ["Chew-Proof", "Orthopedic", "Grain-Free", "Reflective", "Automatic", "Cozy"],
        ["Dog Bed", "Cat Tree", "Leash", "Pet Food 5kg", "Litter Box", "Bird Cage"],
        30.0,
    ),
    "Office": (
        ["Ergonomic", "Recycled", "Refillable", "Adjustable", "Minimalist", "Premium"],
        ["Desk Lamp", "Notebook", "Fountain Pen", "Chair Cushion", "Planner 2027", "Stapler"],
        20.0,
    ),
    "Music": (
        ["Acoustic", "Digital", "Vintage", "Studio", "Travel", "Electric"],
        ["Guitar Strings", "Keyboard 61-Key", "Ukulele", "Microphone", "Drum Pad", "Metronome"],
        60.0,
    ),
    "Health": (
        ["Daily", "Extra-Strength", "Plant-Based", "Sugar-Free", "Time-Release", "Natural"],
        ["Multivitamin", "Protein Powder", "Omega-3", "Electrolyte Mix", "Sleep Aid", "Probiotic"],
        26.0,
    ),
    "Baby": (
        ["Soft", "BPA-Free", "Hypoallergenic", "Convertible", "Organic Cotton", "Travel"],
        ["Stroller", "Bottle Set", "Onesie", "Car Seat", "Baby Monitor", "Teether"],
        50.0,
    ),
    "Video Games": (
        ["Collector's", "Open-World", "Co-op", "Retro", "Racing", "Strategy"],
        ["Adventure Game", "Controller", "Gaming Headset", "Shooter", "RPG", "Simulator"],
        50.0,
    ),
}
BRANDS = [
    "Acme",
    "Nordhaven",
    "Kestrel",
    "Lumio",
    "Orchard & Co",
    "Vantage",
    "Pinecrest",
    "Solstice",
    "Bluefin",
    "Maple Lane",
    "Helix",
    "Tandem",
    "Corvid",
    "Quartz",
    "Juniper",
    "Atlas",
]
FUNNEL = ("view", "click", "add_to_cart", "purchase")

# raw log columns, all strings (Spark DDL); pyspark is imported only where Spark runs,
# so the catalog can be built on a machine without it (GPU benchmarks)
RAW_EVENT_SCHEMA = (
    "event_user string, sku string, action string, ts string, revenue string, qty string"
)


def item_catalog(conf: SyntheticConf) -> pd.DataFrame:
    """The synthetic catalog (small: one row per item), deterministic in ``conf.seed``."""
    rng = np.random.default_rng([conf.seed, 1])
    cats = list(CATEGORIES)[: max(1, min(conf.n_categories, len(CATEGORIES)))]
    rows = []
    for i in range(conf.n_items):
        cat = cats[i % len(cats)]
        adjs, nouns, base_price = CATEGORIES[cat]
        brand = BRANDS[rng.integers(len(BRANDS))]
        adj = adjs[rng.integers(len(adjs))]
        noun = nouns[rng.integers(len(nouns))]
        variant = rng.integers(1, 9)
        title = f"{brand} {adj} {noun}" + (f" (Series {variant})" if variant > 5 else "")
        price = float(np.round(base_price * rng.lognormal(0.0, 0.5), 2))
        desc = (
            f"{adj} {noun.lower()} by {brand} in our {cat.lower()} range. "
            f"{'Bestseller. ' if rng.random() < 0.1 else ''}Ships in {int(rng.integers(1, 6))} "
            "days."
        )
        rows.append((f"I{i:06d}", title, cat, desc, price, int(2015 + rng.integers(0, 12))))
    return pd.DataFrame(
        rows, columns=["item_id", "title", "category", "description", "price", "year"]
    )


def _latent(u: int, conf: SyntheticConf, n_cat: int):
    """A user's latent draws, in the order :func:`_user_events` makes them (so they can
    be replayed for the ground truth): rng, arrival day, session start days, views
    per session, and the two category preferences the interests drift between."""
    rng = np.random.default_rng([conf.seed, 2, u])
    days = conf.days
    # 35% of users exist at the start, the rest arrive uniformly over time.
    arrival = 0.0 if rng.random() < 0.35 else rng.uniform(0, days)
    rate = conf.sessions_per_day * rng.lognormal(0.0, 0.8)
    hazard = conf.churn_hazard_per_day * rng.lognormal(0.0, 0.6)
    spans = []
    t = arrival
    while t < days and len(spans) < 6:
        life = rng.exponential(1.0 / hazard)
        spans.append((t, min(days, t + life)))
        if rng.random() > conf.reactivation_probability:
            break
        t = t + life + rng.exponential(90.0) + 30.0
    starts = []
    for a, b in spans:
        n = rng.poisson(rate * (b - a))
        starts.append(rng.uniform(a, b, n))
    s = np.sort(np.concatenate(starts)) if starts else np.zeros(0)
    if len(s) == 0:  # every user has at least one session
        s = np.array([min(arrival, days - 1e-3)])
    n_views = 1 + rng.poisson(conf.views_per_session - 1, len(s))
    # latent interests drift from pref0 to pref1 over the user's life
    pref0 = rng.dirichlet(np.full(n_cat, 0.3))
    pref1 = rng.dirichlet(np.full(n_cat, 0.3))
    return rng, arrival, s, n_views, pref0, pref1


def _drift(day, arrival: float, days: int):
    return np.clip((day - arrival) / max(1.0, days - arrival), 0, 1)


def true_interests(conf: SyntheticConf, user_ids, at_date: str) -> pd.DataFrame:
    """The generator's ground truth: each user's category distribution of views on
    ``at_date`` ((1 - w) pref0 + w pref1, w the drift of the user's life so far).
    One row per (user, category): user_id, category, affinity. For small reports."""
    cats = sorted(item_catalog(conf)["category"].unique())
    day = (dt.date.fromisoformat(at_date) - dt.date.fromisoformat(conf.start_date)).days
    rows = []
    for u in user_ids:
        _, arrival, _, _, pref0, pref1 = _latent(int(u), conf, len(cats))
        w = float(_drift(day, arrival, conf.days))
        for c, a in zip(cats, (1 - w) * pref0 + w * pref1):
            rows.append((f"U{int(u):08d}", c, float(a)))
    return pd.DataFrame(rows, columns=["user_id", "category", "affinity"])


def _user_events(
    u: int,
    conf: SyntheticConf,
    cat_of: np.ndarray,
    pop_by_cat: list,
    price: np.ndarray,
    start: np.datetime64,
) -> pd.DataFrame:
    n_cat = len(pop_by_cat)
    rng, arrival, s, n_views, pref0, pref1 = _latent(u, conf, n_cat)
    sess_of_view = np.repeat(np.arange(len(s)), n_views)
    nv = len(sess_of_view)
    w = _drift(s[sess_of_view], arrival, conf.days)
    # sample category per view: mixture of the two preferences
    use1 = rng.random(nv) < w
    c0 = rng.choice(n_cat, nv, p=pref0)
    c1 = rng.choice(n_cat, nv, p=pref1)
    cats = np.where(use1, c1, c0)
    # sessions stick to one category most of the time
    sess_cat = cats[np.searchsorted(sess_of_view, np.arange(len(s)))]
    stick = rng.random(nv) < 0.6
    cats = np.where(stick, sess_cat[sess_of_view], cats)
    items = np.empty(nv, dtype=np.int64)
    for c in np.unique(cats):
        m = cats == c
        ids, p = pop_by_cat[c]
        items[m] = ids[rng.choice(len(ids), m.sum(), p=p)]
    offset = np.cumsum(rng.exponential(45.0, nv))  # seconds between views in a session
    first_of_sess = np.searchsorted(sess_of_view, sess_of_view)
    offset = offset - offset[first_of_sess] + 1.0
    view_t = s[sess_of_view] * 86400.0 + offset
    # funnel: each view may go further
    depth = np.zeros(nv, dtype=np.int64)
    p_next = (0.35, 0.3, 0.45)
    for k, p in enumerate(p_next):
        depth += (depth == k) & (rng.random(nv) < p)
    reps = depth + 1
    idx = np.repeat(np.arange(nv), reps)
    step = np.arange(len(idx)) - np.repeat(np.cumsum(reps) - reps, reps)
    ev_t = view_t[idx] + step * rng.uniform(5, 120, len(idx))
    etype = np.array(FUNNEL)[step]
    it = items[idx]
    qty = np.where(step == 3, 1 + rng.poisson(0.3, len(idx)), 1)
    revenue = np.where(step == 3, price[it] * qty, 0.0)
    ts = start + (ev_t * 1e6).astype("timedelta64[us]")
    return pd.DataFrame(
        {
            "event_user": f"U{u:08d}",
            "sku": np.char.add("I", np.char.zfill(it.astype(str), 6)),
            "action": etype,
            "ts": pd.to_datetime(ts).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "revenue": np.round(revenue, 2).astype(str),
            "qty": qty.astype(str),
        }
    )


def _corrupt(df: pd.DataFrame, rng: np.random.Generator, conf: SyntheticConf) -> pd.DataFrame:
    """Add a few malformed rows and exact duplicates, as real logs have."""
    n = len(df)
    n_bad = rng.binomial(n, conf.bad_row_fraction)
    n_dup = rng.binomial(n, conf.duplicate_fraction)
    parts = [df]
    if n_dup:
        parts.append(df.iloc[rng.integers(0, n, n_dup)])
    if n_bad:
        bad = df.iloc[rng.integers(0, n, n_bad)].copy()
        kind = rng.integers(0, 5, n_bad)
        bad.loc[kind == 0, "event_user"] = None
        bad.loc[kind == 1, "ts"] = "not-a-time"
        bad.loc[kind == 2, "action"] = "hover"
        bad.loc[kind == 3, "revenue"] = "-5.0"
        bad.loc[kind == 4, "revenue"] = "abc"
        parts.append(bad)
    return pd.concat(parts, ignore_index=True)


def generate_events(spark, conf: SyntheticConf, n_users: int | None = None):
    """Raw synthetic events (all strings, as a log would be) as a lazy DataFrame.

    Columns: event_user, sku, action, ts ('YYYY-mm-dd HH:MM:SS.ffffff' UTC),
    revenue, qty. Includes ``bad_row_fraction`` malformed rows and
    ``duplicate_fraction`` exact duplicates.
    """
    n_users = n_users or conf.n_users
    catalog = item_catalog(conf)
    cats = sorted(catalog["category"].unique())
    cat_of = catalog["category"].map({c: i for i, c in enumerate(cats)}).to_numpy()
    price = catalog["price"].to_numpy()
    pop_rng = np.random.default_rng([conf.seed, 3])
    pop_by_cat = []
    for c in range(len(cats)):
        ids = np.flatnonzero(cat_of == c)
        w = 1.0 / np.arange(1, len(ids) + 1) ** 0.9  # Zipf popularity within a category
        pop_rng.shuffle(w)
        pop_by_cat.append((ids, w / w.sum()))
    start = np.datetime64(dt.date.fromisoformat(conf.start_date), "us")

    def gen(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for b in batches:
            for lo in range(0, len(b), 256):
                ids = b["id"].to_numpy()[lo : lo + 256]
                frames = [_user_events(int(u), conf, cat_of, pop_by_cat, price, start) for u in ids]
                out = pd.concat(frames, ignore_index=True)
                yield _corrupt(out, np.random.default_rng([conf.seed, 4, int(ids[0])]), conf)

    users = spark.range(0, n_users, 1, numPartitions=max(1, conf.partitions))
    return users.mapInPandas(gen, RAW_EVENT_SCHEMA)


def write_raw(spark, conf: SyntheticConf, path: str, n_users: int | None = None) -> str:
    """Generate raw events and the catalog as Parquet under ``path`` (events/ and items/)."""
    generate_events(spark, conf, n_users).write.mode("overwrite").parquet(f"{path}/events")
    spark.createDataFrame(item_catalog(conf)).write.mode("overwrite").parquet(f"{path}/items")
    return path


def delivery_day():
    """The day a raw row is delivered on: the date its time stamp names; a malformed one
    comes with the first delivery."""
    from pyspark.sql import functions as F

    day = F.to_date(F.try_to_timestamp(F.substring("ts", 1, 10), F.lit("yyyy-MM-dd")))
    return F.coalesce(day, F.lit("0001-01-01").cast("date"))


def deliver(spark, conf: SyntheticConf, path: str, n_users: int | None = None) -> List[str]:
    """A landing zone fed one folder per day, as a real source is: the events are generated
    once under ``path/_generated/`` (with the catalog in ``path/items/``); each call moves the
    days up to ``conf.deliver_through`` (every day when None) that are not delivered yet to
    ``path/events/day=YYYY-MM-DD/``. Returns the days delivered by this call."""
    from pyspark.sql import functions as F

    from lifecycle_recs.fs import filesystem

    staged = f"{path}/_generated/events"
    fs, root = filesystem(staged)
    if fs.get_file_info(f"{root}/_SUCCESS").type == pafs.FileType.NotFound:
        write_raw(spark, conf, f"{path}/_generated", n_users)
        spark.read.parquet(f"{path}/_generated/items").write.mode("overwrite").parquet(
            f"{path}/items"
        )
    fs, landing = filesystem(f"{path}/events")
    selector = pafs.FileSelector(landing, allow_not_found=True)
    have = {i.base_name[4:] for i in fs.get_file_info(selector) if i.base_name.startswith("day=")}
    rows = spark.read.parquet(staged).withColumn("day", delivery_day())
    if conf.deliver_through:
        rows = rows.where(F.col("day") <= F.lit(conf.deliver_through).cast("date"))
    if have:
        rows = rows.where(~F.col("day").cast("string").isin(sorted(have)))
    days = sorted(str(r[0]) for r in rows.select("day").distinct().collect())  # <= days
    if days:
        rows.repartition("day").write.mode("append").partitionBy("day").parquet(f"{path}/events")
    return days


def events_per_user(conf: SyntheticConf, n: int = 300) -> float:
    """Mean raw events per user, from a small in-process sample (to size a run)."""
    catalog = item_catalog(conf)
    cats = sorted(catalog["category"].unique())
    cat_of = catalog["category"].map({c: i for i, c in enumerate(cats)}).to_numpy()
    pop = [(np.flatnonzero(cat_of == c), None) for c in range(len(cats))]
    pop = [(ids, np.full(len(ids), 1.0 / len(ids))) for ids, _ in pop]
    start = np.datetime64(dt.date.fromisoformat(conf.start_date), "us")
    total = sum(
        len(_user_events(u, conf, cat_of, pop, catalog["price"].to_numpy(), start))
        for u in range(n)
    )
    return total / n
