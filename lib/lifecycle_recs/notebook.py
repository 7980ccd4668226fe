"""What the notebooks share: their parameters, the session, the conf and the night to read
(the last *published* one), and ``display`` that is the Databricks runtime's own there and a
plain ``show()`` / saved figure locally. Reads only.

Parameters are widgets on Databricks (``dbutils.widgets``, created with their defaults on
the first run) and ``$LIFECYCLE_<NAME>`` variables elsewhere: ``conf`` (a YAML path; empty:
the bundle's ``conf/databricks.yaml`` on Databricks, ``conf/local.yaml`` elsewhere, found
from the notebook's folder upwards, so neither depends on the working directory), ``set``
(conf overrides, ``key=value`` separated by ``;``: a dev deployment's schema, say) and
``night`` (a published night to read instead of the last).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from pyspark.sql import DataFrame, SparkSession

from lifecycle_recs.config import Config, config_from_dict, load_config, parse_overrides
from lifecycle_recs.io import runs
from lifecycle_recs.spark import get_spark


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def parameter(scope: Mapping, name: str, default: str = "", label: str = "") -> str:
    """A notebook parameter: the widget ``name`` where the notebook has ``dbutils`` (made
    with ``default`` when missing), else ``$LIFECYCLE_<NAME>``, else ``default``."""
    dbutils = scope.get("dbutils")
    if dbutils is not None:
        dbutils.widgets.text(name, default, label or name)
        return dbutils.widgets.get(name)
    return os.environ.get(f"LIFECYCLE_{name.upper()}", default)


def default_conf(start: Optional[str] = None) -> Optional[str]:
    """``conf/databricks.yaml`` (on Databricks) or ``conf/local.yaml`` in the notebook's folder
    or a folder above it (a bundle's files, a checkout); None when there is none."""
    name = "databricks.yaml" if on_databricks() else "local.yaml"
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "conf" / name).is_file():
            return str(folder / "conf" / name)
    return None


@dataclass
class Notebook:
    spark: SparkSession
    cfg: Config
    night: Optional[str]  # the night to read: the last published one unless asked
    native_display: Optional[Callable] = None  # the Databricks runtime's display

    def display(self, obj, name: str = "figure", rows: int = 20) -> None:
        """The runtime's ``display`` where the notebook has one (Databricks); elsewhere a
        DataFrame is shown and a matplotlib figure is saved under ``reports/notebooks/``."""
        if self.native_display is not None:
            self.native_display(obj)
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


def open_notebook(scope: Optional[Mapping] = None, conf: Optional[str] = None) -> Notebook:
    """The notebook's session, conf and night from its parameters (``scope``: the notebook's
    globals, where Databricks puts ``dbutils`` and ``display``); the active session where
    there is one (Databricks, a test)."""
    scope = scope or {}
    native = scope.get("display") if scope.get("dbutils") is not None else None
    if native is None:
        import matplotlib

        matplotlib.use("Agg")
    path = conf or parameter(scope, "conf", "", "conf (YAML path; empty: the bundle's)")
    sets = [x.strip() for x in parameter(scope, "set", "", "overrides k=v;k=v").split(";")]
    overrides = parse_overrides([x for x in sets if x])
    path = path or default_conf()
    cfg = load_config(path, overrides) if path else config_from_dict(overrides, os.getcwd())
    spark = get_spark(cfg.spark)
    published = runs.last_published_date(spark, cfg)
    night = parameter(scope, "night", "", "night (empty: the last published)") or published
    print(f"conf {path or '(embedded default)'}; lakehouse {cfg.lakehouse}; "
          f"last published night: {published}; reading {night}")  # fmt: skip
    return Notebook(spark, cfg, night, native)
