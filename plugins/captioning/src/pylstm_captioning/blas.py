"""One BLAS thread while the decoder's small per-step products run.

A decoder step multiplies a batch of 64 rows by matrices of a few hundred columns; OpenBLAS
spreading each such product over its threads costs more than the product itself. Measured on
the project's busy 2-core host: ``[64, 384] x [384, 1280]`` took 7.4 ms on 2 OpenBLAS threads
and 0.65 ms on one, and a whole training step 4 s against 0.45 s. numpy bundles OpenBLAS (as
``scipy_openblas``); its ``set_num_threads`` is looked up in the loaded library, as
threadpoolctl does, and the old count restored afterwards. With another BLAS, or where the
library cannot be found, this does nothing. (The DMN plugin carries the same helper; it belongs
in the toolkit.)
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["one_blas_thread"]

_NAMES = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
          ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
          ("openblas_set_num_threads", "openblas_get_num_threads"))
_found: list[tuple[Any, Any] | None] = []


def _openblas() -> tuple[Any, Any] | None:
    if _found:
        return _found[0]
    result = None
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = sorted({line.split()[-1] for line in f
                            if "openblas" in line.lower() and line.split()[-1].startswith("/")})
        for path in paths:
            lib = ctypes.CDLL(path)
            for set_name, get_name in _NAMES:
                if hasattr(lib, set_name) and hasattr(lib, get_name):
                    result = (getattr(lib, set_name), getattr(lib, get_name))
                    break
            if result:
                break
    except OSError:
        result = None
    _found.append(result)
    return result


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Inside, OpenBLAS uses one thread (when it can be reached); the old count after."""
    fns = _openblas()
    if fns is None:
        yield
        return
    set_threads, get_threads = fns
    old = int(get_threads())
    set_threads(1)
    try:
        yield
    finally:
        set_threads(old)
