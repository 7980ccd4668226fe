"""Which version of a table the state reflects: the commit metadata a state write records
(``tables.replace_dates``), a table's current version and its Delta id. Readers of the
Delta log only; time travel and the change data feed read Delta files and live in
``io/tables.py``, the one module that touches them."""

from __future__ import annotations

import json
from typing import Dict, Optional

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lifecycle_recs.config import Config
from lifecycle_recs.io.tables import _delta, _version, exists, path

# every state write carries its metadata: the latest is among the last few commits
RECENT_COMMITS = 20


def recorded(spark: SparkSession, cfg: Config, table: str) -> Optional[Dict[str, object]]:
    """The ``metadata`` of the table's latest ``tables.replace_dates`` commit (None when the
    table does not exist or no commit in its retained history carries one)."""
    if not exists(spark, cfg, table):
        return None
    t = _delta(spark, path(cfg, table))
    # the latest commits first: reading the whole history would cost more every night
    for h in (t.history(RECENT_COMMITS), t.history()):
        rows = (
            h.where(F.col("userMetadata").isNotNull())
            .orderBy(F.col("version").desc())
            .select("userMetadata")
            .limit(1)
            .collect()
        )
        if rows:
            return json.loads(rows[0][0])
    return None


def current_version(spark: SparkSession, cfg: Config, table: str) -> int:
    return _version(_delta(spark, path(cfg, table)))


def table_id(spark: SparkSession, cfg: Config, table: str) -> str:
    """The Delta table's id: a new one when the table is dropped and created again."""
    return str(_delta(spark, path(cfg, table)).detail().select("id").first()[0])
