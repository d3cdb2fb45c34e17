"""Run pylstm's benchmark suite.

    pylstm bench [--quick] [--threads N] [--filter REGEX ...] [--json PATH]
    python -m pylstm.bench ...

Prints a table (rich if installed), the issue's targets marked met / not met, and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

import pylstm
from pylstm.bench import cases as _cases
from pylstm.bench import report
from pylstm.bench.timing import TimingConfig, fma_peak, gemm_peak

__all__ = ["DEFAULT_JSON", "build_parser", "main", "run_suite"]

DEFAULT_JSON = Path("pylstm-bench.json")
"""Where the results go by default: the current folder (the package may be read-only)."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(prog="pylstm bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="one small shape per group, a few repeats: checks that every case runs "
                        "(seconds; the timings mean little)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for ours and every anchor (default: pylstm's current count)")
    p.add_argument("--filter", action="append", default=[], metavar="REGEX",
                   help="run only cases whose id (e.g. inference/h512-b1-t25) matches; "
                        "repeatable (any match)")
    p.add_argument("--json", default=str(DEFAULT_JSON), metavar="PATH",
                   help=f"where to write the results (default {DEFAULT_JSON}; '-' for stdout, "
                        "'' to skip)")
    p.add_argument("--repeats", type=int, default=None, help="minimum timed repeats per row")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timing per row before stopping past the minimum repeats")
    p.add_argument("--list", action="store_true", help="list the case ids and exit")
    p.add_argument("--plain", action="store_true", help="plain-text table even if rich exists")
    p.add_argument("--markdown", default=None, metavar="PATH",
                   help="also write the table and targets as Markdown")
    p.add_argument("--seed", type=int, default=0, help="random seed for weights and inputs")
    return p


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("torch", "onnxruntime", "onnx", "threadpoolctl"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except ImportError:
            out[name] = None
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: The instruction-set flags that decide which kernels can run (``/proc/cpuinfo`` names).
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512_bf16", "avx512_fp16",
              "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")


