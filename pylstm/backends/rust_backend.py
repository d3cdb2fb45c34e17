"""The built-in ``rust`` backend: the Rust core ``pylstm._core`` (forward and backward, CPU).

``functional.lstm`` and the modules call the Rust core directly when the resolved backend is
``rust``; this object exists so that the registry lists it, and so that code holding a backend
object can run it like any other backend. It calls the core through :mod:`pylstm._onnx_lstm`,
never through ``functional`` (which imports the registry): no import circle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pylstm import _onnx_lstm
from pylstm.hookspecs import hookimpl

__all__ = ["RustBackend", "register_backends"]


class RustBackend:
    """The default backend (``name = "rust"``)."""

    name = "rust"

    def available(self) -> bool:
        """True when the compiled extension ``pylstm._core`` imports."""
        try:
            import pylstm._core  # noqa: F401
        except ImportError:
            return False
        return True

    def unavailable_reason(self) -> str:
        """Why :meth:`available` is False (the import error)."""
        try:
            import pylstm._core  # noqa: F401
        except ImportError as exc:
            return f"pylstm._core does not import: {exc}"
        return ""

    def devices(self) -> list[str]:
        """``["cpu (<simd kernel>, <n> threads)"]``, as the engine reports them."""
        from pylstm import runtime

        info = runtime.info()
        return [f"cpu ({info['kernel']}, {info['num_threads']} threads)"]

    def lstm(self, **onnx_args: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the ONNX operator on the Rust core (the arguments of ``functional.lstm``, in
        layout 0, with ``layout_out`` the layout the outputs are wanted in)."""
        onnx_args.pop("backend", None)
        layout_out = onnx_args.pop("layout_out", 0) or 0
        Y, Y_h, Y_c = _onnx_lstm.run_rust(_onnx_lstm.validate(**onnx_args), requires_grad=False)
        if layout_out:
            Y = np.ascontiguousarray(Y.transpose(2, 0, 1, 3))
            Y_h = np.ascontiguousarray(Y_h.transpose(1, 0, 2))
            Y_c = np.ascontiguousarray(Y_c.transpose(1, 0, 2))
        return Y, Y_h, Y_c

    def run_module(
        self, module: Any, x: np.ndarray, hx: Any, lengths: np.ndarray | None
    ) -> tuple[np.ndarray, Any]:
        """Run ``module`` with the Rust backend selected (``use_backend("rust")``)."""
        from pylstm.backends import use_backend

        with use_backend("rust"):
            if lengths is None:
                return module(x, hx)
            return module(x, hx, lengths=lengths)

    def __repr__(self) -> str:
        return "RustBackend()"


_BACKEND = RustBackend()


@hookimpl
def register_backends(register: Any) -> None:
    """Register the ``rust`` backend."""
    register(_BACKEND)
