"""pylstm.interop.graph_builder: a Linear and a spliced LSTM built as ONNX nodes give
onnxruntime the answers of the pylstm modules they were built from."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

import pylstm
from pylstm import nn
from pylstm.interop.graph_builder import IR_VERSION, GraphBuilder


def _run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def test_linear_then_lstm_equals_pylstm():
    rng = np.random.default_rng(0)
    proj = nn.Linear(6, 5, seed=1)
    lstm = pylstm.LSTM(5, 4, batch_first=True, bidirectional=True, seed=2)
    x = rng.standard_normal((3, 7, 6)).astype(np.float32)
    lengths = np.array([7, 4, 1], np.int64)

    g = GraphBuilder()
    T, info = g.onnx.TensorProto, g.h.make_tensor_value_info
    y, yh, _ = g.lstm(lstm, "enc/", g.linear("x", proj), lengths="len")
    g.op("Identity", [y], out="y")
    g.op("Identity", [yh], out="h_n")
    model = g.model([info("x", T.FLOAT, ["B", "T", 6]), info("len", T.INT64, ["B"])],
                    [info("y", T.FLOAT, ["B", "T", 8]), info("h_n", T.FLOAT, [2, "B", 4])], "probe")
    assert model.ir_version == IR_VERSION
    got_y, got_h = _run(model, {"x": x, "len": lengths})

    want_y, (want_h, _) = lstm(proj(x), lengths=lengths)
    np.testing.assert_allclose(got_y, np.asarray(want_y), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_h, np.asarray(want_h), rtol=1e-5, atol=1e-5)


def test_names_are_unique_and_prefixed():
    g = GraphBuilder(prefix="body/")
    a, b = g.const(np.zeros(2, np.float32)), g.i64(1, 2)
    c = g.op("Add", [a, a])
    assert len({a, b, c}) == 3 and all(n.startswith("body/") for n in (a, b, c))
