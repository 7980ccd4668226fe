"""A seeded order-level log: customer id, order date, amount, quantity (no items,
no catalog, no event type), the shape of a shop's order export.

The ground truth is deliberately *not* the BG/NBD model, so that the BG/NBD
baseline has to earn its figures like any other model:

* customers arrive uniformly over the first two thirds of the period;
* each has a usual gap between orders (log-normal across customers, median
  ``median_gap_days``) and orders at gamma-distributed intervals around it
  (shape 3: more regular than Poisson, so "late relative to my usual gap" is
  informative, as it is in real repeat buying);
* dropout: after each order a customer leaves with a probability that grows
  with the number of orders already placed in a short burst of early orders,
  and otherwise falls with tenure (loyal customers stay); a left customer may
  come back once after a long pause (``comeback``);
* spend per order is log-normal around a customer mean (gamma across
  customers), and drifts up slowly with the number of orders;
* a weekly pattern: fewer orders at weekends.

One customer at a time from its own seed, so the log does not depend on how
many customers are generated. Small enough for tests and benchmarks: it
returns a pandas frame that the caller writes as CSV.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd


def _customer(c: int, seed: int, days: int, median_gap_days: float, comeback: float) -> list:
    rng = np.random.default_rng([seed, c])
    start = rng.uniform(0, days * 2 / 3)
    gap = median_gap_days * np.exp(rng.normal(0, 0.6))
    spend = rng.gamma(3.0, 12.0)
    base_leave = rng.beta(1.2, 8.0)
    rows, t, n, came_back = [], start, 0, False
    while t < days:
        if (int(t) + 3) % 7 >= 5 and rng.random() < 0.4:  # weekend: some orders move to Monday
            t = float(int(t) + (7 - (int(t) + 3) % 7))
            if t >= days:
                break
        amount = round(float(rng.lognormal(np.log(spend) + 0.01 * n, 0.35)), 2)
        rows.append((c, int(t), amount, int(rng.integers(1, 4))))
        n += 1
        leave = base_leave / (1.0 + 0.15 * n)
        if rng.random() < leave:
            if came_back or rng.random() > comeback:
                break
            came_back = True
            t += rng.uniform(60, 150)  # a long pause, then back
            continue
        t += max(1.0, rng.gamma(3.0, gap / 3.0))
    return rows


def order_log(
    n_customers: int,
    start_date: str = "2025-01-01",
    days: int = 365,
    seed: int = 11,
    median_gap_days: float = 21.0,
    comeback: float = 0.25,
) -> pd.DataFrame:
    """Columns ``customer_id, order_date (YYYY-MM-DD), amount, quantity`` (all orders)."""
    rows = [
        r for c in range(n_customers) for r in _customer(c, seed, days, median_gap_days, comeback)
    ]
    df = pd.DataFrame(rows, columns=["c", "day", "amount", "quantity"])
    base = dt.date.fromisoformat(start_date)
    return pd.DataFrame(
        {
            "customer_id": ["C" + str(1_000_000 + c) for c in df["c"]],
            "order_date": [(base + dt.timedelta(days=int(d))).isoformat() for d in df["day"]],
            "amount": df["amount"].map(lambda x: f"{x:.2f}"),
            "quantity": df["quantity"],
        }
    )


def source_conf(path: str) -> dict:
    """The ``source`` section that reads :func:`order_log` written as CSV under ``path``
    through the generic source: one purchase per row, dated orders."""
    return {
        "kind": "generic",
        "name": "shop-orders",
        "format": "csv",
        "path": str(path),
        "columns": {
            "user_id": "customer_id",
            "event_ts": "order_date",
            "value": "amount",
            "quantity": "quantity",
        },
        "event_type": "purchase",
        "timestamp_kind": "date",
    }
