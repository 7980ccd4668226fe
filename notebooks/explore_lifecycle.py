# Databricks notebook source
# MAGIC %md
# MAGIC # Explore lifecycle stages, scores and recommendations
# MAGIC Runs on Databricks (the existing session, tables at the paths in your conf) or locally
# MAGIC (`.venv/bin/python notebooks/explore_lifecycle.py` after `make demo`).

# COMMAND ----------
import os
import sys

sys.path.insert(0, os.path.join(os.getcwd(), "lib"))
from pyspark.sql import functions as F  # noqa: E402

from lifecycle_recs import tables  # noqa: E402
from lifecycle_recs.config import load_config  # noqa: E402
from lifecycle_recs.spark import get_spark  # noqa: E402

cfg = load_config(os.environ.get("LIFECYCLE_CONF", "conf/local.yaml"))
spark = get_spark(cfg.spark)
dates = tables.snapshots(spark, cfg, "user_lifecycle")
# the last night whose every stage succeeded (pipeline_runs); a newer half-written night is not read
D = tables.last_published_date(spark, cfg) or dates[-1]
print("snapshots:", dates, "- last published:", tables.last_published_date(spark, cfg))

# COMMAND ----------
# MAGIC %md Stage mix and transitions at D

# COMMAND ----------
lc = tables.read(spark, cfg, "user_lifecycle", D)
lc.groupBy("previous_stage", "stage").count().orderBy("previous_stage", "stage").show(30)

# COMMAND ----------
# MAGIC %md Retention scores by stage, and a few users with their recommendations

# COMMAND ----------
if tables.exists(spark, cfg, "retention_scores"):
    rs = tables.read(spark, cfg, "retention_scores", D)
    rs.groupBy("stage").agg(F.avg("churn_probability").alias("mean_churn_p"),
                            F.avg("predicted_value").alias("mean_value"), F.count("*").alias("users")).show()
    recs = tables.read(spark, cfg, "recommendations", D).join(
        tables.read(spark, cfg, "items").select("item_id", "title"), "item_id", "left")
    recs.where(F.col("rank") <= 3).orderBy("user_id", "rank").show(12, truncate=50)

# COMMAND ----------
# MAGIC %md Model quality over time

# COMMAND ----------
if tables.exists(spark, cfg, "evaluation_metrics"):
    tables.read(spark, cfg, "evaluation_metrics").orderBy("snapshot_date", "task", "metric", "model").show(60)
