"""Export ``pylstm.LSTM`` / ``pylstm.LSTMCell`` to ONNX (``LSTM.to_onnx``).

The exported graph:

* a stack of ONNX ``LSTM`` nodes, one per layer (both directions in one node), with PyTorch's
  gate order ``i, f, g, o`` permuted to ONNX's ``i, o, f, c`` and ``B = [b_ih, b_hh]``; glue
  between layers (``Squeeze`` or ``Transpose`` + ``Reshape`` for bidirectional layers);
* ``batch_first`` as ``Transpose`` nodes around the stack (onnxruntime rejects ``layout=1``);
* ``proj_size > 0`` (which the ONNX ``LSTM`` operator lacks) and float64 modules (which
  onnxruntime's ``LSTM`` kernel lacks) as a ``Scan`` over time per layer and direction whose body
  is the (projected) LSTM step; padded steps (``lengths``) keep the state and output zeros,
  exactly like PyTorch's packed sequences;
* dynamic ``batch`` and ``seq`` axes; ``ir_version`` set to the lowest that the opset needs, so
  that onnxruntime loads it;
* metadata ``pylstm.module`` (JSON of the module's configuration) read back by
  :func:`pylstm.interop.onnx_import.import_lstm`.

Inputs ``input`` (+ ``h0``, ``c0`` with ``initial_state=True``, + int64 ``lengths`` ``[batch]``,
mapped to ``sequence_lens``, with ``lengths=True``); outputs ``output``, ``h_n``, ``c_n`` (for an
``LSTMCell``: ``h``, ``c``).
"""

from __future__ import annotations

import os
from typing import Any

from pylstm.interop import _graph

__all__ = ["export_lstm", "DEFAULT_OPSET"]

DEFAULT_OPSET = _graph.DEFAULT_OPSET


def export_lstm(
    module: Any,
    path: str | os.PathLike[str] | None = None,
    opset: int | None = None,
    *,
    initial_state: bool = False,
    lengths: bool = False,
    lstm_op: bool | None = None,
    check: bool = True,
) -> Any:
    """Export an ``LSTM`` / ``LSTMCell`` module as an ONNX model.

    Args:
        module: a ``pylstm.LSTM`` or ``pylstm.LSTMCell`` (or any object with the same
            attributes and a ``named_parameters()`` yielding PyTorch's names).
        path: where to write the model (``.onnx``); ``None`` writes nothing.
        opset: ONNX opset (default 17, at least 14).
        initial_state: add graph inputs ``h0`` and ``c0``.
        lengths: add an int64 graph input ``lengths`` (``[batch]``) mapped to the LSTM
            ``sequence_lens`` (ignored for a cell).
        lstm_op: force (True) or forbid (False) the ONNX ``LSTM`` operator; ``None`` uses it
            unless ``proj_size > 0`` or the module is float64 (then a ``Scan`` graph).
        check: run ``onnx.checker.check_model(model, full_check=True)``.

    Returns:
        the ``onnx.ModelProto``.
    """
    import onnx

    spec = _graph.spec_of(module)
    if spec.kind == "cell":
        lengths = False
    model = _graph.build_module_model(
        spec, opset=opset, initial_state=initial_state, lengths=lengths, lstm_op=lstm_op
    )
    if check:
        onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model
