"""The built-in ``rust`` backend: the Rust core ``pylstm._core`` (forward and backward, CPU).

``functional.lstm`` and the modules call the Rust core directly when the resolved backend is
``rust``; this object exists so that the registry lists it, and so that code holding a backend
object can run it like any other backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
        """``["cpu (<simd kernel>, <n> threads)"]`` where the engine reports them."""
        desc = "cpu"
        try:
            import pylstm

            info = pylstm.info() if hasattr(pylstm, "info") else {}
        except Exception:
            info = {}
        extras = []
        for key in ("kernel", "simd", "isa"):
            if info.get(key):
                extras.append(str(info[key]))
                break
        for key in ("num_threads", "threads"):
            if info.get(key):
                extras.append(f"{info[key]} threads")
                break
        if extras:
            desc += f" ({', '.join(extras)})"
        return [desc]

    def lstm(self, **onnx_args: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run ``pylstm.functional.lstm`` on the Rust core."""
        from pylstm import functional

        onnx_args.pop("backend", None)
        # ``layout_out`` (from functional.lstm): inputs are already in layout 0, outputs wanted
        # in layout ``layout_out``
        layout_out = onnx_args.pop("layout_out", None)
        out = functional.lstm(**onnx_args, backend="rust")
        if layout_out and not onnx_args.get("layout"):
            Y, Y_h, Y_c = out[:3]
            out = (np.ascontiguousarray(Y.transpose(2, 0, 1, 3)),
                   np.ascontiguousarray(Y_h.transpose(1, 0, 2)),
                   np.ascontiguousarray(Y_c.transpose(1, 0, 2)), *out[3:])
        return out

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
