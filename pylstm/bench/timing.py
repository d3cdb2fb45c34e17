"""Timing primitives: interleaved medians, FLOP counts and this machine's float32 GEMM peak."""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

import pylstm
from pylstm import _core

__all__ = ["TimingConfig", "fma_peak", "gemm_peak", "lstm_flops", "measure", "median_ms"]


@dataclass(frozen=True)
class TimingConfig:
    """How each row is timed.

    Contenders run in blocks: on switching to a contender the suite pauses ``settle_s`` (the
    previous library's worker threads keep spinning for tens of milliseconds after a call —
    onnxruntime's pool for about 50 ms — and on a 2-core machine they would take a core from
    the next contender), makes ``warmup`` untimed calls, then ``block`` timed calls back to back.
    Blocks alternate A B, B A, ... until each contender has ``min_repeats`` timed calls and
    ``budget_s`` has passed, or ``max_repeats`` is reached.
    """

    warmup: int = 1
    min_repeats: int = 6
    max_repeats: int = 40
    budget_s: float = 2.0
    block: int = 3
    settle_s: float = 0.1


def measure(fns: Mapping[str, Callable[[], Any]], cfg: TimingConfig,
            before: Mapping[str, Callable[[], Any]] | None = None) -> dict[str, list[float]]:
    """Time each callable in alternating blocks so that they share the machine's noise but not
    each other's spinning threads.

    Args:
        fns: contender name -> a call to time.
        cfg: warm-up, repeats, block size, settle time and budget.
        before: optional contender name -> an untimed call made at the start of each of its
            blocks (e.g. switching the engine's thread count).

    Returns:
        contender name -> seconds of each timed call, in order.
    """
    names = list(fns)
    before = before or {}
    times: dict[str, list[float]] = {name: [] for name in names}

    def run_block(name: str) -> None:
        if name in before:
            before[name]()
        time.sleep(cfg.settle_s)
        for _ in range(cfg.warmup):
            fns[name]()
        for _ in range(cfg.block):
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)

    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        rnd = 0
        while True:
            for name in (names if rnd % 2 == 0 else names[::-1]):
                run_block(name)
            rnd += 1
            done = min(len(v) for v in times.values())
            if done >= cfg.max_repeats:
                break
            if done >= cfg.min_repeats and time.perf_counter() - start >= cfg.budget_s:
                break
            gc.collect()
    finally:
        if was_enabled:
            gc.enable()
    return times


def median_ms(seconds: list[float], per_call: int = 1) -> float:
    """Median of timed calls in milliseconds, divided by the calls each timing covered."""
    return statistics.median(seconds) * 1e3 / per_call


def lstm_flops(hidden: int, input_size: int, batch: int, steps: int, layers: int = 1,
               directions: int = 1, backward: bool = False, tokens: int | None = None) -> float:
    """FLOPs of an LSTM: forward = 2·T·B·4H·(I+H) per layer and direction; backward ≈ 2× that.

    Layers after the first take ``directions * hidden`` inputs. ``tokens`` (the sum of the
    sequence lengths) replaces ``T·B`` for a variable-length batch.
    """
    tb = tokens if tokens is not None else steps * batch
    total = 0.0
    for layer in range(layers):
        inp = input_size if layer == 0 else directions * hidden
        total += directions * 2.0 * tb * 4 * hidden * (inp + hidden)
    return total * (3.0 if backward else 1.0)


_GEMM_N = 2048
_GEMM_SCRIPT = """
import sys, time, json
import numpy as np

n, reps = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
for _ in range(2):
    a @ b
ts = []
for _ in range(reps):
    t0 = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t0)
arch = None
try:
    from threadpoolctl import threadpool_info
    arch = [i.get("architecture") for i in threadpool_info() if i.get("user_api") == "blas"]
except ImportError:
    pass
print(json.dumps({"times": ts, "architecture": arch}))
"""


def _gflops(times: list[float], n: int = _GEMM_N) -> tuple[float, float]:
    flops = 2.0 * n ** 3
    return flops / min(times) / 1e9, flops / statistics.median(times) / 1e9


