# Databricks notebook source
# MAGIC %md
# MAGIC # Retention and value by stage
# MAGIC Runs on Databricks (a job cluster or notebook attached to the bundle's wheel) or locally after
# MAGIC `make demo`: `.venv/bin/python notebooks/retention_and_value.py`. Parameters: widgets on Databricks, `$LIFECYCLE_<NAME>`
# MAGIC locally: `conf` (empty: the bundle's `conf/databricks.yaml`, or `conf/local.yaml`), `set` (overrides
# MAGIC `key=value;...`), `night` (empty: the last published). It reads a *published* night (pipeline_runs),
# MAGIC never a half-written one.

# COMMAND ----------
# MAGIC %run ./_bootstrap

# COMMAND ----------
import os

from pyspark.sql import functions as F

from lifecycle_recs.io import tables
from lifecycle_recs.notebook import open_notebook

nb = open_notebook(globals())  # widgets and display on Databricks
spark, cfg, D = nb.spark, nb.cfg, nb.night
assert D, "no published night yet: run the nightly job first"

# COMMAND ----------
# MAGIC %md Churn probability and predicted value by stage (one row per user of D)

# COMMAND ----------
rs = tables.read(spark, cfg, "retention_scores", D)
by_stage = (
    rs.groupBy("stage")
    .agg(
        F.count("*").alias("users"),
        F.avg("churn_probability").alias("mean_churn_p"),
        F.expr("percentile_approx(churn_probability, 0.5)").alias("median_churn_p"),
        F.avg("predicted_value").alias("mean_value"),
        F.sum("predicted_value").alias("total_value"),
    )
    .orderBy("stage")
)
nb.display(by_stage)

# COMMAND ----------
# MAGIC %md Distribution of churn probability per stage (histogram counts computed in Spark)

# COMMAND ----------
import matplotlib.pyplot as plt  # noqa: E402

bins = (
    rs.select("stage", F.least(F.floor(F.col("churn_probability") * 10), F.lit(9)).alias("bin"))
    .groupBy("stage", "bin")
    .count()
    .collect()
)  # at most 5 stages x 10 bins
fig, ax = plt.subplots(figsize=(7, 3.5))
for stage in sorted({r["stage"] for r in bins}):
    counts = [0] * 10
    for r in bins:
        if r["stage"] == stage:
            counts[int(r["bin"])] = r["count"]
    ax.plot([b / 10 + 0.05 for b in range(10)], counts, marker="o", label=stage)
ax.set_xlabel("churn probability")
ax.set_ylabel("users")
ax.legend()
nb.display(fig, "churn_by_stage")

# COMMAND ----------
# MAGIC %md Which model scored the churn of D, and how it treats users who have been away longer than
# MAGIC `lifecycle.churn_days`: the lapsed users' silence model, pooled over `model.lapsed_periods` periods and
# MAGIC applied only where coming back gets rarer with silence (docs/stages.md, "The model")

# COMMAND ----------
import json  # noqa: E402

from lifecycle_recs.ml import lapsed

versions = [
    r["model_version"] for r in rs.select("model_version").distinct().collect()
]  # one per night
for version in sorted(versions):
    with open(os.path.join(cfg.artifacts, version, "config.json")) as fh:
        art_config = json.load(fh)
    print(
        f"churn of {D} scored by {version}; lapsed users: {lapsed.describe(art_config.get('lapsed'))}"
    )
