"""What the notebooks share: the session, the conf and the night to read (the last
*published* one), and ``display`` that is Databricks' own there and a plain
``show()`` / saved figure locally. Reads only."""

from __future__ import annotations

import builtins
import os
from dataclasses import dataclass
from typing import Optional

from pyspark.sql import DataFrame, SparkSession

from lifecycle_recs.config import Config, load_config
from lifecycle_recs.io import runs
from lifecycle_recs.spark import get_spark


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


@dataclass
class Notebook:
    spark: SparkSession
    cfg: Config
    night: Optional[str]  # the last published night (None before the first one)

    def display(self, obj, name: str = "figure", rows: int = 20) -> None:
        """Databricks' ``display`` where it exists; locally a DataFrame is shown and a
        matplotlib figure is saved under ``reports/notebooks/``."""
        native = getattr(builtins, "display", None)
        if native is not None and on_databricks():
            native(obj)
        elif isinstance(obj, DataFrame):
            obj.show(rows, truncate=60)
        elif hasattr(obj, "savefig"):
            out = os.path.join(self.cfg.reports, "notebooks")
            os.makedirs(out, exist_ok=True)
            path = os.path.join(out, f"{name}.png")
            obj.savefig(path, dpi=80, bbox_inches="tight")
            print(f"[figure saved to {path}]")
        else:
            print(obj)


def open_notebook(conf: Optional[str] = None) -> Notebook:
    """The conf from ``conf`` or ``$LIFECYCLE_CONF`` (default conf/local.yaml); the
    active session where there is one (Databricks, a test)."""
    if not on_databricks():
        import matplotlib

        matplotlib.use("Agg")
    cfg = load_config(conf or os.environ.get("LIFECYCLE_CONF", "conf/local.yaml"))
    spark = get_spark(cfg.spark)
    night = runs.last_published_date(spark, cfg)
    print(f"lakehouse {cfg.lakehouse}; last published night: {night}")
    return Notebook(spark, cfg, night)
