# Databricks notebook source
# MAGIC %md
# MAGIC # Recommendations for one user, with explanations
# MAGIC Runs on Databricks (a job cluster or notebook attached to the bundle's wheel) or locally after
# MAGIC `make demo`: `.venv/bin/python notebooks/user_recommendations.py`. Parameters: widgets on Databricks, `$LIFECYCLE_<NAME>`
# MAGIC locally: `conf` (empty: the bundle's `conf/databricks.yaml`, or `conf/local.yaml`), `set` (overrides
# MAGIC `key=value;...`), `night` (empty: the last published). It reads a *published* night (pipeline_runs),
# MAGIC never a half-written one.

# COMMAND ----------
# MAGIC %run ./_bootstrap

# COMMAND ----------
from pyspark.sql import functions as F

from lifecycle_recs.io import tables
from lifecycle_recs.notebook import open_notebook, parameter

nb = open_notebook(globals())  # widgets and display on Databricks
spark, cfg, D = nb.spark, nb.cfg, nb.night
assert D, "no published night yet: run the nightly job first"

# COMMAND ----------
# MAGIC %md Pick a user (parameter `user`; default: the first at-risk user, else the first user)

# COMMAND ----------
rs = tables.read(spark, cfg, "retention_scores", D)
user = parameter(globals(), "user")
if not user:
    pick = (
        rs.where(F.col("stage") == "at_risk").select("user_id").orderBy("user_id").first()
        or rs.select("user_id").orderBy("user_id").first()
    )
    user = pick["user_id"]
print("user:", user)

# COMMAND ----------
# MAGIC %md Stage, scores and why: the features that move the churn score, the recent items the model attended to

# COMMAND ----------
me = rs.where(F.col("user_id") == user)
nb.display(
    me.select("stage", "churn_probability", "predicted_value", "top_features", "because_items")
)
nb.display(
    tables.read(spark, cfg, "user_interests", D)
    .where(F.col("user_id") == user)
    .select("top_categories", "model_version")
)

# COMMAND ----------
# MAGIC %md The list served, with titles

# COMMAND ----------
recs = tables.read(spark, cfg, "recommendations", D).where(F.col("user_id") == user)
if tables.exists(spark, cfg, "items"):
    recs = recs.join(
        tables.read(spark, cfg, "items").select("item_id", "title", "category"), "item_id", "left"
    )
nb.display(recs.orderBy("rank").drop("because_items"))
