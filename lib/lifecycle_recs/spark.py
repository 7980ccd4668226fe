"""The one place that creates a SparkSession."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Dict, Iterator

from pyspark.sql import SparkSession

from lifecycle_recs.config import SparkSettings

log = logging.getLogger(__name__)


# Session settings every stage relies on: timestamps and date partitions are UTC, and
# arithmetic / casts fail loudly instead of producing nulls (ANSI). Both are runtime SQL
# settings, so they are enforced on an existing session too (Databricks, spark-submit).
INVARIANTS = {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "true"}


def enforce_invariants(spark: SparkSession) -> SparkSession:
    """Set :data:`INVARIANTS` on the session, logging each one that was different."""
    for k, v in INVARIANTS.items():
        have = spark.conf.get(k, None)
        if str(have).lower() != v.lower() and not (
            k.endswith("timeZone") and str(have).upper() in ("UTC", "Z", "ETC/UTC")
        ):
            log.warning("Spark setting %s was %r; setting it to %r for this job", k, have, v)
            spark.conf.set(k, v)
    return spark


def get_spark(conf: SparkSettings) -> SparkSession:
    """Return a Spark session with Delta Lake enabled, in UTC with ANSI on.

    On a cluster or Databricks (``use_existing_session`` or an active session),
    the existing session is used (Delta is configured there by the platform),
    with :data:`INVARIANTS` enforced. Locally, a session is built with Delta's jars resolved through
    ``configure_spark_with_delta_pip`` (Ivy, cached in ``~/.ivy2*``), sized for
    a small machine, with Python workers pinned to this interpreter.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return enforce_invariants(active)
    if conf.use_existing_session:
        return enforce_invariants(SparkSession.builder.getOrCreate())

    from delta import configure_spark_with_delta_pip

    # Workers must run this interpreter, or they import a different python
    # without pandas/torch/this package.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(conf.master)
        .appName(conf.app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        .config("spark.sql.shuffle.partitions", str(conf.shuffle_partitions))
        .config("spark.default.parallelism", str(conf.shuffle_partitions))
        .config("spark.driver.memory", conf.driver_memory)
        .config("spark.ui.enabled", str(conf.ui_enabled).lower())
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.ansi.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(conf.arrow_batch_size))
        .config("spark.pyspark.python", sys.executable)
        .config("spark.pyspark.driver.python", sys.executable)
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.sql.sources.partitionOverwriteMode", "static")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
    )
    for k, v in conf.extra.items():
        builder = builder.config(k, v)
    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return enforce_invariants(spark)


@contextlib.contextmanager
def sql_conf(spark: SparkSession, settings: Dict[str, str]) -> Iterator[None]:
    """Set SQL settings for the actions run inside the block, then restore them."""
    old = {k: spark.conf.get(k, None) for k in settings}
    for k, v in settings.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)
