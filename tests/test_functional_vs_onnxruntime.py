"""``functional.lstm`` against onnxruntime's CPU LSTM kernel (and onnx's ReferenceEvaluator
where it applies) over many random configurations covering every attribute."""

from __future__ import annotations

import numpy as np
import pytest

import pylstm
from pylstm import functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

_INPUTS = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
_ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
ACTIVATIONS = ["Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
               "HardSigmoid", "Elu", "Softsign", "Softplus"]
_TAKES = {"Affine": 2, "ScaledTanh": 2, "HardSigmoid": 2, "LeakyRelu": 1, "ThresholdedRelu": 1,
          "Elu": 1}


def _model(inputs: dict, attrs: dict):
    """A one-node ONNX model (opset 14, IR 10) for the given inputs (layout 0)."""
    names = [n if n in inputs else "" for n in _INPUTS]
    while names and not names[-1]:
        names.pop()
    vi = []
    for n in names:
        if n:
            arr = inputs[n]
            et = TensorProto.INT32 if n == "sequence_lens" else _ELEM[arr.dtype]
            vi.append(helper.make_tensor_value_info(n, et, list(arr.shape)))
    et = _ELEM[inputs["X"].dtype]
    attrs = {k: v for k, v in attrs.items() if v is not None}
    attrs["hidden_size"] = inputs["R"].shape[-1]  # onnxruntime requires the attribute
    node = helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], **attrs)
    outs = [helper.make_tensor_value_info(n, et, None) for n in ("Y", "Y_h", "Y_c")]
    graph = helper.make_graph([node], "lstm", vi, outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 10
    return model


def run_ort(inputs: dict, attrs: dict):
    model = _model(inputs, attrs)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {k: (v.astype(np.int32) if k == "sequence_lens" else v) for k, v in inputs.items()}
    return sess.run(None, feeds)


def run_ours(inputs: dict, attrs: dict, layout: int = 0):
    """Our result; with ``layout=1`` the problem is transposed in and the outputs back out."""
    kw = dict(inputs)
    X, W, R = kw.pop("X"), kw.pop("W"), kw.pop("R")
    extra = {k: v for k, v in attrs.items() if v is not None}
    if layout:
        X = np.ascontiguousarray(X.transpose(1, 0, 2))
        for s in ("initial_h", "initial_c"):
            if s in kw:
                kw[s] = np.ascontiguousarray(kw[s].transpose(1, 0, 2))
        Y, Yh, Yc = F.lstm(X, W, R, **kw, **extra, layout=1)
        assert Y.shape[0] == X.shape[0] and Yh.shape[0] == X.shape[0]
        return Y.transpose(1, 2, 0, 3), Yh.transpose(1, 0, 2), Yc.transpose(1, 0, 2)
    return F.lstm(X, W, R, **kw, **extra)


def _acts(rng, nd, names=None):
    """Activations for nd directions (f, g, h), and matching alpha/beta lists (maybe partial)."""
    if names is None:
        names = []
        for _ in range(nd):
            # Keep f a squashing function most of the time so states stay bounded.
            names += [str(rng.choice(ACTIVATIONS)) if rng.random() < 0.5 else "Sigmoid",
                      str(rng.choice(ACTIVATIONS)), str(rng.choice(ACTIVATIONS))]
    n_alpha = sum(1 for n in names if n in _TAKES)
    n_beta = sum(1 for n in names if _TAKES.get(n) == 2)
    mode = rng.integers(3)  # 0: none given, 1: all given, 2: some given (rest default)
    alpha = beta = None
    if mode == 1 or (mode == 2 and n_alpha):
        k = n_alpha if mode == 1 else int(rng.integers(0, n_alpha + 1))
        alpha = [float(v) for v in rng.uniform(0.1, 1.5, k)] or None
        k = n_beta if mode == 1 else int(rng.integers(0, n_beta + 1))
        beta = [float(v) for v in rng.uniform(-0.5, 0.8, k)] or None
    return names, alpha, beta


def _config(seed: int):
    rng = np.random.default_rng(1000 + seed)
    direction = ["forward", "reverse", "bidirectional"][seed % 3]
    nd = 2 if direction == "bidirectional" else 1
    T, nb, n_in, H = (int(v) for v in (rng.integers(1, 6), rng.integers(1, 5), rng.integers(1, 5),
                                    rng.integers(1, 6)))
    inputs = {
        "X": rng.standard_normal((T, nb, n_in)),
        "W": rng.standard_normal((nd, 4 * H, n_in)) * 0.5,
        "R": rng.standard_normal((nd, 4 * H, H)) * 0.5,
    }
    if rng.random() < 0.7:
        inputs["B"] = rng.standard_normal((nd, 8 * H)) * 0.5
    lens_mode = rng.integers(4)
    if lens_mode == 1:
        inputs["sequence_lens"] = np.full(nb, T, np.int32)
    elif lens_mode >= 2:
        lens = rng.integers(1, T + 1, nb).astype(np.int32)
        lens[0] = 1  # always include a length-1 sequence
        if nb > 1:
            lens[-1] = T
        inputs["sequence_lens"] = lens
    if rng.random() < 0.5:
        inputs["initial_h"] = rng.standard_normal((nd, nb, H)) * 0.5
    if rng.random() < 0.5:
        inputs["initial_c"] = rng.standard_normal((nd, nb, H)) * 0.5
    if rng.random() < 0.5:
        inputs["P"] = rng.standard_normal((nd, 3 * H)) * 0.5
    attrs = dict(hidden_size=H if rng.random() < 0.7 else None, direction=direction)
    if rng.random() < 0.6:
        attrs["activations"], attrs["activation_alpha"], attrs["activation_beta"] = _acts(rng, nd)
    if rng.random() < 0.4:
        attrs["clip"] = float(rng.uniform(0.3, 2.0))
    if rng.random() < 0.3:
        attrs["input_forget"] = 1
    layout = int(rng.random() < 0.4)
    return inputs, attrs, layout


CONFIGS = list(range(48))


def _cast(inputs, dtype):
    return {k: (v if k == "sequence_lens" else v.astype(dtype)) for k, v in inputs.items()}


def _check(got, want, rtol, atol, what=""):
    for name, g, w in zip(("Y", "Y_h", "Y_c"), got, want, strict=True):
        assert g.shape == w.shape, (what, name, g.shape, w.shape)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{what} {name}")


@pytest.mark.parametrize("seed", CONFIGS)
def test_random_config_float32_vs_onnxruntime(seed):
    inputs, attrs, layout = _config(seed)
    x32 = _cast(inputs, np.float32)
    want = run_ort(x32, attrs)
    got = run_ours(x32, attrs, layout)
    for g in got:
        assert g.dtype == np.float32
    _check(got, want, 2e-4, 2e-5, f"config {seed}: {attrs} layout={layout}")


@pytest.mark.parametrize("seed", CONFIGS)
def test_random_config_float64_vs_reference_and_onnxruntime(seed, ref):
    inputs, attrs, layout = _config(seed)
    x64 = _cast(inputs, np.float64)
    got = run_ours(x64, attrs, layout)
    for g in got:
        assert g.dtype == np.float64
    kw = {k: v for k, v in x64.items()}
    X, W, R = kw.pop("X"), kw.pop("W"), kw.pop("R")
    want = ref.onnx_lstm(X, W, R, **kw, **{k: v for k, v in attrs.items()
                                           if v is not None and k != "hidden_size"})
    _check(got, want, 1e-9, 1e-10, f"config {seed} vs numpy reference")
    # onnxruntime has no float64 LSTM kernel: compare with its float32 result.
    ort32 = run_ort(_cast(inputs, np.float32), attrs)
    _check(got, ort32, 5e-4, 5e-5, f"config {seed} vs onnxruntime (float32)")


def test_configs_cover_every_attribute():
    seen = {"layout1": 0, "clip": 0, "input_forget": 0, "P": 0, "lens": 0, "alpha": 0,
            "initial_h": 0, "initial_c": 0, "no_B": 0}
    dirs, acts = set(), set()
    for seed in CONFIGS:
        inputs, attrs, layout = _config(seed)
        dirs.add(attrs["direction"])
        acts.update(attrs.get("activations") or [])
        seen["layout1"] += layout
        seen["clip"] += "clip" in attrs
        seen["input_forget"] += "input_forget" in attrs
        seen["alpha"] += bool(attrs.get("activation_alpha"))
        seen["no_B"] += "B" not in inputs
        for k in ("P", "initial_h", "initial_c"):
            seen[k] += k in inputs
        seen["lens"] += "sequence_lens" in inputs
    assert dirs == {"forward", "reverse", "bidirectional"}
    assert acts == set(ACTIVATIONS)
    assert all(v >= 3 for v in seen.values()), seen


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("slot", [0, 1, 2])
@pytest.mark.parametrize("explicit", [False, True], ids=["default_params", "explicit_params"])
def test_each_activation_each_slot(name, slot, explicit):
    rng = np.random.default_rng(ACTIVATIONS.index(name) * 10 + slot)
    T, nb, n_in, H = 4, 3, 3, 4
    inputs = {"X": rng.standard_normal((T, nb, n_in)).astype(np.float32),
              "W": (rng.standard_normal((1, 4 * H, n_in)) * 0.5).astype(np.float32),
              "R": (rng.standard_normal((1, 4 * H, H)) * 0.5).astype(np.float32),
              "B": (rng.standard_normal((1, 8 * H)) * 0.5).astype(np.float32)}
    names = ["Sigmoid", "Tanh", "Tanh"]
    names[slot] = name
    attrs = {"hidden_size": H, "activations": names}
    if explicit and name in _TAKES:
        attrs["activation_alpha"] = [0.7]
        if _TAKES[name] == 2:
            attrs["activation_beta"] = [0.3]
    want = run_ort(inputs, attrs)
    got = run_ours(inputs, attrs)
    _check(got, want, 2e-4, 2e-5, f"{names} {attrs.get('activation_alpha')}")


def test_alpha_beta_consumed_in_order_bidirectional():
    """alpha/beta go, in order, only to the functions taking them, across both directions."""
    rng = np.random.default_rng(7)
    T, nb, n_in, H = 3, 2, 3, 3
    inputs = {"X": rng.standard_normal((T, nb, n_in)).astype(np.float32),
              "W": (rng.standard_normal((2, 4 * H, n_in)) * 0.5).astype(np.float32),
              "R": (rng.standard_normal((2, 4 * H, H)) * 0.5).astype(np.float32)}
    attrs = {"direction": "bidirectional",
             "activations": ["HardSigmoid", "Softsign", "ScaledTanh",
                             "Sigmoid", "LeakyRelu", "Affine"],
             "activation_alpha": [0.3, 0.9, 0.05, 0.6],
             "activation_beta": [0.45, 1.2, -0.1]}
    want = run_ort(inputs, attrs)
    got = run_ours(inputs, attrs)
    _check(got, want, 2e-4, 2e-5)
    # And the permutation matters: a differently ordered alpha list gives a different answer.
    attrs2 = dict(attrs, activation_alpha=[0.9, 0.3, 0.6, 0.05])
    other = run_ours(inputs, attrs2)
    assert not np.allclose(other[0], got[0])


def test_layout1_large_batch_vs_onnxruntime():
    rng = np.random.default_rng(3)
    T, nb, n_in, H = 5, 7, 4, 6
    inputs = {"X": rng.standard_normal((T, nb, n_in)).astype(np.float32),
              "W": (rng.standard_normal((2, 4 * H, n_in)) * 0.4).astype(np.float32),
              "R": (rng.standard_normal((2, 4 * H, H)) * 0.4).astype(np.float32),
              "B": (rng.standard_normal((2, 8 * H)) * 0.4).astype(np.float32),
              "sequence_lens": np.array([5, 1, 3, 4, 2, 5, 1], np.int32),
              "initial_h": (rng.standard_normal((2, nb, H)) * 0.4).astype(np.float32),
              "initial_c": (rng.standard_normal((2, nb, H)) * 0.4).astype(np.float32),
              "P": (rng.standard_normal((2, 3 * H)) * 0.4).astype(np.float32)}
    attrs = {"direction": "bidirectional", "hidden_size": H}
    want = run_ort(inputs, attrs)
    _check(run_ours(inputs, attrs, layout=1), want, 2e-4, 2e-5)
    _check(run_ours(inputs, attrs, layout=0), want, 2e-4, 2e-5)


# --- onnx.reference.ReferenceEvaluator (default activations, no clip/input_forget/sequence_lens)


@pytest.mark.parametrize("seed", range(12))
def test_vs_reference_evaluator(seed):
    rng = np.random.default_rng(500 + seed)
    direction = ["forward", "reverse", "bidirectional"][seed % 3]
    nd = 2 if direction == "bidirectional" else 1
    T, nb, n_in, H = (int(v) for v in rng.integers(1, 6, 4))
    layout = seed % 2
    dtype = np.float32 if seed % 4 < 2 else np.float64
    inputs = {"X": rng.standard_normal((nb, T, n_in) if layout else (T, nb, n_in)).astype(dtype),
              "W": (rng.standard_normal((nd, 4 * H, n_in)) * 0.5).astype(dtype),
              "R": (rng.standard_normal((nd, 4 * H, H)) * 0.5).astype(dtype)}
    if seed % 3 != 1:
        inputs["B"] = (rng.standard_normal((nd, 8 * H)) * 0.5).astype(dtype)
    if seed % 2 == 0:
        inputs["P"] = (rng.standard_normal((nd, 3 * H)) * 0.5).astype(dtype)
    if seed % 4 != 3:
        shape = (nb, nd, H) if layout else (nd, nb, H)
        inputs["initial_h"] = (rng.standard_normal(shape) * 0.5).astype(dtype)
        inputs["initial_c"] = (rng.standard_normal(shape) * 0.5).astype(dtype)
    attrs = {"hidden_size": H, "direction": direction, "layout": layout}
    model = _model(inputs, attrs)
    want = ReferenceEvaluator(model).run(None, inputs)
    kw = dict(inputs)
    got = F.lstm(kw.pop("X"), kw.pop("W"), kw.pop("R"), **kw, **attrs)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    _check(got, want, tol, tol, f"seed {seed}")


KERNELS = pylstm.info()["supported_kernels"]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("seed", range(4))
def test_larger_sizes_every_kernel_vs_onnxruntime(kernel, seed):
    """Sizes that fill SIMD vectors and leave tails, with every attribute, on each kernel."""
    rng = np.random.default_rng(900 + seed)
    T, nb, n_in, H = 5, [67, 16, 33, 130][seed], [5, 17, 1, 40][seed], [19, 16, 33, 9][seed]
    nd = 2
    f = np.float32
    inputs = {"X": rng.standard_normal((T, nb, n_in)).astype(f),
              "W": (rng.standard_normal((nd, 4 * H, n_in)) * 0.3).astype(f),
              "R": (rng.standard_normal((nd, 4 * H, H)) * 0.3).astype(f),
              "B": (rng.standard_normal((nd, 8 * H)) * 0.3).astype(f),
              "sequence_lens": rng.integers(1, T + 1, nb).astype(np.int32),
              "initial_h": (rng.standard_normal((nd, nb, H)) * 0.3).astype(f),
              "initial_c": (rng.standard_normal((nd, nb, H)) * 0.3).astype(f),
              "P": (rng.standard_normal((nd, 3 * H)) * 0.3).astype(f)}
    acts = [["Sigmoid", "Tanh", "Tanh", "HardSigmoid", "Softsign", "Elu"],
            ["Sigmoid", "Relu", "ScaledTanh", "Sigmoid", "LeakyRelu", "Softplus"],
            ["HardSigmoid", "Affine", "ThresholdedRelu", "Sigmoid", "Tanh", "Tanh"],
            None][seed]
    # Exactly as many alpha/beta values as the activations consume (extras are an error).
    attrs = {"direction": "bidirectional", "activations": acts,
             "activation_alpha": [[0.4, 0.8], [0.4, 0.8], [0.4, 0.8, 0.3], None][seed],
             "activation_beta": [[0.5], [0.5], [0.5, 0.2], None][seed],
             "clip": [None, 1.5, 2.5, 0.8][seed], "input_forget": seed % 2}
    want = run_ort(inputs, attrs)
    before = pylstm.kernel()
    try:
        pylstm.set_kernel(kernel)
        _check(run_ours(inputs, attrs, layout=seed % 2), want, 3e-4, 3e-5, f"{kernel} {seed}")
    finally:
        pylstm.set_kernel(before)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("with_lens", [False, True])
def test_zero_input_size_vs_onnxruntime(kernel, direction, with_lens):
    """input_size 0: the gates come from B, P, the initial states and the recurrence, on each
    kernel path; batches of 3 (dot form) and 40 (tile kernels). The reference is onnxruntime on
    the same operator with input_size 1 and X = W = 0 (the same function): onnxruntime accepts
    input_size 0 itself but then reads an uninitialised input projection at larger batches
    (its outputs change from run to run), so it cannot be the reference there."""
    rng = np.random.default_rng(17)
    nd = 2 if direction == "bidirectional" else 1
    f = np.float32
    for T, nb, H in ((4, 3, 5), (6, 40, 33)):
        inputs = {"X": np.zeros((T, nb, 0), f), "W": np.zeros((nd, 4 * H, 0), f),
                  "R": (rng.standard_normal((nd, 4 * H, H)) * 0.4).astype(f),
                  "B": (rng.standard_normal((nd, 8 * H)) * 0.4).astype(f),
                  "initial_h": (rng.standard_normal((nd, nb, H)) * 0.4).astype(f),
                  "initial_c": (rng.standard_normal((nd, nb, H)) * 0.4).astype(f),
                  "P": (rng.standard_normal((nd, 3 * H)) * 0.4).astype(f)}
        if with_lens:
            inputs["sequence_lens"] = rng.integers(1, T + 1, nb).astype(np.int32)
        attrs = {"direction": direction, "clip": 2.0}
        want = run_ort({**inputs, "X": np.zeros((T, nb, 1), f),
                        "W": np.zeros((nd, 4 * H, 1), f)}, attrs)
        before = pylstm.kernel()
        try:
            pylstm.set_kernel(kernel)
            for layout in (0, 1):
                _check(run_ours(inputs, attrs, layout=layout), want, 2e-5, 2e-6,
                       f"{kernel} {direction} T={T} nb={nb} layout={layout}")
        finally:
            pylstm.set_kernel(before)
