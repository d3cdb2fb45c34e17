"""Data-parallel scaling of translation training on MPI: 1 process vs K ranks, 1 thread each.

Run ``python benchmarks/distributed_scaling.py`` (``--help`` for sizes) with nothing else on
the machine. It trains the translation task for ``--epochs`` on the default data (``--max-pairs``
of it) once on one process and once under ``mpirun -n K`` with the same per-rank batch, then
prints, per run, the target tokens per second of the epochs after the first (every rank's
tokens), the scaling efficiency (K-rank tokens/s over K x one-process tokens/s), the share of
step time rank 0 spent in the gradient allreduce (waiting for the slowest rank included), and
writes the table as JSON to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def _mpirun() -> str:
    here = Path(sys.executable).parent / "mpirun"
    return str(here) if here.exists() else "mpirun"


def _train(ranks: int, out: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    head = [_mpirun(), "-n", str(ranks), "--bind-to", "core"] if ranks > 1 else []
    cmd = [*head, sys.executable, "-m", "pylstm", "-q", "--threads", "1", "--out", str(out),
           "train", "translation", "--max-pairs", str(args.max_pairs), "--epochs",
           str(args.epochs), "--batch-tokens", str(args.batch_tokens), "--no-baseline",
           "--time-budget", "0", "--beam", "1", "--valid-size", "100", "--test-size", "100"]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"distributed_scaling: {ranks} rank(s) failed:\n{done.stderr[-2000:]}")
    return json.loads((out / "checkpoint" / "state.json").read_text())["history"]


def _row(ranks: int, history: list[dict[str, Any]]) -> dict[str, Any]:
    timed = history[1:] or history  # the first epoch pays the warm-up
    seconds = sum(r["seconds"] for r in timed)
    tokens = sum(r["tokens_per_s"] * r["seconds"] for r in timed)
    sync = sum(r.get("allreduce_s", 0.0) for r in timed)
    return {"ranks": ranks, "epochs_timed": len(timed), "tokens_per_s": tokens / seconds,
            "allreduce_share": sync / seconds, "final_train_loss": history[-1]["train_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--max-pairs", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-tokens", type=int, default=1000,
                        help="target tokens per batch, per rank")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in (1, args.ranks):
            rows.append(_row(ranks, _train(ranks, Path(tmp) / f"r{ranks}", args)))
    one = rows[0]["tokens_per_s"]
    for row in rows:
        row["speedup"] = row["tokens_per_s"] / one
        row["efficiency"] = row["speedup"] / row["ranks"]
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"translation training, 1 thread per rank, {cpu}, {os.cpu_count()} cores")
    print(f"{'ranks':>5} {'tok/s':>9} {'speedup':>8} {'efficiency':>10} {'allreduce':>9} "
          f"{'train loss':>10}")
    for r in rows:
        print(f"{r['ranks']:>5} {r['tokens_per_s']:>9.0f} {r['speedup']:>8.2f} "
              f"{r['efficiency']:>10.2f} {r['allreduce_share']:>9.1%} "
              f"{r['final_train_loss']:>10.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"cpu": cpu, "cores": os.cpu_count(), "rows": rows},
                                        indent=2))


if __name__ == "__main__":
    main()
