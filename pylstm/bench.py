"""``pylstm bench``: runs the benchmark suite in the source tree's ``benchmarks`` package.

The suite needs only numpy and pylstm; onnxruntime (with onnx) and torch are optional anchors
whose rows say so when missing. It is imported lazily, only when :func:`main` runs.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["main"]


def _is_suite(mod: ModuleType) -> bool:
    return callable(getattr(mod, "main", None)) and hasattr(mod, "run_suite")


def _load_suite() -> ModuleType | None:
    """``benchmarks.run`` from the import path, else from the checkout this package lives in."""
    try:
        mod = importlib.import_module("benchmarks.run")
        if _is_suite(mod):
            return mod
    except ImportError:
        pass
    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "run.py").is_file():
        return None
    for name in [n for n in sys.modules if n == "benchmarks" or n.startswith("benchmarks.")]:
        del sys.modules[name]  # an unrelated 'benchmarks' package shadowed ours
    sys.path.insert(0, str(root))
    try:
        mod = importlib.import_module("benchmarks.run")
    except ImportError:
        return None
    finally:
        sys.path.remove(str(root))
    return mod if _is_suite(mod) else None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark suite with command-line arguments ``argv`` (``--help`` lists them);
    return its exit status."""
    suite = _load_suite()
    if suite is None:
        print("pylstm bench: the benchmark suite (benchmarks/ in pylstm's source tree) was not "
              "found; run it from a checkout of the repository", file=sys.stderr)
        return 2
    return int(suite.main(list(argv) if argv is not None else None) or 0)
