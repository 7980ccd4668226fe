# Databricks notebook source
# MAGIC %md
# MAGIC The notebooks' shared first cell (`%run ./_bootstrap`): `lifecycle_recs` from the bundle's
# MAGIC wheel (a cluster library, or `%pip install` of it) or make's venv; else, in a checkout (a Git
# MAGIC folder), its `lib/`, found from the notebook's folder upwards; else an error naming the wheel.

# COMMAND ----------
import pathlib
import sys

try:
    import lifecycle_recs  # noqa: F401
except ImportError as e:
    here = pathlib.Path.cwd()
    lib = next(
        (p / "lib" for p in (here, *here.parents) if (p / "lib/lifecycle_recs").is_dir()), None
    )
    if lib is None:
        raise ImportError(
            "lifecycle_recs is not installed: attach the bundle's wheel to the cluster, or "
            "%pip install <workspace.artifact_path>/.internal/lifecycle_recs-*.whl"
        ) from e
    sys.path.insert(0, str(lib))
