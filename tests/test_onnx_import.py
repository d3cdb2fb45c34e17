"""ONNX import: torch.onnx.export (dynamo and legacy), tf2onnx/Keras-style graphs, our export."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

import pylstm
from pylstm.backends import use_backend
from pylstm.interop.onnx_export import export_lstm
from pylstm.interop.onnx_import import OnnxImportError, import_lstm

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto  # noqa: E402
from onnx import helper as oh  # noqa: E402

CPU = ["CPUExecutionProvider"]


def _err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max()) if a.size else 0.0


def torch_export(module, x, dynamo):
    """Export ``module`` with torch's dynamo exporter or the legacy TorchScript one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = {0: torch.export.Dim("d0"), 1: torch.export.Dim("d1")}
            prog = torch.onnx.export(module, (x,), dynamo=True, dynamic_shapes=(dims,),
                                     verbose=False)
            return prog.model_proto
        f = io.BytesIO()
        torch.onnx.export(module, (x,), f, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "d0", 1: "d1"}})
        return onnx.load_from_string(f.getvalue())


def _check_against_torch(m, tm, rng):
    T, B = 5, 3
    x = rng.standard_normal((B, T, tm.input_size) if tm.batch_first else
                            (T, B, tm.input_size)).astype(np.float32)
    with torch.no_grad():
        y_t, (h_t, c_t) = tm(torch.from_numpy(x))
    y, (h, c) = m(x)
    assert max(_err(y, y_t), _err(h, h_t), _err(c, c_t)) < 2e-5
    with use_backend("onnxruntime", providers=CPU):
        y, (h, c) = m(x)
    assert max(_err(y, y_t), _err(h, h_t), _err(c, c_t)) < 2e-5


LEGACY = [
    dict(),
    dict(num_layers=3),
    dict(bidirectional=True),
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(bias=False, batch_first=True),
]


@pytest.mark.parametrize("cfg", LEGACY, ids=lambda c: ",".join(c) or "default")
def test_import_torch_legacy_export(cfg):
    torch.manual_seed(0)
    tm = torch.nn.LSTM(4, 5, **cfg).eval()
    model = torch_export(tm, torch.randn(3, 2, 4), dynamo=False)
    m = import_lstm(model)
    assert isinstance(m, pylstm.LSTM)
    assert (m.num_layers, m.bidirectional, m.batch_first, m.bias) == (
        tm.num_layers, tm.bidirectional, tm.batch_first, tm.bias)
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(m.state_dict()[k], v.numpy())
    _check_against_torch(m, tm, np.random.default_rng(0))


@pytest.mark.parametrize("cfg", [dict(), dict(num_layers=2, bidirectional=True, batch_first=True)],
                         ids=lambda c: ",".join(c) or "default")
def test_import_torch_dynamo_export(cfg, tmp_path):
    torch.manual_seed(1)
    tm = torch.nn.LSTM(3, 4, **cfg).eval()
    model = torch_export(tm, torch.randn(3, 2, 3), dynamo=True)
    path = tmp_path / "dyn.onnx"
    onnx.save(model, str(path))
    m = import_lstm(str(path))
    assert (m.num_layers, m.bidirectional, m.batch_first) == (
        tm.num_layers, tm.bidirectional, tm.batch_first)
    _check_against_torch(m, tm, np.random.default_rng(1))


# ----------------------------------------------------------------------------- tf2onnx style

def _keras_to_onnx_gates(a, axis=0):
    """Keras gate blocks (i, f, c, o) -> ONNX (i, o, f, c), as tf2onnx does."""
    i, f, c, o = np.split(a, 4, axis=axis)
    return np.concatenate([i, o, f, c], axis=axis)


