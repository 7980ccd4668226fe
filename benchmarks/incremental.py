"""What a night costs: the data stages (ingest, sequences, lifecycle) of one new day,
incremental against a full rebuild, and the increment's growth with history.

    python benchmarks/incremental.py                    # the demo's size (1,500 users, 320 days)
    python benchmarks/incremental.py --users 6000       # larger

The synthetic generator writes the log once (not timed) and delivers one folder per day.
A lakehouse is built, untimed, with the history up to D - 1 for two history lengths
(``--short`` and ``--days`` days). Then, interleaved, ``--repeats`` times each, on copies:

* ``inc``: day D arrives; ingest reads its file, sequences and lifecycle run with
  ``--mode incremental`` (strict: a full night would fail the run) for D and T = D - H;
* ``full``: a full rebuild from scratch over every file delivered up to D (``--mode full``
  on an empty lakehouse: what the property test compares with);
* ``inc_short``: the incremental night after the short history.

Bytes read are the task input bytes of every Spark stage of the run (the Spark UI's REST
API, summed), so they count what Spark read, not the Delta log the driver reads.
Last line: ``RESULT inc_over_full=<wall> bytes_inc_over_full=<bytes> growth_4x=<wall>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import urllib.request

from harness import ROOT, interleaved, median_spread, result

DATA_STAGES = ["ingest", "sequences", "lifecycle"]


def _cfg(work, name, users, days, through, mode):
    from lifecycle_recs.config import config_from_dict

    return config_from_dict(
        {
            "lakehouse": os.path.join(work, name, "lake"),
            "artifacts": os.path.join(work, name, "artifacts"),
            "spark": {
                "driver_memory": "8g",
                "ui_enabled": True,
                "extra": {"spark.ui.retainedStages": "100000", "spark.ui.retainedJobs": "100000"},
            },
            "source": {"kind": "synthetic", "raw_path": os.path.join(work, name, "raw")},
            "synthetic": {"n_users": users, "days": days, "deliver_through": through},
            "state": {"mode": mode},
            "mlflow": {"enabled": False},
        },
        base=ROOT,
    )


def _input_bytes(spark) -> int:
    """Task input bytes of every completed stage so far (the UI's REST API)."""
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/stages?status=complete"
    with urllib.request.urlopen(url) as r:
        return sum(int(s.get("inputBytes", 0)) for s in json.load(r))


def main() -> None:
    from lifecycle_recs.data.synthetic import shop
    from lifecycle_recs.dates import add_days
    from lifecycle_recs.pipeline import run_nightly
    from lifecycle_recs.spark import get_spark

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1500)
    ap.add_argument("--days", type=int, default=320)
    ap.add_argument("--short", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default=os.path.join(ROOT, ".bench", "incremental"))
    args = ap.parse_args()
    work = os.path.join(args.work, f"u{args.users}")
    start = "2026-01-01"
    d_long, d_short = add_days(start, args.days - 1), add_days(start, args.short - 1)

    base_cfg = _cfg(work, "generated", args.users, args.days, None, "auto")
    spark = get_spark(base_cfg.spark)
    spark.sparkContext.setLogLevel("ERROR")
    generated = os.path.join(work, "generated", "raw")
    if not os.path.exists(os.path.join(generated, "_generated", "events", "_SUCCESS")):
        # generated once; each scenario copies it and delivers its own days
        only_generate = dataclasses.replace(base_cfg.synthetic, deliver_through="0001-01-01")
        shop.deliver(spark, only_generate, generated)

    def fresh(name, through, mode):
        """A scenario folder with the generated log. The stream checkpoint records the files'
        absolute paths, so an incremental scenario is restored in place from its pristine
        copy (a lakehouse copied elsewhere would read every file again)."""
        folder = os.path.join(work, name)
        shutil.rmtree(folder, ignore_errors=True)
        if os.path.exists(folder + ".pristine"):
            shutil.copytree(folder + ".pristine", folder)
        else:
            for sub in ("_generated", "items"):
                shutil.copytree(os.path.join(generated, sub), os.path.join(folder, "raw", sub))
        return _cfg(work, name, args.users, args.days, through, mode)

    def night(cfg, d):
        return run_nightly(spark, cfg, d, DATA_STAGES, training_snapshot=True)

    for name, d in (("long", d_long), ("short", d_short)):  # history up to D - 1
        if not os.path.exists(os.path.join(work, name + ".pristine")):
            night(fresh(name, add_days(d, -1), "auto"), add_days(d, -1))
            shutil.copytree(os.path.join(work, name), os.path.join(work, name + ".pristine"))
            print(f"built {name}: history up to {add_days(d, -1)}", flush=True)

    measured = {"inc": [], "full": [], "inc_short": []}
    stage_secs = {k: [] for k in measured}

    def timed(name, make, d):
        def run():
            cfg = make()
            b0 = _input_bytes(spark)
            r = night(cfg, d)
            secs = sum(x.seconds for x in r.results)
            measured[name].append(_input_bytes(spark) - b0)
            stage_secs[name].append({x.stage: round(x.seconds, 1) for x in r.results})
            modes = {x.stage: x.info.get("mode") for x in r.results if "mode" in x.info}
            files = next(x.info.get("files") for x in r.results if x.stage == "ingest")
            print(f"{name}: {secs:.1f}s {stage_secs[name][-1]} {modes} files={files}", flush=True)
            return secs

        return run

    runs = {
        "inc": timed("inc", lambda: fresh("long", d_long, "incremental"), d_long),
        "full": timed("full", lambda: fresh("full", d_long, "full"), d_long),
        "inc_short": timed("inc_short", lambda: fresh("short", d_short, "incremental"), d_short),
    }
    wall = interleaved(runs, args.repeats)
    med = {k: median_spread(v) for k, v in wall.items()}
    byt = {k: sorted(v)[len(v) // 2] for k, v in measured.items()}
    events = spark.read.format("delta").load(os.path.join(work, "full", "lake", "events")).count()
    print(f"\n{args.users} users, {args.days} days of history, {events} events at D = {d_long}")
    for k, (m, lo, hi) in med.items():
        print(f"{k:<10} wall {m:7.1f}s (min {lo:.1f}, max {hi:.1f})  input {byt[k] / 1e6:8.1f} MB")
    print(
        result(
            inc_over_full=med["inc"][0] / med["full"][0],
            bytes_inc_over_full=byt["inc"] / max(byt["full"], 1),
            growth_4x=med["inc"][0] / med["inc_short"][0],
        )
    )


if __name__ == "__main__":
    main()
