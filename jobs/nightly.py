"""Nightly job: parse args -> load conf -> get Spark -> run the stages for D -> report.

spark-submit jobs/nightly.py --conf conf/prod.yaml --date 2026-11-21
python jobs/nightly.py --conf conf/local.yaml --demo
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Lifecycle recommender: nightly pipeline for one snapshot date"
    )
    p.add_argument(
        "--conf", default="conf/local.yaml", help="YAML config (default: conf/local.yaml)"
    )
    p.add_argument(
        "--date", default=None, help="snapshot date D (YYYY-MM-DD); default: last event date"
    )
    p.add_argument("--stages", default=None, help="comma-separated subset of stages to run")
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
    p.add_argument("--demo", action="store_true", help="print tables, counts, samples and timings")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from lifecycle_recs.config import load_config, parse_overrides
    from lifecycle_recs.pipeline import run_nightly, warm_up
    from lifecycle_recs.spark import get_spark
    from lifecycle_recs.summary import print_run

    cfg = load_config(args.conf, parse_overrides(args.set))
    if args.allow_shrink:
        cfg = dataclasses.replace(cfg, publish=dataclasses.replace(cfg.publish, allow_shrink=True))
    if args.restate:
        cfg = dataclasses.replace(cfg, ingest=dataclasses.replace(cfg.ingest, restate=True))
    spark = get_spark(cfg.spark)
    stages = args.stages.split(",") if args.stages else None
    if args.warm_up:
        stages, date = warm_up(spark, cfg, args.date, stages)
    else:
        date = args.date
    run = run_nightly(spark, cfg, date, stages, args.training_snapshot)
    print_run(run, samples=args.demo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
