"""ONNX export: check_model(full_check) -> onnxruntime -> the same numbers as the Rust engine."""

from __future__ import annotations

import numpy as np
import pytest

import pylstm
from pylstm.interop.onnx_export import export_lstm

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

CPU = ["CPUExecutionProvider"]


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=CPU)


def _err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max()) if a.size else 0.0


def _torch_ref(m, x, hx=None, lengths=None):
    tm = torch.nn.LSTM(m.input_size, m.hidden_size, num_layers=m.num_layers, bias=m.bias,
                       batch_first=m.batch_first, bidirectional=m.bidirectional,
                       proj_size=m.proj_size).double()
    tm.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float64))
                        for k, v in m.state_dict().items()})
    xt = torch.from_numpy(np.asarray(x, np.float64))
    hxt = None if hx is None else tuple(torch.from_numpy(np.asarray(a, np.float64)) for a in hx)
    with torch.no_grad():
        if lengths is None:
            y, (h, c) = tm(xt, hxt)
        else:
            T = x.shape[1 if m.batch_first else 0]
            pk = torch.nn.utils.rnn.pack_padded_sequence(
                xt, torch.as_tensor(lengths), batch_first=m.batch_first, enforce_sorted=False)
            y, (h, c) = tm(pk, hxt)
            y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=m.batch_first,
                                                          total_length=T)
    return y.numpy(), h.numpy(), c.numpy()


CONFIGS = [
    dict(),
    dict(num_layers=3),
    dict(bidirectional=True),
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(bias=False, batch_first=True),
    dict(proj_size=2),
    dict(proj_size=3, num_layers=2, bidirectional=True, batch_first=True),
    dict(num_layers=2, dtype=np.float64),
    dict(proj_size=2, bidirectional=True, dtype=np.float64),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
                         or "default")
def test_export_check_model_onnxruntime_matches_rust(cfg, tmp_path):
    rng = np.random.default_rng(0)
    m = pylstm.LSTM(4, 5, seed=3, **cfg).eval()
    dt = np.dtype(m.dtype)
    path = tmp_path / "lstm.onnx"
    model = export_lstm(m, path, initial_state=True, lengths=True)
    assert path.exists()
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert model.ir_version == onnx.helper.find_min_ir_version_for(list(model.opset_import))
    ops = [n.op_type for n in model.graph.node]
    D = 2 if m.bidirectional else 1
    if m.proj_size or dt == np.float64:
        assert ops.count("Scan") == m.num_layers * D and "LSTM" not in ops
    else:
        assert ops.count("LSTM") == m.num_layers and "Scan" not in ops
    # dynamic batch and sequence axes: one session, several shapes
    sess = ort.InferenceSession(str(path), providers=CPU)
    names = [i.name for i in sess.get_inputs()]
    assert names == ["input", "h0", "c0", "lengths"]
    for T, B in [(1, 1), (6, 3), (3, 4)]:
        x = rng.standard_normal((B, T, 4) if m.batch_first else (T, B, 4)).astype(dt)
        Hout = m.proj_size or m.hidden_size
        h0 = rng.standard_normal((m.num_layers * D, B, Hout)).astype(dt)
        c0 = rng.standard_normal((m.num_layers * D, B, m.hidden_size)).astype(dt)
        lengths = rng.integers(1, T + 1, size=B).astype(np.int64)
        lengths[0] = T
        y, h, c = sess.run(None, {"input": x, "h0": h0, "c0": c0, "lengths": lengths})
        y_r, (h_r, c_r) = m(x, (h0, c0), lengths=lengths)
        tol = 1e-10 if dt == np.float64 else 2e-5
        assert max(_err(y, y_r), _err(h, h_r), _err(c, c_r)) < tol
        ref = _torch_ref(m, x, (h0, c0), lengths)
        assert max(_err(y, ref[0]), _err(h, ref[1]), _err(c, ref[2])) < tol


def test_export_without_optional_inputs_and_reference_evaluator():
    rng = np.random.default_rng(1)
    m = pylstm.LSTM(3, 4, num_layers=2, bidirectional=True, seed=1).eval()
    model = export_lstm(m)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output", "h_n", "c_n"]
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    y, h, c = _session(model).run(None, {"input": x})
    y_r, (h_r, c_r) = m(x)
    assert max(_err(y, y_r), _err(h, h_r), _err(c, c_r)) < 2e-5
    # onnx's own numpy runtime agrees too (an independent implementation of the LSTM op)
    from onnx.reference import ReferenceEvaluator

    y2, h2, c2 = ReferenceEvaluator(model).run(None, {"input": x})
    assert max(_err(y2, y_r), _err(h2, h_r), _err(c2, c_r)) < 2e-5


def test_export_gate_order_and_bias_layout():
    m = pylstm.LSTM(2, 3, seed=0)
    model = export_lstm(m)
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    W, R, B = inits["W_l0"], inits["R_l0"], inits["B_l0"]
    p = {name: param.data for name, param in m.named_parameters()}
    H = 3
    i, f, g, o = np.split(p["weight_ih_l0"], 4)
    np.testing.assert_array_equal(W[0], np.concatenate([i, o, f, g]))
    i, f, g, o = np.split(p["weight_hh_l0"], 4)
    np.testing.assert_array_equal(R[0], np.concatenate([i, o, f, g]))
    bi, bh = np.split(p["bias_ih_l0"], 4), np.split(p["bias_hh_l0"], 4)
    np.testing.assert_array_equal(B[0, : 4 * H], np.concatenate([bi[k] for k in (0, 3, 1, 2)]))
    np.testing.assert_array_equal(B[0, 4 * H:], np.concatenate([bh[k] for k in (0, 3, 1, 2)]))


@pytest.mark.parametrize("opset", [14, 17, 20])
def test_export_opsets_load_in_onnxruntime(opset):
    m = pylstm.LSTM(3, 4, proj_size=2, seed=1).eval()
    model = export_lstm(m, opset=opset)
    assert model.opset_import[0].version == opset
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    y, _, _ = _session(model).run(None, {"input": x})
    assert _err(y, m(x)[0]) < 2e-5


def test_export_lstm_op_with_projection_is_a_clear_error():
    m = pylstm.LSTM(3, 4, proj_size=2, seed=1)
    with pytest.raises(ValueError, match="no projection"):
        export_lstm(m, lstm_op=True)
    with pytest.raises(ValueError, match="opset"):
        export_lstm(pylstm.LSTM(3, 4), opset=9)


def test_export_lstmcell():
    rng = np.random.default_rng(2)
    for dtype in (np.float32, np.float64):
        cell = pylstm.LSTMCell(3, 4, dtype=dtype, seed=4)
        model = export_lstm(cell, initial_state=True)
        onnx.checker.check_model(model, full_check=True)
        x = rng.standard_normal((2, 3)).astype(dtype)
        hx = (rng.standard_normal((2, 4)).astype(dtype), rng.standard_normal((2, 4)).astype(dtype))
        h, c = _session(model).run(None, {"input": x, "h0": hx[0], "c0": hx[1]})
        h_r, c_r = cell(x, hx)
        assert max(_err(h, h_r), _err(c, c_r)) < (1e-10 if dtype == np.float64 else 2e-5)
