# Databricks notebook source
# MAGIC %md
# MAGIC # Model quality over time
# MAGIC Runs on Databricks (a job cluster or notebook attached to the bundle's wheel) or locally after
# MAGIC `make demo`: `.venv/bin/python notebooks/model_quality.py`. Parameters: widgets on Databricks, `$LIFECYCLE_<NAME>`
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
# MAGIC %md Every metric of every evaluated night: ours against each baseline

# COMMAND ----------
m = tables.read(spark, cfg, "evaluation_metrics")
nb.display(
    m.groupBy("snapshot_date", "task", "metric")
    .pivot("model")
    .agg(F.first("value"))
    .orderBy("snapshot_date", "task", "metric"),
    rows=60,
)

# COMMAND ----------
# MAGIC %md One metric over time (parameter `metric`, default churn ROC AUC)

# COMMAND ----------
import matplotlib.pyplot as plt  # noqa: E402

task, metric = parameter(globals(), "metric", "churn/roc_auc").split("/")
series = (
    m.where((F.col("task") == task) & (F.col("metric") == metric))
    .select("snapshot_date", "model", "value")
    .orderBy("snapshot_date")
    .collect()
)  # nights x models
fig, ax = plt.subplots(figsize=(7, 3.5))
for model in sorted({r["model"] for r in series}):
    pts = [(r["snapshot_date"], r["value"]) for r in series if r["model"] == model]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=model)
ax.set_title(f"{task} {metric}")
ax.legend()
nb.display(fig, f"{task}_{metric}")

# COMMAND ----------
# MAGIC %md The lifecycle strategies against the plain ranking for the same users, per evaluated night, and
# MAGIC which of them the last night applied: the strategy gate turns off a strategy that lost in the latest
# MAGIC earlier evaluation (`recommend.strategy_gate`; docs/stages.md, "Recommendations")

# COMMAND ----------
from lifecycle_recs.evaluation.gate import PLAIN_COMPARISON, losing_strategies

nb.display(
    m.where(F.col("task").startswith("strategy[") & (F.col("model") == PLAIN_COMPARISON))
    .select("snapshot_date", "task", "metric", "n_users", "value", "ci_low", "ci_high", "verdict")
    .orderBy("snapshot_date", "task", "metric"),
    rows=30,
)
nb.display(
    tables.read(spark, cfg, "recommendations", D)
    .groupBy("strategy")
    .agg(F.countDistinct("user_id").alias("users"))
    .orderBy("strategy")
)
print(
    f"not applied on {D}:",
    losing_strategies(spark, cfg, D)
    or "none (every strategy won or tied, or no earlier evaluation)",
)
