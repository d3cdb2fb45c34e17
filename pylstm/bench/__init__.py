"""pylstm's benchmark suite (``pylstm bench``): the engine against onnxruntime's and PyTorch's
CPU LSTMs on the same machine and thread count.

It ships inside the package, so it runs from an installed wheel. Only numpy and pylstm are
required; onnxruntime (with onnx) and torch are optional anchors whose rows say so when
missing. Modules: :mod:`.cases` (what is measured, each case checked against its anchors
first), :mod:`.anchors` (onnxruntime and PyTorch counterparts), :mod:`.timing` (interleaved
timing, the GEMM and FMA peaks), :mod:`.report` (the table and the targets), :mod:`.suite`
(the command line).
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the suite with command-line arguments ``argv`` (``--help`` lists them); return its
    exit status (0 when every selected case ran, 1 when one errored, 2 for bad arguments)."""
    from pylstm.bench import suite  # numpy-heavy set-up only when the suite runs

    return suite.main(argv)
