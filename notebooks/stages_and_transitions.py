# Databricks notebook source
# MAGIC %md
# MAGIC # Lifecycle stages and transitions
# MAGIC Runs on Databricks (a job cluster or notebook attached to the bundle's wheel) or locally after
# MAGIC `make demo`: `.venv/bin/python notebooks/stages_and_transitions.py`. Parameters: widgets on Databricks, `$LIFECYCLE_<NAME>`
# MAGIC locally: `conf` (empty: the bundle's `conf/databricks.yaml`, or `conf/local.yaml`), `set` (overrides
# MAGIC `key=value;...`), `night` (empty: the last published). It reads a *published* night (pipeline_runs),
# MAGIC never a half-written one.

# COMMAND ----------
# MAGIC %run ./_bootstrap

# COMMAND ----------

from lifecycle_recs.io import tables
from lifecycle_recs.notebook import open_notebook

nb = open_notebook(globals())  # widgets and display on Databricks
spark, cfg, D = nb.spark, nb.cfg, nb.night
assert D, "no published night yet: run the nightly job first"

# COMMAND ----------
# MAGIC %md Stage mix at D, and where each stage's users came from (previous stage, one step earlier)

# COMMAND ----------
lc = tables.read(spark, cfg, "user_lifecycle", D)
nb.display(lc.groupBy("stage").count().orderBy("stage"))
transitions = (
    lc.groupBy("previous_stage").pivot("stage").count().na.fill(0).orderBy("previous_stage")
)
nb.display(transitions)

# COMMAND ----------
# MAGIC %md Stage mix over the snapshots kept

# COMMAND ----------
over_time = (
    tables.read(spark, cfg, "user_lifecycle")
    .groupBy("snapshot_date")
    .pivot("stage")
    .count()
    .na.fill(0)
    .orderBy("snapshot_date")
)
nb.display(over_time)
