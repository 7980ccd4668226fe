"""The longer profile of the ingest fuzz (tests/system/test_ingest_fuzz.py):
``python benchmarks/fuzz_ingest.py --examples 50`` runs that property with more
examples (each 1-3 batches through real Spark and Delta, checked against the
pure-Python oracle) and prints how many ran and how long they took."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from harness import ROOT, result, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=50)
    args = ap.parse_args()
    env = dict(os.environ, FUZZ_EXAMPLES=str(args.examples))
    rc = 0

    def run():
        nonlocal rc
        rc = subprocess.call(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/system/test_ingest_fuzz.py",
            ],
            cwd=ROOT,
            env=env,
        )

    secs = seconds(run)
    print(result(examples=args.examples, rc=rc, seconds=round(secs)))
    return rc


if __name__ == "__main__":
    sys.exit(main())
