"""The toolkit raises the engine's exception classes (see :mod:`pylstm.errors`)."""

from __future__ import annotations

from pylstm.errors import DTypeError, LstmValueError, ShapeError

__all__ = ["ShapeError", "DTypeError", "LstmValueError"]
