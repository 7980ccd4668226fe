"""The longer profile of the ingest fuzz (tests/stages/test_ingest_fuzz.py):
``python benchmarks/fuzz_ingest.py --examples 50`` runs that property with more
examples (each 1-3 batches through real Spark and Delta, checked against the
pure-Python oracle) and prints how many ran and how long they took."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=50)
    args = ap.parse_args()
    env = dict(os.environ, FUZZ_EXAMPLES=str(args.examples))
    t0 = time.perf_counter()
    rc = subprocess.call(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/stages/test_ingest_fuzz.py",
        ],
        cwd=ROOT,
        env=env,
    )
    print(f"fuzz_ingest: examples={args.examples} rc={rc} seconds={time.perf_counter() - t0:.0f}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
