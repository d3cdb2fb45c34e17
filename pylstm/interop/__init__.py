"""ONNX interoperability: export ``pylstm.LSTM`` modules to ONNX and import LSTM graphs.

``export_lstm(module, path=None, opset=None)`` (``LSTM.to_onnx``) and
``import_lstm(path_or_model)`` (``LSTM.from_onnx``). Both import ``onnx`` lazily.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_lstm", "import_lstm", "OnnxImportError"]


def __getattr__(name: str) -> Any:
    if name == "export_lstm":
        from pylstm.interop.onnx_export import export_lstm

        return export_lstm
    if name in ("import_lstm", "OnnxImportError"):
        from pylstm.interop import onnx_import

        return getattr(onnx_import, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
