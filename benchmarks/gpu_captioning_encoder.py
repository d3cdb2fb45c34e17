"""The captioning encoder (EfficientNet-Lite0 on onnxruntime) on CUDA against CPU.

Run ``python benchmarks/gpu_captioning_encoder.py`` (``--help`` for options). It

1. says "no CUDA device" and exits 0 when onnxruntime has no CUDAExecutionProvider or the
   session falls back to CPU (``session.get_providers()`` tells);
2. runs ``ImageEncoder.features`` and ``classify`` on scikit-image's photos (tiled to
   ``--batch`` images) on CPU and on CUDA and reports the largest differences;
3. times ``features()`` per image on each (median of ``--repeats``, images preprocessed once
   outside the timing as well as end to end).

Exit status 1 when CUDA ran and the outputs differ beyond ``--tol`` or the top-1 classes
disagree, else 0. Prints one JSON object at the end (``--json PATH`` writes it too).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np


def _median(fn: Any, repeats: int) -> float:
    fn()  # warm-up: CUDA kernels and memory arenas
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    """Compare the encoder on CUDA with CPU; 0 on success or when no CUDA is present."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32, help="images per features() call")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tol", type=float, default=2e-3,
                    help="largest allowed |CUDA - CPU| on grid and logits (TF32/cuDNN "
                         "algorithms differ from the CPU's float32 sums)")
    ap.add_argument("--cache-dir", default=None, help="safetensors cache (default: usual)")
    ap.add_argument("--json", default=None, help="also write the report here")
    args = ap.parse_args(argv)

    import onnxruntime as ort
    import skimage.data
    from pylstm_captioning.encoder import ImageEncoder, preprocess

    report: dict[str, Any] = {"onnxruntime": ort.__version__,
                              "available_providers": ort.get_available_providers()}
    photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(),
              skimage.data.rocket()]
    images = [photos[i % len(photos)] for i in range(args.batch)]
    inputs = np.stack([preprocess(im) for im in images])

    cpu = ImageEncoder(cache_dir=args.cache_dir, providers=["CPUExecutionProvider"])
    report["cpu_features_s_per_image"] = _median(
        lambda: cpu.features(images, batch_size=args.batch), args.repeats) / args.batch
    report["cpu_graph_s_per_image"] = _median(
        lambda: cpu.session.run(["grid", "mean"], {"image": inputs}), args.repeats) / args.batch

    status = 0
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        report["cuda"] = "no CUDA device (onnxruntime lists no CUDAExecutionProvider)"
    else:
        gpu = ImageEncoder(cache_dir=args.cache_dir,
                           providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        report["cuda_session_providers"] = gpu.providers
        if gpu.providers[0] != "CUDAExecutionProvider":
            report["cuda"] = "no CUDA device (the session fell back to CPU)"
        else:
            grid_c, _ = cpu.features(images, batch_size=args.batch)
            grid_g, _ = gpu.features(images, batch_size=args.batch)
            logits_c, logits_g = cpu.classify(photos), gpu.classify(photos)
            report["max_abs_diff_grid"] = float(np.abs(grid_c - grid_g).max())
            report["max_abs_diff_logits"] = float(np.abs(logits_c - logits_g).max())
            report["top1_cpu"] = logits_c.argmax(1).tolist()
            report["top1_cuda"] = logits_g.argmax(1).tolist()
            report["cuda_features_s_per_image"] = _median(
                lambda: gpu.features(images, batch_size=args.batch), args.repeats) / args.batch
            report["cuda_graph_s_per_image"] = _median(
                lambda: gpu.session.run(["grid", "mean"], {"image": inputs}),
                args.repeats) / args.batch
            ok = (max(report["max_abs_diff_grid"], report["max_abs_diff_logits"]) <= args.tol
                  and report["top1_cpu"] == report["top1_cuda"])
            report["cuda"] = "ok" if ok else f"outputs differ beyond --tol {args.tol}"
            status = 0 if ok else 1
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