def keras_style_model(rng, n_in=3, H=4, layers=2):
    """A graph shaped like tf2onnx's output for ``Sequential([LSTM(H, return_sequences=True)]
    * layers)`` on ``[batch, time, features]`` input: Transpose into time-major, LSTM nodes
    with zero initial states built from the input's shape, Squeeze between layers, Transpose
    back, and the last layer's state through Squeeze."""
    nodes, inits = [], []

    def init(name, arr):
        inits.append(onnx.numpy_helper.from_array(np.asarray(arr), name))
        return name

    nodes.append(oh.make_node("Transpose", ["input_1"], ["x_tm"], perm=[1, 0, 2],
                              name="sequential/lstm/transpose"))
    nodes.append(oh.make_node("Shape", ["input_1"], ["shp"], name="sequential/lstm/Shape"))
    nodes.append(oh.make_node("Gather", ["shp", init("zero_i", np.array(0, np.int64))], ["bsz"],
                              axis=0, name="sequential/lstm/strided_slice"))
    nodes.append(oh.make_node("Unsqueeze", ["bsz", init("ax0", np.array([0], np.int64))],
                              ["bsz1"], name="sequential/lstm/zeros/packed_Unsqueeze"))
    nodes.append(oh.make_node("Concat", [init("one", np.array([1], np.int64)), "bsz1",
                                         init("hsz", np.array([H], np.int64))], ["zshape"],
                              axis=0, name="sequential/lstm/zeros/packed"))
    nodes.append(oh.make_node("ConstantOfShape", ["zshape"], ["zeros"],
                              value=oh.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
                              name="sequential/lstm/zeros"))
    x, size = "x_tm", n_in
    keras = []
    for k in range(layers):
        kernel = (rng.standard_normal((size, 4 * H)) * 0.5).astype(np.float32)
        rec = (rng.standard_normal((H, 4 * H)) * 0.5).astype(np.float32)
        bias = (rng.standard_normal(4 * H) * 0.5).astype(np.float32)
        keras.append((kernel, rec, bias))
        W = _keras_to_onnx_gates(kernel.T)[None]
        R = _keras_to_onnx_gates(rec.T)[None]
        Bv = np.concatenate([_keras_to_onnx_gates(bias), np.zeros(4 * H, np.float32)])[None]
        nodes.append(oh.make_node(
            "LSTM", [x, init(f"W{k}", W), init(f"R{k}", R), init(f"B{k}", Bv), "", "zeros",
                     "zeros"], [f"Y{k}", f"Yh{k}", f"Yc{k}"], hidden_size=H,
            direction="forward", name=f"sequential/lstm_{k}/lstm"))
        nodes.append(oh.make_node("Squeeze", [f"Y{k}", init(f"ax1_{k}", np.array([1], np.int64))],
                                  [f"Ys{k}"], name=f"sequential/lstm_{k}/squeeze"))
        x, size = f"Ys{k}", H
    nodes.append(oh.make_node("Transpose", [x], ["lstm_out"], perm=[1, 0, 2],
                              name="sequential/lstm/transpose_1"))
    nodes.append(oh.make_node("Squeeze", [f"Yh{layers - 1}",
                                          init("ax0b", np.array([0], np.int64))],
                              ["state_h"], name="sequential/lstm/squeeze_h"))
    graph = oh.make_graph(
        nodes, "tf2onnx", [oh.make_tensor_value_info("input_1", TensorProto.FLOAT,
                                                     ["N", "T", n_in])],
        [oh.make_tensor_value_info("lstm_out", TensorProto.FLOAT, ["N", "T", H]),
         oh.make_tensor_value_info("state_h", TensorProto.FLOAT, ["N", H])],
        inits,
    )
    opsets = [oh.make_opsetid("", 13)]
    model = oh.make_model(graph, opset_imports=opsets, producer_name="tf2onnx")
    model.ir_version = oh.find_min_ir_version_for(opsets)
    onnx.checker.check_model(model, full_check=True)
    return model, keras


