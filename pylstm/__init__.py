"""pylstm: a complete, fast LSTM for the CPU.

* :func:`pylstm.functional.lstm` — the ONNX ``LSTM`` operator, exactly, with a backward pass.
* :class:`pylstm.LSTM`, :class:`pylstm.LSTMCell` — PyTorch's ``nn.LSTM`` / ``nn.LSTMCell``,
  with gradients.
* Backends chosen at run time (:mod:`pylstm.backends`): the Rust engine (default) or ONNX
  Runtime.
"""

from __future__ import annotations

from pylstm import _core
from pylstm.errors import (
    BackendError,
    DTypeError,
    EngineError,
    LstmValueError,
    ShapeError,
    TapeError,
)
from pylstm.modules import LSTM, LSTMCell
from pylstm.runtime import get_num_threads, info, kernel, set_kernel, set_num_threads

__version__: str = _core.__version__

from pylstm import functional  # noqa: E402  (after the core it wraps)
from pylstm.backends import backends, get_backend, set_backend, use_backend  # noqa: E402

__all__ = [
    "LSTM",
    "BackendError",
    "DTypeError",
    "EngineError",
    "LSTMCell",
    "LstmValueError",
    "ShapeError",
    "TapeError",
    "backends",
    "functional",
    "get_backend",
    "get_num_threads",
    "info",
    "kernel",
    "set_backend",
    "set_kernel",
    "set_num_threads",
    "use_backend",
]

runtime_hooks = __import__("pylstm.runtime", fromlist=["_install_process_hooks"])
runtime_hooks._install_process_hooks()
del runtime_hooks
