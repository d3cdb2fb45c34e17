"""pylstm: a complete, fast LSTM for the CPU.

* :func:`pylstm.functional.lstm` — the ONNX ``LSTM`` operator, exactly, with a backward pass.
* :class:`pylstm.LSTM`, :class:`pylstm.LSTMCell` — PyTorch's ``nn.LSTM`` / ``nn.LSTMCell``,
  with gradients; they are :mod:`pylstm.nn` modules (``pylstm.nn.LSTM`` is the same class).
* :class:`pylstm.Tensor`, :func:`pylstm.record`, :func:`pylstm.no_grad` — gradients for models
  written as ordinary Python (:mod:`pylstm.autograd`).
* Backends chosen at run time (:mod:`pylstm.backends`): the Rust engine (default) or ONNX
  Runtime.
"""

from __future__ import annotations

from pylstm import _core
from pylstm.autograd import Tensor, no_grad, record, tensor
from pylstm.errors import (
    BackendError,
    CheckpointError,
    DTypeError,
    EngineError,
    LstmValueError,
    PylstmError,
    PylstmMemoryError,
    ShapeError,
    TapeError,
)
from pylstm.nn.recurrent import LSTM, LSTMCell
from pylstm.runtime import (
    blas_threads,
    get_num_threads,
    info,
    kernel,
    set_kernel,
    set_num_threads,
)

__version__: str = _core.__version__

from pylstm import functional  # noqa: E402  (after the core it wraps)
from pylstm.backends import (  # noqa: E402
    get_backend,
    list_backends,
    set_backend,
    use_backend,
)

__all__ = [
    "LSTM",
    "BackendError",
    "CheckpointError",
    "PylstmError",
    "PylstmMemoryError",
    "DTypeError",
    "EngineError",
    "LSTMCell",
    "Tensor",
    "no_grad",
    "record",
    "tensor",
    "LstmValueError",
    "ShapeError",
    "TapeError",
    "list_backends",
    "load",
    "blas_threads",
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


def __getattr__(name: str) -> object:
    # ``pylstm.load(run_dir)`` (the trained run's predictor) lives with the plugins, which sit
    # above the engine: import them on first use so ``import pylstm`` never does.
    if name == "load":
        from pylstm.plugins import load

        globals()["load"] = load
        return load
    raise AttributeError(f"module 'pylstm' has no attribute {name!r}")


runtime_hooks = __import__("pylstm.runtime", fromlist=["_install_process_hooks"])
runtime_hooks._install_process_hooks()
del runtime_hooks