def _numpy_gemm_inprocess(threads: int, reps: int, n: int) -> dict[str, Any] | None:
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        for _ in range(2):
            a @ b
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ b
            ts.append(time.perf_counter() - t0)
        arch = [i.get("architecture") for i in threadpool_info() if i.get("user_api") == "blas"]
    best, med = _gflops(ts, n)
    return {"source": "numpy (threadpoolctl)", "gflops_best": best, "gflops_median": med,
            "architecture": arch}


def _numpy_gemm_subprocess(threads: int, reps: int, drop_coretype: bool,
                           n: int) -> dict[str, Any] | None:
    env = dict(os.environ)
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)
    if drop_coretype:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    try:
        out = subprocess.run([sys.executable, "-c", _GEMM_SCRIPT, str(n), str(reps)],
                             env=env, capture_output=True, text=True, timeout=300, check=True)
        import json

        data = json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        return None
    best, med = _gflops(data["times"], n)
    src = "numpy (subprocess" + (", OPENBLAS_CORETYPE/L2_SIZE unset)" if drop_coretype else ")")
    return {"source": src, "gflops_best": best, "gflops_median": med,
            "architecture": data.get("architecture")}


def _torch_gemm(threads: int, reps: int, n: int) -> dict[str, Any] | None:
    try:
        import torch
    except ImportError:
        return None
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n, dtype=torch.float32)
        b = torch.randn(n, n, dtype=torch.float32)
        for _ in range(2):
            torch.mm(a, b)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b)
            ts.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    best, med = _gflops(ts, n)
    return {"source": "torch.mm", "gflops_best": best, "gflops_median": med}


def fma_peak(threads: int, seconds: float = 0.5, reps: int = 3) -> dict[str, Any]:
    """This machine's float32 arithmetic peak on ``threads`` threads, measured now: pylstm's
    engine runs fused multiply-adds from registers only on every thread at once (the bound no
    matrix product can beat; a GEMM reaches 80-90% of it). The best of ``reps`` runs."""
    before = pylstm.get_num_threads()
    pylstm.set_num_threads(threads)
    try:
        runs = [_core.fma_peak(seconds) for _ in range(reps)]
    finally:
        pylstm.set_num_threads(before)
    return {"threads": threads, "gflops": max(runs), "runs": runs, "kernel": pylstm.kernel()}


def gemm_peak(threads: int, reps: int = 7, n: int = _GEMM_N) -> dict[str, Any]:
    """This machine's float32 GEMM peak (``n``³, 2048 by default) on ``threads`` threads,
    measured now.

    numpy/OpenBLAS under threadpoolctl when it is installed, else numpy in a subprocess with
    ``OPENBLAS_NUM_THREADS``; where ``OPENBLAS_CORETYPE`` or ``OPENBLAS_L2_SIZE`` is set in the
    environment (it slows a current OpenBLAS on some processors), numpy is also measured in a
    subprocess with both unset. torch.mm is measured for reference and is the fallback. The
    peak is the best (not the median) GFLOP/s of the chosen source: a conservative denominator
    on a noisy machine.
    """
    sources: list[dict[str, Any]] = []
    inproc = _numpy_gemm_inprocess(threads, reps, n)
    if inproc is None:
        inproc = _numpy_gemm_subprocess(threads, reps, drop_coretype=False, n=n)
    if inproc is not None:
        sources.append(inproc)
    coretype_env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                    if k in os.environ}
    if coretype_env:
        clean = _numpy_gemm_subprocess(threads, reps, drop_coretype=True, n=n)
        if clean is not None:
            sources.append(clean)
    torch_src = _torch_gemm(threads, reps, n)
    if torch_src is not None:
        sources.append(torch_src)
    numpy_sources = [s for s in sources if s["source"].startswith("numpy")]
    chosen = max(numpy_sources or sources, key=lambda s: s["gflops_best"], default=None)
    return {
        "n": n,
        "threads": threads,
        "gflops": chosen["gflops_best"] if chosen else float("nan"),
        "source": chosen["source"] if chosen else "none",
        "openblas_env": coretype_env,
        "sources": sources,
    }
