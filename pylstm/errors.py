"""Exceptions raised by pylstm.

Each subclasses the matching built-in, so ``except ValueError`` / ``except TypeError`` keep
working. Messages name the argument, the expected and the actual value.
"""

from __future__ import annotations

from pylstm._core import DTypeError, EngineError, LstmValueError, ShapeError, TapeError


class BackendError(RuntimeError):
    """A backend is unknown, unavailable, or cannot do what was asked (e.g. training)."""


__all__ = ["BackendError", "DTypeError", "EngineError", "LstmValueError", "ShapeError", "TapeError"]
