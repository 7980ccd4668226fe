"""Choose a conf weight on the validation period, never on the reported one.

    python benchmarks/validate_weights.py --dataset synthetic \\
        --sweep recommend.new_user_model_weight=0.5,0.7 \\
        --sweep recommend.new_user_popularity_weight=0.3
    python benchmarks/validate_weights.py --dataset demo \\
        --sweep recommend.at_risk_value_weight=0,0.3,1
    python benchmarks/validate_weights.py --dataset synthetic \
        --try "recommend.new_user_model_weight=0.3 recommend.new_user_content_weight=0.4"

The reported evaluation (``nightly_quality.py``) measures night D's training snapshot
T = D - H. This script measures the night before it: D' = D - H, so T' = D - 2H, with the
model promoted for T' (trained on T' - H, as ``--warm-up`` trains it) and labels from
(T', T' + H], which end where the reported labels begin. It builds one lake (ingest, the
warm-up model of T', the data stages and text vectors of D'), then runs the evaluate
stage once per setting (the conf's own values first, then each ``--try``, then the grid
of every ``--sweep`` key's values) on that lake, and prints every ours-vs-baseline row of each:

RESULT dataset=<d> setting=<k=v,...> task=<t> metric=<m> comparison=<c> n=<n> ours=<a>
       baseline=<b> diff=<d> low=<l> high=<h> verdict=<v>   (one line)

Only keys that the evaluate stage reads without retraining make sense here
(``recommend.*``; a ``model.*`` or ``train.*`` key needs a retrain: pass it with
``--set`` and compare two runs). ``--set`` overrides conf keys for every setting.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import time

from harness import ROOT


def settings(sweeps, tries, cfg):
    """The settings to evaluate, as (label, ``key=value`` overrides): the conf's own values
    of every key swept or tried first, then each ``--try`` (``"k=v k2=v2"``: one setting),
    then the grid of the ``key=v1,v2`` sweeps."""
    import json

    import yaml

    def own(key):
        section = cfg
        for part in key.split("."):
            if not hasattr(section, part):
                raise SystemExit(f"unknown conf key {key!r}")
            section = getattr(section, part)
        return json.dumps(list(section) if isinstance(section, tuple) else section)  # valid YAML

    parsed = []
    for t in tries:
        sets = t.split()
        if not sets or any("=" not in x or x.startswith("=") for x in sets):
            raise SystemExit(f"--try expects 'key=value key2=value2', got {t!r}")
        parsed.append(sets)
    keys, values = [], []
    for s in sweeps:
        key, sep, raw = s.partition("=")
        if not sep or not raw:
            raise SystemExit(f"--sweep expects key=v1,v2,..., got {s!r}")
        keys.append(key)
        values.append([v.strip() for v in raw.split(",")])
    tried = sorted({x.partition("=")[0] for sets in parsed for x in sets} | set(keys))
    out = [[f"{k}={own(k)}" for k in tried]]
    out += parsed
    out += [[f"{k}={v}" for k, v in zip(keys, combo)] for combo in itertools.product(*values)]

    def value(v):
        x = yaml.safe_load(v)
        return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x

    base = {k: value(own(k)) for k in tried}
    seen, grid = [], []
    for (
        sets
    ) in out:  # a setting equal to an earlier one once the conf's values fill it in is run once
        key = {**base, **{k: value(v) for k, _, v in (x.partition("=") for x in sets)}}
        if key not in seen:
            seen.append(key)
            grid.append((",".join(sets), sets))
    return grid


def main():
    from harness import conf_for, nightly_rows, result_lines

    from lifecycle_recs.dates import add_days
    from lifecycle_recs.pipeline import run_nightly, warm_up
    from lifecycle_recs.spark import get_spark

    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True, choices=["demo", "synthetic", "movielens", "orders"])
    p.add_argument("--users", type=int, default=None, help="synthetic: 6000; orders: 4000")
    p.add_argument("--work", default=None)
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a conf key and the values to try (repeatable: the grid of all)",
    )
    p.add_argument(
        "--try",
        dest="tries",
        action="append",
        default=[],
        metavar="'K=V K2=V2'",
        help="one setting of one or more keys (repeatable)",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="for every setting"
    )
    args = p.parse_args()
    users = args.users or {"synthetic": 6000, "orders": 4000}.get(args.dataset, 0)
    work = args.work or os.path.join(ROOT, ".bench", f"validate_{args.dataset}")
    shutil.rmtree(work, ignore_errors=True)
    cfg = conf_for(args.dataset, work, users, None, args.set)
    if not args.sweep and not args.tries:
        p.error("nothing to compare: give --sweep or --try")
    grid = settings(args.sweep, args.tries, cfg)
    spark = get_spark(cfg.spark)
    t0 = time.perf_counter()
    d = run_nightly(spark, cfg, None, ["ingest"]).snapshot_date  # the reported night D
    H = cfg.lifecycle.horizon_days
    d_val = add_days(d, -H)
    data = [s for s in cfg.stages if s in ("sequences", "lifecycle", "embeddings")]
    stages, _ = warm_up(spark, cfg, d_val, data)
    run_nightly(spark, cfg, d_val, stages, training_snapshot=True)  # T' with its labels
    t_val = add_days(d_val, -H)
    print(
        f"\n{args.dataset}: reported D={d}; validation D'={d_val}, T'={t_val}, labels ({t_val}, "
        f"{d_val}]; lake built in {time.perf_counter() - t0:.0f}s"
    )
    for label, sets in grid:
        t1 = time.perf_counter()
        one = conf_for(args.dataset, work, users, None, [*args.set, *sets])
        run = run_nightly(spark, one, d_val, ["evaluate"])
        ev = run.results[0].info
        rows = nightly_rows(spark, one, t_val)
        print(
            f"\nsetting {label}: model {ev['model']}, {ev['evaluated_users']} users, "
            f"{time.perf_counter() - t1:.0f}s"
        )
        print("\n".join(result_lines(rows, f"dataset={args.dataset} setting={label}")))


if __name__ == "__main__":
    main()
