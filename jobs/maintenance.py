"""Weekly upkeep of the lakehouse: OPTIMIZE and VACUUM every table, remove leaked training
feeds (``lifecycle_recs.maintenance``).

lifecycle-maintenance --conf conf/prod.yaml
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
    from lifecycle_recs.maintenance import run_maintenance
    from lifecycle_recs.spark import get_spark

    info = run_maintenance(get_spark(cfg.spark), cfg)
    print(json.dumps(info, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
