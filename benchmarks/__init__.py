"""pylstm's benchmark suite: the engine against onnxruntime's and PyTorch's CPU LSTMs.

Run it as ``python -m benchmarks.run``, ``python benchmarks/run.py`` or ``pylstm bench``
(``pylstm.bench.main``). Only numpy and pylstm are required; onnxruntime (with onnx) and
torch are optional anchors, and rows whose anchor is missing say so.
"""
