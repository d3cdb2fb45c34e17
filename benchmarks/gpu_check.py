"""Check the onnxruntime CUDA backend: did CUDA really run, do the numbers match Rust, how fast?

Run ``python benchmarks/gpu_check.py`` (``--help`` for sizes). It

1. lists onnxruntime's providers and says "no CUDA device" when CUDA is not usable (the
   CPU-only package, or onnxruntime-gpu without a working driver, which falls back to CPU);
2. runs a ``pylstm.LSTM`` on the ``onnxruntime`` backend with CUDA preferred and reads back
   which provider the session really used (``session.get_providers()``) and, from an
   onnxruntime profile, which provider executed each LSTM node;
3. compares the outputs with the Rust backend (max abs difference);
4. times Rust, onnxruntime CPU and (when present) onnxruntime CUDA, median of ``--repeats``.

Exit status 0 unless the outputs disagree beyond ``--tol`` (or CUDA was listed, started, and
the LSTM nodes still ran elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from typing import Any

import numpy as np


def _median_time(fn: Any, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _profiled_providers(model: Any, feeds: dict[str, np.ndarray], providers: list[str]
                        ) -> dict[str, list[str]]:
    """Run ``model`` once with profiling; map op type -> providers that executed its nodes."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = os.path.join(tmp, "pylstm_gpu_check")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sess = ort.InferenceSession(model.SerializeToString(), sess_options=so,
                                        providers=providers)
        sess.run(None, feeds)
        path = sess.end_profiling()
        with open(path) as f:
            events = json.load(f)
    out: dict[str, set[str]] = {}
    for ev in events:
        args = ev.get("args") or {}
        if ev.get("cat") == "Node" and "provider" in args and "op_name" in args:
            out.setdefault(args["op_name"], set()).add(args["provider"])
    return {k: sorted(v) for k, v in sorted(out.items())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--input", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--tol", type=float, default=1e-3,
                   help="max abs difference allowed between Rust and onnxruntime")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = p.parse_args(argv)

    import pylstm
    from pylstm.backends import get_backend, use_backend
    from pylstm.interop.onnx_export import export_lstm

    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime is not installed: pip install 'pylstm[gpu]' (or [onnx] for CPU)")
        return 0

    report: dict[str, Any] = {"onnxruntime": ort.__version__,
                              "available_providers": list(ort.get_available_providers()),
                              "device": ort.get_device()}
    print(f"onnxruntime {ort.__version__}, device {ort.get_device()}, "
          f"providers: {', '.join(report['available_providers'])}")

    m = pylstm.LSTM(args.input, args.hidden, num_layers=args.layers,
                    bidirectional=args.bidirectional, seed=0).eval()
    x = np.random.default_rng(0).standard_normal(
        (args.seq, args.batch, args.input)).astype(np.float32)
    flops = (2 * args.seq * args.batch * 4 * args.hidden * (args.input + args.hidden)
             + (args.layers - 1) * 2 * args.seq * args.batch * 4 * args.hidden
             * ((2 if args.bidirectional else 1) * args.hidden + args.hidden))
    flops *= 2 if args.bidirectional else 1
    report["config"] = vars(args) | {"gflop_per_forward": flops / 1e9}

    with use_backend("rust"):
        y_rust, (h_rust, _) = m(x)

    cuda_listed = "CUDAExecutionProvider" in report["available_providers"]
    results: dict[str, dict[str, Any]] = {}
    status = 0
    runs = [("onnxruntime-cpu", ["CPUExecutionProvider"])]
    if cuda_listed:
        runs.insert(0, ("onnxruntime-cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]))
    cuda_ran = False
    for label, providers in runs:
        be = get_backend("onnxruntime", providers=providers)
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            y, (h, _) = be.run_module(m, x, None, None)
        used = list(be.last_providers)
        diff = max(float(np.abs(y - y_rust).max()), float(np.abs(h - h_rust).max()))
        t = _median_time(lambda be=be: be.run_module(m, x, None, None), args.repeats)
        results[label] = {"providers_used": used, "max_abs_diff_vs_rust": diff,
                          "seconds": t, "gflops": flops / t / 1e9,
                          "warnings": [str(w.message) for w in rec]}
        for w in rec:
            print(f"  warning: {w.message}")
        if diff > args.tol:
            print(f"  MISMATCH: {label} differs from rust by {diff:.3g} > {args.tol}")
            status = 1
        if label == "onnxruntime-cuda":
            cuda_ran = used[:1] == ["CUDAExecutionProvider"]
            if cuda_ran:
                model = export_lstm(m)
                placed = _profiled_providers(model, {"input": x}, providers)
                results[label]["node_providers"] = placed
                lstm_on = placed.get("LSTM", [])
                print(f"  profile: LSTM nodes ran on {', '.join(lstm_on) or '?'}")
                if "CUDAExecutionProvider" not in lstm_on:
                    print("  the session has CUDA but the LSTM nodes ran elsewhere")
                    status = 1
    with use_backend("rust"):
        t_rust = _median_time(lambda: m(x), args.repeats)
    results["rust"] = {"seconds": t_rust, "gflops": flops / t_rust / 1e9,
                       "devices": get_backend("rust").devices()}
    report["results"] = results

    if not cuda_listed:
        print("no CUDA device: onnxruntime lists no CUDAExecutionProvider "
              "(CPU-only onnxruntime package); compared rust with onnxruntime CPU only")
    elif not cuda_ran:
        print("no CUDA device: CUDAExecutionProvider is listed but the session fell back to "
              f"{', '.join(results['onnxruntime-cuda']['providers_used'])}")
    else:
        print("CUDA ran: session.get_providers() = "
              f"{results['onnxruntime-cuda']['providers_used']}")
    report["cuda_ran"] = cuda_ran
    print(f"{'backend':18} {'providers used':42} {'ms':>9} {'GFLOP/s':>8} {'max|diff|':>10}")
    for label, r in results.items():
        used = ", ".join(r.get("providers_used", r.get("devices", [])))
        diff = r.get("max_abs_diff_vs_rust")
        print(f"{label:18} {used[:42]:42} {r['seconds'] * 1e3:9.2f} {r['gflops']:8.1f} "
              f"{'' if diff is None else f'{diff:10.2e}'}")
    if args.json:
        print(json.dumps(report, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())
