"""Run-time settings of the Rust engine: threads, the SIMD kernel path, and a summary."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pylstm import _checks, _core
from pylstm.errors import DTypeError, LstmValueError

__all__ = ["blas_threads", "get_num_threads", "info", "kernel", "set_kernel", "set_num_threads"]


def set_num_threads(n: int) -> None:
    """Set how many threads the engine uses (also set by ``PYLSTM_NUM_THREADS``).

    Raises ``DTypeError`` unless ``n`` is an int (never a bool or a float), ``LstmValueError``
    unless it is positive.
    """
    _core.set_num_threads(_checks.positive_int("n", n))


def get_num_threads() -> int:
    """The number of threads the engine uses."""
    return int(_core.num_threads())


@contextmanager
def blas_threads(n: int = 1, engine: int | None = None) -> Iterator[None]:
    """Inside, numpy's BLAS uses ``n`` threads (and the engine ``engine`` threads, if given);
    the old counts after.

    Models built of many small products (a decoder step over a batch of rows) run them faster
    on one BLAS thread: OpenBLAS's pool costs more than such a product, and its spinning
    threads fight the engine's for the cores. threadpoolctl finds the BLAS numpy loaded.
    Raises ``DTypeError``/``LstmValueError`` for a count that is not a positive int.
    """
    from threadpoolctl import threadpool_limits

    n = _checks.positive_int("n", n)
    old = get_num_threads()
    if engine is not None:
        set_num_threads(engine)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        set_num_threads(old)


def kernel() -> str:
    """The point-wise kernel path in use: ``scalar``, ``avx2``, ``avx512`` or ``neon``."""
    return str(_core.kernel())


def set_kernel(name: str) -> None:
    """Pin the point-wise kernels to a path (also set by ``PYLSTM_KERNEL``).

    Raises ``LstmValueError`` for an unknown name or a path this CPU cannot run,
    ``DTypeError`` for a name that is not a str.
    """
    if not isinstance(name, str):
        raise DTypeError(f"name: expected a kernel path name (str), got {_checks.type_name(name)}")
    _core.set_kernel(name)


COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype_is_bf16(compute_dtype: Any) -> bool:
    """Checks a ``compute_dtype`` argument; whether it asks for bfloat16."""
    if not isinstance(compute_dtype, str) or compute_dtype not in COMPUTE_DTYPES:
        raise LstmValueError(f"compute_dtype: expected one of {', '.join(COMPUTE_DTYPES)}, got "
                             f"{compute_dtype!r}")
    return compute_dtype == "bfloat16"


def amx_unavailable() -> str | None:
    """``None`` where ``compute_dtype="bfloat16"`` can run (AMX bfloat16 tiles, granted by
    Linux), else the reason it cannot."""
    return _core.amx_unavailable()


def check_bf16_compute_available() -> None:
    """Raises :class:`LstmValueError` naming why ``compute_dtype="bfloat16"`` cannot run here."""
    why = amx_unavailable()
    if why is not None:
        raise LstmValueError(f"compute_dtype='bfloat16': needs AMX bfloat16 tiles, unavailable "
                             f"here: {why}")


def info() -> dict[str, Any]:
    """Version, SIMD path in use, supported paths, thread count, and the compute dtypes this
    CPU runs (``"amx"``: ``"available"``, or why the bfloat16 tiles are not)."""
    from pylstm import __version__

    amx = amx_unavailable()
    return {
        "version": __version__,
        "kernel": kernel(),
        "detected_kernel": _core.detected_kernel(),
        "supported_kernels": list(_core.supported_kernels()),
        "num_threads": get_num_threads(),
        "dtypes": ["float32", "float64"],
        "compute_dtypes": ["float32"] + (["bfloat16"] if amx is None else []),
        "amx": amx or "available",
    }


def _install_process_hooks() -> None:
    """Reset the thread pool in forked children (their copy has no threads behind it) and
    report an unusable ``PYLSTM_KERNEL`` once."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_core.reset_after_fork)
    problem = _core.kernel_env_warning()
    if problem:
        warnings.warn(problem, RuntimeWarning, stacklevel=3)
    env_threads = os.environ.get("PYLSTM_NUM_THREADS", "").strip()
    if env_threads and not (env_threads.isdigit() and int(env_threads) > 0):
        warnings.warn(
            f"PYLSTM_NUM_THREADS: expected a positive integer, got {env_threads!r}; "
            f"using {get_num_threads()} threads",
            RuntimeWarning,
            stacklevel=3,
        )