def cpu_flags() -> list[str]:
    """Which of :data:`SIMD_FLAGS` this CPU reports (empty where ``/proc/cpuinfo`` is not)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in SIMD_FLAGS if f in have]
    except OSError:
        pass
    return []


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _expected_counts(all_cases: list[_cases.Case]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in report.TARGETS:
        probe = [dict(group=c.group, batch=_batch_of(c.id)) for c in all_cases]
        counts[t.key] = sum(1 for r in probe if t.select(r))
    return counts


def _batch_of(case_id: str) -> int:
    m = re.search(r"-b(\d+)", case_id)
    return int(m.group(1)) if m else 1


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    """Run the selected cases; return ``{"meta", "rows", "targets", "errors"}``."""
    threads = args.threads or pylstm.get_num_threads()
    pylstm.set_num_threads(threads)
    all_cases = _cases.all_cases()
    selected = _cases.all_cases(quick=True) if args.quick else all_cases
    if args.filter:
        pats = [re.compile(f) for f in args.filter]
        selected = [c for c in selected if any(p.search(c.id) for p in pats)]
    if args.quick:
        timing = TimingConfig(warmup=1, min_repeats=2, max_repeats=3, budget_s=0.02, block=1,
                              settle_s=0.02)
        lat = TimingConfig(warmup=2, min_repeats=5, max_repeats=10, budget_s=0.02, block=5,
                           settle_s=0.02)
    else:
        timing = TimingConfig(warmup=1, min_repeats=6, max_repeats=30, budget_s=2.0, block=3)
        lat = TimingConfig(warmup=10, min_repeats=200, max_repeats=2000, budget_s=2.0, block=100)
    if args.repeats is not None:
        timing = dataclasses.replace(timing, min_repeats=args.repeats,
                                     max_repeats=max(args.repeats, timing.max_repeats))
    if args.budget is not None:
        timing = dataclasses.replace(timing, budget_s=args.budget)
    meta: dict[str, Any] = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv if args.argv is None else args.argv,
        "quick": bool(args.quick), "filter": args.filter, "threads": threads,
        "cpu": _cpu_model(), "cpu_flags": cpu_flags(), "cpu_count": os.cpu_count(),
        "pylstm": pylstm.info(),
        "versions": _versions(), "loadavg_start": _loadavg(),
        "timing": dataclasses.asdict(timing), "latency_timing": dataclasses.asdict(lat),
    }
    t0 = time.perf_counter()
    say = print if args.json != "-" else (lambda *a, **k: print(*a, file=sys.stderr, **k))
    load, cpus = meta["loadavg_start"], os.cpu_count() or 0
    if load and cpus and load[0] > 0.5 * cpus:
        meta["busy_warning"] = (f"load average {load[0]} on {cpus} CPUs before the "
                                "run: other processes share the cores; expect noisy timings")
        say("WARNING: " + meta["busy_warning"], flush=True)
    gemm_n, gemm_reps = (512, 3) if args.quick else (2048, 7)
    say(f"measuring float32 GEMM peak ({gemm_n}^3, {threads} threads) ...", flush=True)
    peak = gemm_peak(threads, reps=gemm_reps, n=gemm_n)
    meta["gemm_peak"] = peak
    say(f"  {peak['gflops']:.1f} GFLOP/s ({peak['source']})", flush=True)
    fma = fma_peak(threads, seconds=0.05, reps=1) if args.quick else fma_peak(threads)
    meta["fma_peak"] = fma
    say(f"float32 FMA peak (registers only, {threads} threads): {fma['gflops']:.1f} GFLOP/s",
        flush=True)
    ctx = _cases.Context(threads=threads, timing=timing, latency_timing=lat,
                         peak_gflops=peak["gflops"], seed=args.seed, quick=bool(args.quick))
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for i, case in enumerate(selected, 1):
        say(f"[{i}/{len(selected)}] {case.id} ...", end=" ", flush=True)
        c0 = time.perf_counter()
        try:
            row = case.run(ctx)
        except Exception as exc:  # noqa: BLE001 - a broken case must not end the suite
            say(f"ERROR {type(exc).__name__}: {exc}", flush=True)
            errors.append({"id": case.id, "error": f"{type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc()})
            continue
        finally:
            pylstm.set_num_threads(threads)
        rows.append(row)
        anchors_txt = ", ".join(f"{k} {v['speedup']:.2f}x" for k, v in row["anchors"].items()
                                if v.get("speedup") is not None)
        say(f"{row['ms']:.3f} ms, {row['gflops']:.1f} GFLOP/s; {anchors_txt} "
            f"({time.perf_counter() - c0:.1f}s)", flush=True)
    # The peak again at the end: on a shared machine one measurement may catch a busy moment;
    # the better of the two is the denominator of every row's fraction of peak.
    say("measuring float32 GEMM peak again ...", flush=True)
    peak_end = gemm_peak(threads, reps=gemm_reps, n=gemm_n)
    best = max(peak["gflops"], peak_end["gflops"])
    meta["gemm_peak"] = dict(peak, gflops=best, start_gflops=peak["gflops"],
                             end_gflops=peak_end["gflops"], end_sources=peak_end["sources"])
    say(f"  {peak_end['gflops']:.1f} GFLOP/s; using {best:.1f}", flush=True)
    for row in rows:
        row["peak_fraction"] = row["gflops"] / best if best > 0 else None
        row["fma_fraction"] = row["gflops"] / fma["gflops"] if fma["gflops"] > 0 else None
    meta["loadavg_end"] = _loadavg()
    meta["elapsed_s"] = time.perf_counter() - t0
    # the targets are judged on the full suite's shapes only: quick shapes say nothing of them
    targets = [] if args.quick else report.evaluate_targets(rows, _expected_counts(all_cases))
    return {"meta": meta, "rows": rows, "targets": targets, "errors": errors}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def main(argv: list[str] | None = None) -> int:
    """Entry point (``pylstm bench``, ``python -m pylstm.bench``); returns an exit status:
    0 when every selected case ran (targets not met do not fail), 1 when a case errored."""
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.threads is not None and args.threads < 1:
        print("--threads: expected a positive integer", file=sys.stderr)
        return 2
    if args.list:
        for c in _cases.all_cases(quick=args.quick):
            print(c.id)
        return 0
    result = run_suite(args)
    if args.json != "-":
        print()
        report.print_report(result["rows"], result["targets"], result["meta"],
                            use_rich=not args.plain)
        print(f"\n{len(result['rows'])} rows in {result['meta']['elapsed_s']:.0f}s; "
              f"{len(result['errors'])} errors")
    data = json.dumps(_jsonable(result), indent=2)
    if args.json == "-":
        print(data)
    elif args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)
        print(f"JSON: {path}")
    if args.markdown:
        Path(args.markdown).write_text(report.format_markdown(result["rows"], result["targets"],
                                                              result["meta"]) + "\n")
    return 1 if result["errors"] else 0
