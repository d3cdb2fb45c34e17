"""The anchors: onnxruntime's CPU LSTM (a model built with ``onnx.helper``) and PyTorch.

Both are optional. :func:`ort_missing` / :func:`torch_missing` return why an anchor cannot run
(or ``None``), so a row can say so instead of failing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "IR_VERSION",
    "OPSET",
    "onnx_lstm_model",
    "ort_missing",
    "ort_session",
    "torch_lstm_from",
    "torch_missing",
    "torch_saved_bytes",
    "torch_to_onnx_weights",
]

IR_VERSION = 10
OPSET = 14
# torch gate blocks (i, f, g, o) in ONNX order (i, o, f, c).
_TORCH_TO_ONNX = (0, 3, 1, 2)


def _missing(*modules: str) -> str | None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            return f"{name} not installed ({exc.__class__.__name__})"
    return None


def ort_missing() -> str | None:
    """Why the onnxruntime anchor cannot run (onnx or onnxruntime missing), or ``None``."""
    return _missing("onnx", "onnxruntime")


def torch_missing() -> str | None:
    """Why the PyTorch anchor cannot run, or ``None``."""
    return _missing("torch")


def torch_to_onnx_weights(w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None,
                          b_hh: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One direction's PyTorch parameters as ONNX ``W``, ``R``, ``B`` (no direction axis)."""
    h = w_hh.shape[0] // 4

    def reorder(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a[k * h:(k + 1) * h] for k in _TORCH_TO_ONNX], axis=0)

    zeros = np.zeros(4 * h, w_ih.dtype)
    bias = np.concatenate([reorder(b_ih if b_ih is not None else zeros),
                           reorder(b_hh if b_hh is not None else zeros)])
    return reorder(w_ih), reorder(w_hh), bias


def onnx_lstm_model(layers: Sequence[Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]],
                    hidden: int, input_size: int, with_state: bool = False) -> Any:
    """An ONNX model of a stack of LSTM layers; weights are initializers (so onnxruntime may
    pre-pack them).

    Args:
        layers: per layer, per direction ``(W, R, B)`` in ONNX layout without the direction
            axis: ``W [4H, I]``, ``R [4H, H]``, ``B [8H]``. One or two directions per layer.
        hidden: hidden size.
        input_size: features of ``X``.
        with_state: a single layer only: also take ``initial_h`` / ``initial_c`` inputs.

    Returns:
        An ``onnx.ModelProto`` (IR version :data:`IR_VERSION`, opset :data:`OPSET`) with input
        ``X [T, B, I]`` and outputs ``Y`` (``[T, D, B, H]`` for one layer, ``[T, B, D*H]`` for
        several) plus ``Y_h``/``Y_c`` for one layer.
    """
    from onnx import TensorProto, helper, numpy_helper

    if with_state and len(layers) != 1:
        raise ValueError("with_state: a single layer only")
    f32 = TensorProto.FLOAT
    inits = []
    nodes = []
    inputs = [helper.make_tensor_value_info("X", f32, ["T", "B", input_size])]
    cur = "X"
    single = len(layers) == 1
    for li, dirs in enumerate(layers):
        nd = len(dirs)
        direction = "bidirectional" if nd == 2 else "forward"
        for key, idx in (("W", 0), ("R", 1), ("B", 2)):
            arr = np.stack([d[idx] for d in dirs]).astype(np.float32)
            inits.append(numpy_helper.from_array(arr, f"{key}{li}"))
        node_inputs = [cur, f"W{li}", f"R{li}", f"B{li}"]
        if with_state:
            node_inputs += ["", "initial_h", "initial_c"]
            for name in ("initial_h", "initial_c"):
                inputs.append(helper.make_tensor_value_info(name, f32, [nd, "B", hidden]))
        y = "Y" if single else f"Y{li}"
        outs = [y, "Y_h", "Y_c"] if single else [y]
        nodes.append(helper.make_node("LSTM", node_inputs, outs, hidden_size=hidden,
                                      direction=direction, name=f"lstm{li}"))
        if not single:
            # [T, D, B, H] -> [T, B, D, H] -> [T, B, D*H]
            nodes.append(helper.make_node("Transpose", [y], [f"{y}_t"], perm=[0, 2, 1, 3]))
            shape_name = f"shape{li}"
            inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), shape_name))
            out = "Y" if li == len(layers) - 1 else f"{y}_flat"
            nodes.append(helper.make_node("Reshape", [f"{y}_t", shape_name], [out]))
            cur = out
    if single:
        outputs = [helper.make_tensor_value_info("Y", f32, None),
                   helper.make_tensor_value_info("Y_h", f32, None),
                   helper.make_tensor_value_info("Y_c", f32, None)]
    else:
        outputs = [helper.make_tensor_value_info("Y", f32, None)]
    graph = helper.make_graph(nodes, "lstm_bench", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="pylstm-bench")
    model.ir_version = IR_VERSION
    return model


def ort_session(model: Any, threads: int) -> Any:
    """A CPU session: ``intra_op_num_threads = threads``, ``inter_op_num_threads = 1``,
    sequential execution, all graph optimisations."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def torch_lstm_from(module: Any, cell: bool = False) -> Any:
    """A ``torch.nn.LSTM`` (or ``LSTMCell``) with a pylstm module's parameters copied in."""
    import torch

    tm: Any
    if cell:
        tm = torch.nn.LSTMCell(module.input_size, module.hidden_size, bias=module.bias)
    else:
        tm = torch.nn.LSTM(module.input_size, module.hidden_size, num_layers=module.num_layers,
                           bias=module.bias, batch_first=module.batch_first,
                           bidirectional=module.bidirectional, proj_size=module.proj_size)
    state = {k: torch.from_numpy(np.ascontiguousarray(v.data, np.float32)).clone()
             for k, v in module.named_parameters()}
    tm.load_state_dict(state)
    return tm


def torch_saved_bytes(forward: Callable[[], Any],
                      exclude: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Bytes that autograd keeps for backward while ``forward()`` runs.

    Every tensor saved for backward is seen through ``torch.autograd.graph.saved_tensors_hooks``
    and counted once per storage (deduplicated by the storage's data pointer). ``exclude``
    (e.g. the module's parameters) are left out of ``activations`` — they exist without
    training — but included in ``total``.

    Returns:
        ``{"activations": bytes, "total": bytes, "tensors": count}``.
    """
    import torch

    storages: dict[int, int] = {}
    count = 0

    def pack(t: Any) -> Any:
        nonlocal count
        count += 1
        st = t.untyped_storage()
        ptr = st.data_ptr()
        storages[ptr] = max(storages.get(ptr, 0), st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    del out
    skip = set()
    for p in (exclude or {}).values():
        skip.add(p.untyped_storage().data_ptr())
    total = sum(storages.values())
    acts = sum(n for ptr, n in storages.items() if ptr not in skip)
    return {"activations": int(acts), "total": int(total), "tensors": count}
