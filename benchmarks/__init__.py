"""Benchmark tools run from a checkout.

The suite itself is :mod:`pylstm.bench` (``pylstm bench``; ``python -m benchmarks.run`` calls
it and keeps the results in ``benchmarks/results``). Here too: ``gpu_check.py`` (the CUDA path
of the onnxruntime backend) and ``recorder_overhead.py`` (what recording costs per layer call).
"""
