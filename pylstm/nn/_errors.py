"""Exception classes used by :mod:`pylstm.nn`.

The engine (``pylstm._core``) defines ``ShapeError(ValueError)``, ``DTypeError(TypeError)`` and
``LstmValueError(ValueError)``; when it is importable the toolkit raises the very same classes, so
``except pylstm.ShapeError`` catches errors from both. Without the compiled engine, equivalent
classes with the same base classes are defined here.
"""

from __future__ import annotations

__all__ = ["ShapeError", "DTypeError", "LstmValueError"]

try:  # pragma: no cover - depends on whether the Rust extension is built
    from pylstm._core import DTypeError, LstmValueError, ShapeError  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised when the engine is not built

    class ShapeError(ValueError):  # type: ignore[no-redef]
        """An array argument has the wrong shape."""

    class DTypeError(TypeError):  # type: ignore[no-redef]
        """An array argument has the wrong dtype."""

    class LstmValueError(ValueError):  # type: ignore[no-redef]
        """An argument has an invalid value."""
