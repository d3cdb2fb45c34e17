"""Exceptions raised by pylstm: one hierarchy.

Every exception the package raises on purpose subclasses :class:`PylstmError`, and also the
matching built-in, so ``except ValueError`` / ``except TypeError`` keep working::

    PylstmError(Exception)
    ├── ShapeError(PylstmError, ValueError)        an array's rank or a dimension is wrong
    ├── LstmValueError(PylstmError, ValueError)    an attribute or argument value is out of range
    ├── TapeError(PylstmError, ValueError)         a tape is foreign, mismatched or used up
    ├── CheckpointError(PylstmError, ValueError)   a saved file or run folder is corrupt/invalid
    ├── DTypeError(PylstmError, TypeError)         a dtype or an argument's type is wrong
    ├── EngineError(PylstmError, RuntimeError)     the engine failed internally (a bug)
    ├── BackendError(PylstmError, RuntimeError)    a backend is unknown, unavailable or unable
    └── PylstmMemoryError(PylstmError, MemoryError)  a size no machine can hold

The engine's classes are defined by the compiled module (``pylstm._core``), so what the engine
raises and what these names catch are the same classes. Messages name the argument, the
expected and the actual value.
"""

from __future__ import annotations

from pylstm._core import (
    DTypeError,
    EngineError,
    LstmValueError,
    PylstmError,
    PylstmMemoryError,
    ShapeError,
    TapeError,
)


class BackendError(PylstmError, RuntimeError):
    """A backend is unknown, unavailable, or cannot do what was asked (e.g. training)."""


class CheckpointError(PylstmError, ValueError):
    """A saved file or run folder is corrupt or invalid (missing, unreadable or mismatched
    contents)."""


__all__ = [
    "BackendError",
    "CheckpointError",
    "DTypeError",
    "EngineError",
    "LstmValueError",
    "PylstmError",
    "PylstmMemoryError",
    "ShapeError",
    "TapeError",
]
