"""Property-based fuzz of ingest (hypothesis) against an independent pure-Python
oracle: batches of malformed rows (blank / unicode / over-long ids, bad, out of
range and future timestamps, NaN / inf / negative / huge values, bad quantities,
duplicates within and across batches, 1-4 partitions). Every count is checked
against the oracle, the stored events and quarantine rows equal the oracle's, a
rerun commits nothing, and nothing depends on the partitioning.

``FUZZ_EXAMPLES`` sets the number of examples (default 3, under a minute on 2 cores);
``benchmarks/fuzz_ingest.py`` runs a longer profile."""

import datetime as dt
import math
import os
import uuid
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from lifecycle_recs.config import ValidationConf
from lifecycle_recs.io import tables
from lifecycle_recs.stages.ingest import ingest
from tests.helpers import raw_source

COLS = ["raw_user_id", "raw_item_id", "raw_event_type", "raw_event_ts", "raw_value", "raw_quantity"]
V = ValidationConf()


def field(good, bad, weight=4):
    """Mostly good values (so that valid rows, duplicates and re-sent rows are common), some bad."""
    return st.sampled_from(list(good) * weight + list(bad))


users = field(["u1", "u2", " u1 ", "ü-ser", "東京", "🎉", "y" * 128], [None, "", "   ", "x" * 129])
items = field([None, "", "i1", "i2", "ítem"], ["z" * 129])
types = field(["view", "purchase", " VIEW ", "Click"], ["hover", "", None])
stamps = field(
    ["2026-03-01 10:00:00", "2026-03-02 00:00:00", "2026-03-02 23:59:59"],
    ["1850-01-01 00:00:00", "2099-06-01 00:00:00", "not-a-time", "", None],
)
values = field(
    [None, "", " ", "0", "1.5", " 7 ", "9999999"],
    ["-3", "abc", "NaN", "Infinity", "-Infinity", "1e20"],
)
quantities = field([None, "1", "2", "0"], ["-1", "x", ""])
row = st.tuples(users, items, types, stamps, values, quantities)


@st.composite
def batches(draw):
    """1-3 batches drawn with replacement from one pool of rows: duplicates within
    and across batches; each batch on 1-4 partitions."""
    pool = draw(st.lists(row, min_size=4, max_size=25))
    pick = st.lists(st.sampled_from(pool), min_size=0, max_size=60)
    return draw(st.lists(st.tuples(pick, st.integers(1, 4)), min_size=1, max_size=3))


def _float(s):
    try:
        return float(s.strip())
    except (AttributeError, ValueError):
        return None


def _int(s):
    try:
        return int(s)
    except (TypeError, ValueError):
        return None


def oracle_row(r, now):
    """(reason, identity): the first rule the row fails, else its event identity."""
    u, i, t, ts, val, q = r
    user = u.strip() if u is not None else None
    item = i.strip() if i is not None else None
    item = item if item else None
    etype = t.strip().lower() if t is not None else None
    try:
        when = dt.datetime.fromisoformat(ts.strip()) if ts and ts.strip() else None
    except ValueError:
        when = None
    value = _float(val)
    qty = _int(q)
    checks = [
        ("missing_user_id", not user),
        ("user_id_too_long", user is not None and len(user) > V.max_id_length),
        ("item_id_too_long", item is not None and len(item) > V.max_id_length),
        ("bad_timestamp", when is None),
        (
            "timestamp_out_of_range",
            when is not None and not (dt.datetime(1990, 1, 1) <= when < dt.datetime(2100, 1, 1)),
        ),
        (
            "timestamp_in_future",
            when is not None and when > now + dt.timedelta(hours=V.max_future_hours),
        ),
        ("unknown_event_type", etype not in V.event_types),
        ("bad_value", val is not None and val.strip() != "" and value is None),
        ("negative_value", value is not None and value < 0),
        ("value_out_of_range", value is not None and (math.isnan(value) or value > V.max_value)),
        ("bad_quantity", q is not None and (qty is None or qty < 0)),
    ]
    for reason, failed in checks:
        if failed:
            return reason, None
    return None, (user, item, etype, when, value if value is not None else 0.0, qty)


def _source(spark, rows, partitions):
    df = spark.createDataFrame(rows, ", ".join(f"{c} string" for c in COLS)).repartition(partitions)
    return raw_source(df, name="fuzz")


def _stored(spark, cfg):
    ev = tables.read(spark, cfg, "events").collect()
    got = Counter(
        (r["user_id"], r["item_id"], r["event_type"], r["event_ts"], r["value"], r["quantity"])
        for r in ev
    )
    q = Counter(
        tuple(r[c] for c in COLS) + (r["reason"],)
        for r in tables.read(spark, cfg, "events_quarantine").select(*COLS, "reason").collect()
    )
    return got, q


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "3")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batches=batches())
def test_ingest_counts_and_tables_match_a_python_oracle(spark, make_cfg, tmp_path, batches):
    cfg = make_cfg(lakehouse=str(tmp_path / uuid.uuid4().hex))
    stored, quarantine_max = set(), Counter()
    for rows, partitions in batches:
        c = ingest(spark, cfg, _source(spark, rows, partitions))
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        judged = [oracle_row(r, now) for r in rows]
        reasons = Counter(reason for reason, _ in judged if reason)
        valid = Counter(ident for reason, ident in judged if reason is None)
        new = set(valid) - stored
        assert c.rows_in == len(rows)
        assert c.quarantine_reasons == dict(reasons), (c.quarantine_reasons, reasons)
        assert c.quarantined == sum(reasons.values()) and c.valid == sum(valid.values())
        assert c.distinct == len(valid) and c.duplicates_in_batch == sum(valid.values()) - len(
            valid
        )
        assert (
            c.already_present == len(set(valid) & stored)
            and c.new == len(new)
            and c.written == len(new)
        )
        stored |= new
        # identical bad rows of one source are each kept once, across batches too
        bad = Counter(tuple(r) + (reason,) for r, (reason, _) in zip(rows, judged) if reason)
        for k, n in bad.items():
            quarantine_max[k] = max(quarantine_max[k], n)
    got_events, got_quarantine = _stored(spark, cfg)
    assert set(got_events) == stored and all(n == 1 for n in got_events.values())
    assert got_quarantine == quarantine_max
    # a rerun of the last batch, on another partitioning, commits nothing
    versions = tables.versions(spark, cfg, ["events", "events_quarantine"])
    rows, partitions = batches[-1]
    again = ingest(spark, cfg, _source(spark, rows, partitions % 4 + 1))
    assert again.written == 0 and again.new == 0
    assert tables.versions(spark, cfg, ["events", "events_quarantine"]) == versions
    assert tables.read(spark, cfg, "events").where(F.col("source") != "fuzz").count() == 0
