"""One BLAS thread (and few engine threads) while the small products of DMN+ run.

The memory's products are tiny (a batch of ``[B, D]`` rows); OpenBLAS spreading each over its
thread pool costs more than the product, and on a busy two-core host it was measured five times
slower per training step than one thread. numpy bundles OpenBLAS as ``scipy_openblas``; its
``set_num_threads`` is found in the loaded library (Linux, as threadpoolctl does) and restored
afterwards. Elsewhere, or with another BLAS, this does nothing. The engine's LSTMs here are
small too (a batch of stories, ``dim`` 80): one engine thread ran a training step three times
faster than two on the same host, so :func:`small_products` sets the engine's thread count as
well (restored afterwards).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pylstm

__all__ = ["one_blas_thread", "small_products"]

_NAMES = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
          ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
          ("openblas_set_num_threads", "openblas_get_num_threads"))
_cached: list[Any] = []


def _openblas() -> tuple[Any, Any] | None:
    if _cached:
        return _cached[0]
    found = None
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = sorted({line.split()[-1] for line in f
                            if "openblas" in line.lower() and line.split()[-1].startswith("/")})
        for path in paths:
            lib = ctypes.CDLL(path)
            for set_name, get_name in _NAMES:
                if hasattr(lib, set_name) and hasattr(lib, get_name):
                    found = (getattr(lib, set_name), getattr(lib, get_name))
                    break
            if found:
                break
    except OSError:
        found = None
    _cached.append(found)
    return found


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


@contextmanager
def small_products(engine_threads: int | None = 1) -> Iterator[None]:
    """One BLAS thread and ``engine_threads`` engine threads (``None``: leave the engine's)."""
    old = pylstm.get_num_threads()
    if engine_threads is not None:
        pylstm.set_num_threads(engine_threads)
    try:
        with one_blas_thread():
            yield
    finally:
        pylstm.set_num_threads(old)
