"""Run fuzz cases in this process and report every broken promise.

    python tests/fuzz/runner.py --target functional --seed 0 --iterations 2000
    python tests/fuzz/runner.py --target modules --seed 0 --index 123 --verbose   # replay one

Case ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``, so any single
case replays alone. Before each call the runner prints ``CALL <i> <description>`` (flushed):
when the process dies, the last such line names the call that killed it. Each broken promise
is printed as ``VIOLATION <json>``; the last line is ``DONE <json summary>``. The exit status
is 1 when there was any violation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from oracle import judge  # noqa: E402

TARGETS = ("functional", "modules", "files", "cli")


def _generator(target: str):
    if target == "functional":
        from cases_functional import make_case
    elif target == "modules":
        from cases_modules import make_case
    elif target == "files":
        from cases_files import make_case
    elif target == "cli":
        from cases_cli import make_case
    else:
        raise SystemExit(f"--target: expected one of {list(TARGETS)}, got {target!r}")
    return make_case


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--start", type=int, default=0, help="first case index")
    p.add_argument("--index", type=int, default=None, help="run only this case")
    p.add_argument("--verbose", action="store_true", help="print every case's outcome")
    args = p.parse_args(argv)
    make_case = _generator(args.target)
    indices = [args.index] if args.index is not None else \
        range(args.start, args.start + args.iterations)
    outcomes: Counter[str] = Counter()
    violations = 0
    t0 = time.perf_counter()
    for i in indices:
        rng = np.random.default_rng([args.seed, i])
        case = make_case(rng)
        print(f"CALL {i} {case.desc}", flush=True)
        problem = judge(case)
        outcomes[case.expect] += 1
        if problem:
            violations += 1
            print("VIOLATION " + json.dumps({
                "target": args.target, "seed": args.seed, "index": i, "call": case.desc,
                "expect": case.expect, "problem": problem,
                "replay": f"python tests/fuzz/runner.py --target {args.target} "
                          f"--seed {args.seed} --index {i} --verbose"}), flush=True)
        elif args.verbose:
            print(f"  fine ({case.expect})", flush=True)
    summary = {"target": args.target, "seed": args.seed, "cases": sum(outcomes.values()),
               "violations": violations, "by_expectation": dict(outcomes),
               "seconds": round(time.perf_counter() - t0, 2)}
    print("DONE " + json.dumps(summary), flush=True)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
