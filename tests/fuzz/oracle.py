"""What every fuzzed call must do, and the pieces the case generators share.

A case is a call plus what it is allowed to do:

* ``"same"``: an equivalent form of a valid call (a strided view, a list, a numpy scalar):
  it must return exactly what the plain call returns;
* ``"ok"``: valid (NaN/inf values, zero input width): it must return the documented shapes;
* ``"error"``: invalid: it must raise;
* ``"memory"``: an impossible size: it must raise a ``MemoryError``;
* ``"any"``: either of ``"ok"`` and ``"error"``.

Whenever a call raises, the exception must be a ``pylstm.PylstmError`` that is also a
``ValueError``, ``TypeError`` or ``MemoryError``, and its message must begin with the name of
one of the arguments the case changed (``names``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import pylstm

BUILTINS = (ValueError, TypeError, MemoryError)


@dataclass
class Case:
    """A call to make and what it may do."""

    desc: str
    call: Callable[[], Any]
    expect: str
    names: set[str] = field(default_factory=set)
    check: Callable[[Any], str | None] | None = None  # a problem with a result, or None
    reference: Callable[[], Any] | None = None  # for "same": the plain call


def junk(rng: np.random.Generator, *extra: Any) -> Any:
    """A value of the wrong type for almost any argument."""
    pool = ["x", b"1", None, 2.5, True, [1, 2], {"a": 1}, (), object(), 1j, float("nan"), *extra]
    return pool[int(rng.integers(len(pool)))]


def strided(a: np.ndarray) -> np.ndarray:
    """The same values in a non-contiguous view."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype) if a.ndim else np.zeros(2, a.dtype)
    if a.ndim == 0:
        big[0] = a
        return big[::2][0]
    big[..., ::2] = a
    return big[..., ::2]


def same_results(a: Any, b: Any) -> bool:
    """Equal structure and bitwise-equal arrays (NaN equal to NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_results(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same_results(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b)


def judge(case: Case) -> str | None:
    """Run the case; a description of what went wrong, or None."""
    try:
        out = case.call()
    except BaseException as e:  # noqa: BLE001 - judging every outcome is the point
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return _judge_error(case, e)
    if case.expect in ("error", "memory"):
        return f"returned instead of raising ({case.expect} expected)"
    if case.check is not None:
        problem = case.check(out)
        if problem:
            return problem
    if case.expect == "same" and case.reference is not None:
        if not same_results(out, case.reference()):
            return "differs from the equivalent plain call"
    return None


def _judge_error(case: Case, e: BaseException) -> str | None:
    kind = f"{type(e).__module__}.{type(e).__qualname__}: {e}"
    if case.expect in ("same", "ok"):
        return f"raised on a valid call: {kind}"
    if not isinstance(e, pylstm.errors.PylstmError):
        return f"raised a class outside the hierarchy: {kind}"
    if not isinstance(e, BUILTINS):
        return f"raised a PylstmError that is no ValueError/TypeError/MemoryError: {kind}"
    if case.expect == "memory" and not isinstance(e, MemoryError):
        return f"an impossible size raised no MemoryError: {kind}"
    msg = str(e)
    if case.names and not any(msg.startswith(n) for n in case.names):
        return f"the message names none of {sorted(case.names)}: {kind}"
    if "panicked" in msg or "RUST_BACKTRACE" in msg:
        return f"a panic message reached the user: {kind}"
    return None


def expect_shapes(out: Any, shapes: list[tuple[int, ...]], dtype: np.dtype) -> str | None:
    """``None`` when ``out`` is a sequence of arrays of these shapes and dtype."""
    if not isinstance(out, (tuple, list)) or len(out) < len(shapes):
        return f"expected {len(shapes)} arrays, got {type(out).__name__}"
    for k, (arr, shape) in enumerate(zip(out, shapes, strict=False)):
        if not isinstance(arr, np.ndarray):
            return f"output {k}: expected an array, got {type(arr).__name__}"
        if arr.shape != tuple(shape) or arr.dtype != dtype:
            return f"output {k}: expected {tuple(shape)} {dtype}, got {arr.shape} {arr.dtype}"
    return None
