"""Weekly upkeep of the lakehouse: OPTIMIZE and VACUUM every table, remove leaked training
feeds (``lifecycle_recs.maintenance``).

lifecycle-maintenance --conf conf/prod.yaml
lifecycle-maintenance --conf conf/prod.yaml --erase-users to_erase.txt
python jobs/maintenance.py --conf conf/local.yaml --set maintenance.retain_days=14

Exit codes: 0 done; 1 it failed (the traceback says where); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Lifecycle recommender: compact and vacuum the tables, remove leaked feeds"
    )
    p.add_argument("--conf", default=None, help="YAML config (default: the embedded default)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a conf key (maintenance.retain_days=14); repeatable",
    )
    p.add_argument(
        "--erase-users",
        metavar="FILE",
        help="first delete these users (one id per line) from every table, then compact and "
        "vacuum: their rows stay readable by time travel for maintenance.retain_days (0: at once)",
    )
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from lifecycle_recs.config import config_from_dict, load_config, parse_overrides

    try:
        overrides = parse_overrides(args.set)
        cfg = (
            config_from_dict(overrides, base=os.getcwd())
            if args.conf is None
            else load_config(args.conf, overrides)
        )
    except ValueError as e:
        parser().error(str(e))
    users = None
    if args.erase_users:
        try:
            with open(args.erase_users) as fh:
                users = [line.strip() for line in fh if line.strip()]
        except OSError as e:
            parser().error(f"--erase-users: {e}")
        if not users:
            parser().error(f"--erase-users: {args.erase_users} holds no user id")
    from lifecycle_recs.maintenance import erase_users, run_maintenance
    from lifecycle_recs.spark import get_spark

    spark = get_spark(cfg.spark)
    if users:
        print(json.dumps(erase_users(spark, cfg, users), indent=1, sort_keys=True))
    print(json.dumps(run_maintenance(spark, cfg), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
