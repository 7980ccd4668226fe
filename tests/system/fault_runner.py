"""Run nightly stages in a fresh Spark application and kill one executor JVM
(SIGKILL) right before the first commit to each named table: the cached input
of that commit (e.g. the deduplicated events of the MERGE, the scored users of
``score``) dies with it and Spark must recompute it on another executor.

Used by tests/system/test_cluster_faults.py as a subprocess (a second SparkContext
cannot live in the test process):

    python tests/system/fault_runner.py --conf c.yaml --master 'local-cluster[2,1,1024]' \\
        --stages ingest,sequences,lifecycle,score --kill-before events,user_interests
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time


def executor_pids(app_id: str) -> list:
    """Process ids of this application's executor JVMs (Linux /proc)."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as fh:
                cmd = fh.read().split(b"\0")
        except OSError:
            continue
        if (
            b"org.apache.spark.executor.CoarseGrainedExecutorBackend" in cmd
            and app_id.encode() in cmd
        ):
            pids.append(int(p))
    return sorted(pids)


def die_in_artifact_save(root: str, where: str) -> int:
    """Save an artifact and SIGKILL this process at ``where`` (no cleanup runs)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.helpers import make_artifact

    real = getattr(os, where)

    def dying(*a, **kw):
        print(f"FAULT SIGKILL in artifact save before os.{where}{a}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **kw)

    setattr(os, where, dying)
    make_artifact(root)
    return 3  # not reached


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conf")
    ap.add_argument("--master", default="local-cluster[2,1,1024]")
    ap.add_argument("--stages")
    ap.add_argument("--date", default=None)
    ap.add_argument(
        "--training-snapshot",
        action="store_true",
        default=None,
        help="also build T (as the nightly job's flag)",
    )
    ap.add_argument(
        "--kill-before", default="", help="tables: kill an executor before the first commit to each"
    )
    ap.add_argument(
        "--die-after",
        default="",
        help="SIGKILL this driver right after the first commit to this table",
    )
    ap.add_argument(
        "--die-in-artifact-save",
        default="",
        choices=["", "rename", "replace"],
        help="save a small artifact under --artifact-root, SIGKILLing this process right "
        "before its atomic directory rename (rename) or its promotion pointer switch (replace)",
    )
    ap.add_argument("--artifact-root", default="")
    args = ap.parse_args()
    if args.die_in_artifact_save:
        return die_in_artifact_save(args.artifact_root, args.die_in_artifact_save)

    from lifecycle_recs.config import load_config
    from lifecycle_recs.io import tables
    from lifecycle_recs.pipeline import run_nightly
    from lifecycle_recs.spark import get_spark

    cfg = load_config(args.conf)
    cfg = dataclasses.replace(
        cfg, spark=dataclasses.replace(cfg.spark, master=args.master, driver_memory="1g")
    )
    spark = get_spark(cfg.spark)
    app = spark.sparkContext.applicationId
    pending = [t for t in args.kill_before.split(",") if t]

    def kill(table: str) -> None:
        if table in pending:
            pending.remove(table)
            pids = executor_pids(app)
            if not pids:
                raise RuntimeError(f"no executor of {app} found to kill")
            os.kill(pids[0], signal.SIGKILL)
            print(
                f"FAULT killed executor pid {pids[0]} (of {len(pids)}) before the commit to "
                f"{table}",
                flush=True,
            )
            time.sleep(2)  # let the driver lose it before the commit's jobs are scheduled

    tables.BEFORE_COMMIT_HOOKS.append(kill)
    if args.die_after:

        def die(table: str) -> None:
            if table == args.die_after:
                print(f"FAULT SIGKILL of the driver after the commit to {table}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

        tables.COMMIT_HOOKS.append(die)
    run = run_nightly(spark, cfg, args.date, args.stages.split(","), args.training_snapshot)
    print(f"DONE {run.snapshot_date} pending={pending}", flush=True)
    spark.stop()
    return 1 if pending else 0


if __name__ == "__main__":
    sys.exit(main())
