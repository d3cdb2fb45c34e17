"""A small builder for the ONNX graphs of composite models (the zoo's exports).

Each task plugin writes its network as ONNX nodes; this keeps the bookkeeping in one place:
unique names, initialisers from numpy, a ``pylstm.nn.Linear`` as ``MatMul`` + ``Add``, an
``pylstm.LSTM`` spliced in from :func:`pylstm.interop.export_lstm`, and the checked model with
the opset and IR version onnxruntime reads. ``onnx`` is imported when a builder is made.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pylstm.errors import BackendError

__all__ = ["GraphBuilder", "IR_VERSION", "OPSET", "require_onnx"]

OPSET = 17
IR_VERSION = 8  # onnx >= 1.23 writes a newer IR than onnxruntime accepts: pin it


def require_onnx() -> Any:
    """The ``onnx`` module, or a one-line error saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise BackendError("ONNX export needs onnx: pip install 'pylstm[onnx]'") from None
    return onnx


class GraphBuilder:
    """Nodes and initialisers of one graph (or a ``Scan`` body: give it a ``prefix`` so its
    names differ from the outer graph's)."""

    def __init__(self, prefix: str = "") -> None:
        self.onnx = require_onnx()
        self.h = self.onnx.helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.prefix = prefix
        self.n = 0

    def const(self, value: Any, name: str | None = None) -> str:
        """An initialiser holding ``value``; its name."""
        self.n += 1
        name = name or f"{self.prefix}c{self.n}"
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def i64(self, *values: int) -> str:
        """An int64 vector initialiser (axes, shapes)."""
        return self.const(np.array(values, np.int64))

    def op(self, kind: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        """Append a node of type ``kind``; its (single) output's name."""
        self.n += 1
        out = out or f"{self.prefix}t{self.n}_{kind.lower()}"
        self.nodes.append(self.h.make_node(kind, inputs, [out], name=f"{self.prefix}n{self.n}",
                                           **attrs))
        return out

    def linear(self, x: str, layer: Any) -> str:
        """``x @ W.T + b`` of a ``pylstm.nn.Linear`` (float32 weights)."""
        y = self.op("MatMul", [x, self.const(layer.weight.data.T.astype(np.float32))])
        if layer.use_bias:
            y = self.op("Add", [y, self.const(layer.bias.data.astype(np.float32))])
        return y

    def lstm(self, module: Any, prefix: str, x: str, h0: str | None = None,
             c0: str | None = None, lengths: str | None = None) -> tuple[str, str, str]:
        """Splice pylstm's own export of an LSTM module in (names under ``prefix``); the
        names of its ``Y``, ``Y_h``, ``Y_c``."""
        from pylstm.interop.onnx_export import export_lstm

        sub = export_lstm(module, None, OPSET, initial_state=h0 is not None,
                          lengths=lengths is not None, lstm_op=True, check=False)
        sub = self.onnx.compose.add_prefix(sub, prefix)
        inputs = [i.name for i in sub.graph.input]
        feeds = [x] + ([h0, c0] if h0 is not None else []) + ([lengths] if lengths else [])
        for name, given in zip(inputs, feeds, strict=True):
            self.op("Identity", [given], out=name)
        self.nodes.extend(sub.graph.node)
        self.inits.extend(sub.graph.initializer)
        y, yh, yc = (o.name for o in sub.graph.output)
        return y, yh, yc

    def model(self, inputs: list[Any], outputs: list[Any], name: str,
              producer: str = "pylstm") -> Any:
        """The checked ``ModelProto`` of the nodes so far."""
        graph = self.h.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = self.h.make_model(graph, opset_imports=[self.h.make_opsetid("", OPSET)],
                                  producer_name=producer)
        model.ir_version = IR_VERSION
        self.onnx.checker.check_model(model)
        return model