def _keras_reference(x, keras):
    """Keras LSTM semantics in numpy (gates i, f, c, o; x @ kernel)."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    seq = x.astype(np.float64)
    h = c = None
    for kernel, rec, bias in keras:
        H = rec.shape[0]
        h = np.zeros((seq.shape[0], H))
        c = np.zeros((seq.shape[0], H))
        outs = []
        for t in range(seq.shape[1]):
            z = seq[:, t] @ kernel + h @ rec + bias
            i, f, g, o = np.split(z, 4, axis=1)
            c = sig(f) * c + sig(i) * np.tanh(g)
            h = sig(o) * np.tanh(c)
            outs.append(h)
        seq = np.stack(outs, axis=1)
    return seq, h


def test_import_tf2onnx_style_graph():
    rng = np.random.default_rng(4)
    model, keras = keras_style_model(rng)
    m = import_lstm(model.SerializeToString())
    assert (m.input_size, m.hidden_size, m.num_layers, m.batch_first) == (3, 4, 2, True)
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    out, state_h = ort.InferenceSession(model.SerializeToString(), providers=CPU).run(
        None, {"input_1": x})
    y_ref, h_ref = _keras_reference(x, keras)
    assert max(_err(out, y_ref), _err(state_h, h_ref)) < 2e-5
    y, (h, c) = m(x)
    assert _err(y, out) < 2e-5 and _err(h[-1], state_h) < 2e-5


# ----------------------------------------------------------------------------- own export

@pytest.mark.parametrize("cfg", [
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(proj_size=2, num_layers=2, bidirectional=True),
    dict(dtype=np.float64, bias=False),
], ids=["lstm-op", "proj-scan", "float64-scan"])
def test_round_trip_own_export(cfg, tmp_path):
    m = pylstm.LSTM(3, 4, seed=5, **cfg).eval()
    path = tmp_path / "m.onnx"
    export_lstm(m, path)
    m2 = import_lstm(path)
    for k in ("input_size", "hidden_size", "num_layers", "bias", "batch_first",
              "bidirectional", "proj_size"):
        assert getattr(m2, k) == getattr(m, k), k
    assert np.dtype(m2.dtype) == np.dtype(m.dtype)
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert set(sd) == set(sd2)
    for k in sd:
        np.testing.assert_array_equal(sd[k], sd2[k])


def test_round_trip_lstmcell():
    cell = pylstm.LSTMCell(3, 4, seed=2)
    cell2 = import_lstm(export_lstm(cell))
    assert isinstance(cell2, pylstm.LSTMCell)
    for k, v in cell.state_dict().items():
        np.testing.assert_array_equal(cell2.state_dict()[k], v)


# ----------------------------------------------------------------------------- unsupported

def test_unsupported_torch_graph_lists_the_nodes():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(4, 5)
            self.fc = torch.nn.Linear(5, 2)

        def forward(self, x):
            return torch.relu(self.fc(self.lstm(x)[0]))

    model = torch_export(Net().eval(), torch.randn(3, 2, 4), dynamo=False)
    with pytest.raises(OnnxImportError, match="could not map") as ei:
        import_lstm(model)
    ops = " ".join(ei.value.nodes)
    assert "Relu" in ops and ("MatMul" in ops or "Gemm" in ops)


def _single_lstm_graph(**attrs):
    rng = np.random.default_rng(0)
    H, n_in = 3, 2
    W = rng.standard_normal((1, 4 * H, n_in)).astype(np.float32)
    R = rng.standard_normal((1, 4 * H, H)).astype(np.float32)
    inits = [onnx.numpy_helper.from_array(W, "W"), onnx.numpy_helper.from_array(R, "R")]
    extra = attrs.pop("initial_h", None)
    ins = ["X", "W", "R"]
    if extra is not None:
        inits.append(onnx.numpy_helper.from_array(extra, "h0"))
        ins += ["", "", "h0"]
    node = oh.make_node("LSTM", ins, ["Y", "Yh"], hidden_size=H, name="lstm_node", **attrs)
    g = oh.make_graph([node], "g", [oh.make_tensor_value_info("X", TensorProto.FLOAT,
                                                              ["T", "B", n_in])],
                      [oh.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 14)])


@pytest.mark.parametrize("attrs,match", [
    (dict(clip=1.0), "clip"),
    (dict(activations=["Relu", "Tanh", "Tanh"]), "activations"),
    (dict(input_forget=1), "input_forget"),
    (dict(direction="reverse"), "reverse"),
    (dict(initial_h=np.ones((1, 1, 3), np.float32)), "initial_h is a non-zero constant"),
])
def test_unsupported_lstm_attributes_are_named(attrs, match):
    with pytest.raises(OnnxImportError, match=match) as ei:
        import_lstm(_single_lstm_graph(**attrs))
    assert ei.value.nodes and "lstm_node" in ei.value.nodes[0]


def test_graph_without_lstm_is_an_error():
    g = oh.make_graph([oh.make_node("GRU", ["X", "W", "R"], ["Y"], hidden_size=2, name="gru")],
                      "g", [oh.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 1])],
                      [oh.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    with pytest.raises(OnnxImportError, match="no ONNX LSTM node.*GRU") as ei:
        import_lstm(oh.make_model(g))
    assert ei.value.nodes == ["GRU 'gru'"]
