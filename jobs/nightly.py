"""Nightly job: parse args -> load conf -> get Spark -> run the stages for D -> report.

spark-submit jobs/nightly.py --conf conf/prod.yaml --date 2026-11-21
python jobs/nightly.py --conf conf/local.yaml --demo

Exit codes: 0 the run succeeded (and, when it ran every stage of the conf, the night is
published); 1 a stage failed (the traceback says which); 2 bad arguments (checked before Spark
starts); 3 every stage of the conf ran but the night is not published (an earlier night's stage
has not succeeded for D), so a scheduler can tell.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_PUBLISHED = 0, 1, 2, 3
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


LAST_COMPLETE_DAY = "last-complete-day"


def _date(value: str) -> str:
    """``--date``: a calendar date, or ``last-complete-day``; checked before Spark starts."""
    if value == LAST_COMPLETE_DAY:
        return value
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _stages(value: str) -> list:
    """``--stages``: known stage names, checked before Spark starts."""
    from lifecycle_recs.names import PIPELINE_STAGES

    names = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in names if s not in PIPELINE_STAGES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown stage(s) {unknown or value!r}; the stages are {', '.join(PIPELINE_STAGES)}"
        )
    return names


def parser() -> argparse.ArgumentParser:
    from lifecycle_recs.names import PIPELINE_STAGES

    p = argparse.ArgumentParser(
        description="Lifecycle recommender: nightly pipeline for one snapshot date",
        epilog="exit codes: 0 succeeded (a full run: the night is published); 1 a stage failed; "
        "2 bad arguments; 3 every stage of the conf ran but the night is not published",
    )
    p.add_argument(
        "--conf",
        default=None,
        help="YAML config (default: the embedded default, what conf/local.yaml holds, with its "
        "paths under the current directory)",
    )
    p.add_argument(
        "--date",
        type=_date,
        default=None,
        help="snapshot date D (YYYY-MM-DD), or last-complete-day (the last UTC day that ended "
        "before the run, less --settle-days: what the scheduled job passes); default: the last "
        "event date",
    )
    p.add_argument(
        "--settle-days",
        type=int,
        default=0,
        metavar="N",
        help="with --date last-complete-day: go back N more days, for sources that deliver a "
        "day's files late",
    )
    p.add_argument(
        "--stages",
        type=_stages,
        default=None,
        help=f"comma-separated subset of stages to run, of: {', '.join(PIPELINE_STAGES)}",
    )
    p.add_argument(
        "--log-level", default="INFO", choices=LOG_LEVELS, help="logging level (default: INFO)"
    )
    p.add_argument(
        "--training-snapshot",
        action="store_true",
        default=None,
        help="also build the training snapshot T = D - H (default: when train or evaluate runs)",
    )
    p.add_argument(
        "--allow-shrink",
        action="store_true",
        help="accept a snapshot that is empty or much smaller than the one it replaces "
        "(publish.allow_shrink; refused by default)",
    )
    p.add_argument(
        "--restate",
        action="store_true",
        help="the source's parsing settings changed on purpose: read every file again under the "
        "new ones and replace the source's events (ingest.restate; a change is refused without)",
    )
    p.add_argument(
        "--mode",
        choices=("auto", "incremental", "full"),
        help="how the data stages build the night (state.mode, default auto): incremental from "
        "the per-user day state, refused when it cannot be used; full from all events (the "
        "healing run); auto incremental when it can, else full, saying why",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a conf key (dotted: train.epochs=3); repeatable",
    )
    p.add_argument(
        "--warm-up",
        action="store_true",
        help="first deployment: before D, train the model of night T = D - H (on T - H), so that "
        "evaluate measures every labelled user of T with a model that never saw (T, D]",
    )
    p.add_argument(
        "--nights",
        type=int,
        default=1,
        metavar="N",
        help="run the N nights ending at D one by one (the first builds in full, the later "
        "ones incrementally), printing each night's mode and stage times; a synthetic source "
        "delivers each night's day as it comes (D defaults to its last day)",
    )
    p.add_argument("--demo", action="store_true", help="print tables, counts, samples and timings")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    from lifecycle_recs.config import config_from_dict, load_config, parse_overrides
    from lifecycle_recs.dates import add_days, utc_now
    from lifecycle_recs.pipeline import run_nightly, warm_up
    from lifecycle_recs.spark import get_spark
    from lifecycle_recs.summary import night_line, print_run

    overrides = parse_overrides(args.set)
    if args.conf is None:  # the embedded default: no file needed, paths under this directory
        cfg = config_from_dict(overrides, base=os.getcwd())
    else:
        cfg = load_config(args.conf, overrides)
    if args.allow_shrink:
        cfg = dataclasses.replace(cfg, publish=dataclasses.replace(cfg.publish, allow_shrink=True))
    if args.restate:
        cfg = dataclasses.replace(cfg, ingest=dataclasses.replace(cfg.ingest, restate=True))
    if args.mode:
        cfg = dataclasses.replace(cfg, state=dataclasses.replace(cfg.state, mode=args.mode))
    if args.date == LAST_COMPLETE_DAY:
        args.date = last_complete_day(utc_now(), args.settle_days)
        logging.getLogger("lifecycle_jobs.nightly").info(
            "--date last-complete-day: %s (settle days %d)", args.date, args.settle_days
        )
    from lifecycle_recs.ml import registry

    if registry.enabled(cfg.mlflow):
        try:  # the workspace's naming rule, before a night trains and then fails to log
            registry.experiment_name(cfg.mlflow)
        except ValueError as e:
            parser().error(str(e))
    if args.nights < 1:
        parser().error("--nights must be at least 1")
    date = args.date
    if args.nights > 1 and date is None:
        if cfg.source.kind != "synthetic":
            parser().error("--nights needs --date (the last night) for this source")
        date = add_days(cfg.synthetic.start_date, cfg.synthetic.days - 1)
    spark = get_spark(cfg.spark)
    run = None
    for night in _nights(date, args.nights):
        c = cfg
        if night is not None and cfg.source.kind == "synthetic" and args.nights > 1:
            c = dataclasses.replace(
                cfg, synthetic=dataclasses.replace(cfg.synthetic, deliver_through=night)
            )
        stages = args.stages
        if args.warm_up and run is None:
            stages, night = warm_up(spark, c, night, stages)
        run = run_nightly(spark, c, night, stages, args.training_snapshot)
        if args.nights > 1:
            print(night_line(run))
    print_run(run, samples=args.demo)
    if args.stages is None and not run.published:
        logging.getLogger("lifecycle_jobs.nightly").error(
            "night %s is not published: a stage of the conf has not succeeded for it",
            run.snapshot_date,
        )
        return EXIT_NOT_PUBLISHED
    return EXIT_OK


def last_complete_day(now: dt.datetime, settle_days: int = 0) -> str:
    """The last UTC day that ended before ``now`` (a UTC time), less ``settle_days``
    for sources that deliver a day's files late: a night never processes a day still
    being written."""
    return (now.date() - dt.timedelta(days=1 + max(int(settle_days), 0))).isoformat()


def _nights(last, n):
    """The dates of the N nights ending at ``last`` (None: the one night of an unknown D)."""
    from lifecycle_recs.dates import add_days

    if last is None:
        return [None]
    return [add_days(last, k - n + 1) for k in range(n)]


if __name__ == "__main__":
    sys.exit(main())
