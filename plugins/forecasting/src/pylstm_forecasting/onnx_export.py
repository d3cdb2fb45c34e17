"""ONNX export of a trained :class:`~pylstm_forecasting.predictor.Forecaster`, end to end.

The graph takes raw history windows and returns forecasts in data units, so onnxruntime
reproduces ``pylstm predict`` without any Python pre- or post-processing:

``history`` float32 ``[N, window, 1 + C]`` (target first, then covariates) ->
scaling (``Slice``/``Sub``/``Div``/``Concat``) -> the LSTM stack exported by
:func:`pylstm.interop.onnx_export.export_lstm` (the implementation of ``pylstm.LSTM.to_onnx``),
names prefixed ``lstm/`` -> last time step (``Gather``) -> linear head (``Gemm``) -> ``Reshape`` ->
quantiles sorted (``TopK``) -> ``* scale + last value`` ->
``forecast`` float32 ``[N, horizon, Q]`` (quantiles in
``metadata_props["quantiles"]``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pylstm.plugins import TaskError

from .predictor import Forecaster

__all__ = ["build_onnx", "export_onnx", "run_onnx", "IR_VERSION", "OPSET"]

OPSET = 17
IR_VERSION = 8  # onnx >= 1.23 writes a newer IR than onnxruntime accepts: pin it


def build_onnx(model: Forecaster):  # -> onnx.ModelProto
    """Compose the full forecasting graph for ``model``; returns an ``onnx.ModelProto``."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise TaskError("export: needs onnx (pip install 'pylstm[onnx]')") from None

    from pylstm.interop.onnx_export import export_lstm

    cfg = model.config
    n_q = len(cfg.quantiles)
    lstm = onnx.compose.add_prefix(export_lstm(model.net.lstm, None, OPSET, check=False),
                                   "lstm/")
    lstm_in, lstm_out = lstm.graph.input[0].name, lstm.graph.output[0].name

    def const(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value), name)

    weight = model.net.head.weight.data.astype(np.float32)
    bias = model.net.head.bias.data.astype(np.float32)
    inits = [
        const("scale", np.array(cfg.scale, np.float32)),
        const("mean", np.asarray(cfg.mean, np.float32)),
        const("std", np.asarray(cfg.std, np.float32)),
        const("i_last_start", np.array([-1], np.int64)),
        const("i_last_end", np.array([np.iinfo(np.int64).max], np.int64)),
        const("i_zero", np.array([0], np.int64)),
        const("i_one", np.array([1], np.int64)),
        const("i_two", np.array([2], np.int64)),
        const("i_minus1", np.array(-1, np.int64)),
        const("head_w", weight),
        const("head_b", bias),
        const("out_shape", np.array([-1, cfg.horizon, n_q], np.int64)),
        const("n_quantiles", np.array([n_q], np.int64)),
    ]
    nodes = [
        # last row of the window, and its target value [N, 1, 1]
        helper.make_node("Slice", ["history", "i_last_start", "i_last_end", "i_one"], ["last"]),
        helper.make_node("Slice", ["last", "i_zero", "i_one", "i_two"], ["last_y"]),
        helper.make_node("Slice", ["history", "i_zero", "i_one", "i_two"], ["y"]),
        helper.make_node("Sub", ["y", "last_y"], ["y_rel"]),
        helper.make_node("Div", ["y_rel", "scale"], ["f_rel"]),
        helper.make_node("Sub", ["history", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["f_abs"]),
        helper.make_node("Concat", ["f_rel", "f_abs"], [lstm_in], axis=2),
        *lstm.graph.node,
        helper.make_node("Gather", [lstm_out, "i_minus1"], ["h_last"], axis=1),
        helper.make_node("Gemm", ["h_last", "head_w", "head_b"], ["head"], transB=1),
        helper.make_node("Reshape", ["head", "out_shape"], ["head3"]),
        # quantiles sorted ascending, as Forecaster.to_raw does (no crossed intervals)
        helper.make_node("TopK", ["head3", "n_quantiles"], ["head_sorted", "head_order"], axis=-1,
                         largest=0, sorted=1),
        helper.make_node("Mul", ["head_sorted", "scale"], ["delta"]),
        helper.make_node("Add", ["delta", "last_y"], ["forecast"]),
    ]
    graph = helper.make_graph(
        nodes,
        "pylstm_forecaster",
        [helper.make_tensor_value_info("history", TensorProto.FLOAT,
                                       ["N", cfg.window, 1 + cfg.n_covariates])],
        [helper.make_tensor_value_info("forecast", TensorProto.FLOAT,
                                       ["N", cfg.horizon, n_q])],
        inits + list(lstm.graph.initializer),
    )
    opsets = {op.domain: op.version for op in lstm.opset_import}
    opsets[""] = max(opsets.get("", OPSET), OPSET)
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
        producer_name="pylstm-forecasting",
    )
    proto.ir_version = IR_VERSION
    helper.set_model_props(proto, {"quantiles": json.dumps(cfg.quantiles),
                                   "horizon": str(cfg.horizon), "window": str(cfg.window)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: Forecaster, path: Path) -> Path:
    """Write :func:`build_onnx`'s model to ``path``."""
    import onnx

    onnx.save(build_onnx(model), str(path))
    return path


def run_onnx(path: Path, history: np.ndarray) -> np.ndarray:
    """Run an exported forecaster with onnxruntime (CPU); ``[N, horizon, Q]``."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise TaskError("export: checking the model needs onnxruntime (pip install "
                        "'pylstm[onnx]')") from None

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["forecast"], {"history": np.asarray(history, np.float32)})[0]
