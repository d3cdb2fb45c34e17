"""The benchmark suite from a checkout: ``python -m benchmarks.run`` / ``python benchmarks/run.py``.

The suite itself lives in the package (:mod:`pylstm.bench`, also ``pylstm bench``); from a
checkout the results go to ``benchmarks/results/latest.json`` unless ``--json`` says otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pylstm.bench import main as bench_main

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def main(argv: list[str] | None = None) -> int:
    """Run ``pylstm.bench`` with ``argv``, writing JSON into ``benchmarks/results`` by default."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--json" or a.startswith("--json=") for a in args):
        args += ["--json", str(RESULTS)]
    return bench_main(args)


if __name__ == "__main__":
    sys.exit(main())
