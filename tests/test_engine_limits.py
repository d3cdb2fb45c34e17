"""The engine at its limits, one regression test per reported repro (issue 13): a zero-width
input through every path, impossible sizes, a tape used twice, arguments of the wrong type or
value, and panics. Nothing here may abort the process or print a panic."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pylstm
from pylstm import _core
from pylstm import functional as F

ACTS = [("Sigmoid", None, None), ("Tanh", None, None), ("Tanh", None, None)]


def _no_panic_printed(capfd) -> None:
    out, err = capfd.readouterr()
    for text in (out, err):
        assert "panicked" not in text and "RUST_BACKTRACE" not in text, text


# ----------------------------------------------------------------------------- input_size 0


@pytest.mark.parametrize("lens", [None, [1]])
def test_zero_input_backward_repro(lens, capfd):
    """The repro: a reverse direction over a zero-width input panicked in backward ("chunk
    size must be non-zero") and printed the panic."""
    X = np.zeros((2, 1, 0), np.float32)
    W = np.zeros((1, 4, 0), np.float32)
    R = np.zeros((1, 4, 1), np.float32)
    Y, Y_h, Y_c, tape = F.lstm(X, W, R, sequence_lens=lens, direction="reverse",
                               requires_grad=True)
    g = F.lstm_backward(tape, dY=np.ones_like(Y))
    assert g["X"].shape == (2, 1, 0) and g["W"].shape == (1, 4, 0) and g["R"].shape == (1, 4, 1)
    # Zero weights and bias: h = 0.5 * tanh(0.5 * 0 + 0.5 * tanh(0)) ... = 0 exactly, and the
    # gradient reaching R multiplies h = 0.
    assert np.all(Y == 0) and np.all(g["R"] == 0)
    _no_panic_printed(capfd)


def _zero_input_problem(rng, nd, T=5, nb=4, H=3, dtype=np.float64):
    return dict(
        X=np.zeros((T, nb, 0), dtype),
        W=np.zeros((nd, 4 * H, 0), dtype),
        R=(rng.standard_normal((nd, 4 * H, H)) * 0.5).astype(dtype),
        B=(rng.standard_normal((nd, 8 * H)) * 0.5).astype(dtype),
        initial_h=(rng.standard_normal((nd, nb, H)) * 0.5).astype(dtype),
        initial_c=(rng.standard_normal((nd, nb, H)) * 0.5).astype(dtype),
        P=(rng.standard_normal((nd, 3 * H)) * 0.5).astype(dtype),
    )


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("lens", [None, [5, 2, 1, 4]])
@pytest.mark.parametrize("layout", [0, 1])
def test_zero_input_gradients_match_finite_differences(direction, lens, layout):
    """With no inputs the gradients of B, R, P and the initial states still flow; each checked
    against central differences of the forward pass (float64)."""
    rng = np.random.default_rng(3)
    nd = 2 if direction == "bidirectional" else 1
    a = _zero_input_problem(rng, nd)
    if layout:
        a["X"] = np.zeros((4, 5, 0))
        for s in ("initial_h", "initial_c"):
            a[s] = np.ascontiguousarray(a[s].transpose(1, 0, 2))
    kw = dict(sequence_lens=lens, direction=direction, layout=layout)
    Y, Y_h, Y_c, tape = F.lstm(**a, **kw, requires_grad=True)
    wy, wh, wc = (rng.standard_normal(v.shape) for v in (Y, Y_h, Y_c))
    g = F.lstm_backward(tape, wy, wh, wc)

    def loss(args):
        y, yh, yc = F.lstm(**args, **kw)
        return float(np.sum(y * wy) + np.sum(yh * wh) + np.sum(yc * wc))

    assert g["X"].shape == a["X"].shape and g["W"].shape == a["W"].shape
    eps = 1e-6
    for name in ("B", "R", "P", "initial_h", "initial_c"):
        flat = a[name].reshape(-1)
        for k in range(0, flat.size, max(1, flat.size // 12)):
            v = flat[k]
            flat[k] = v + eps
            lp = loss(a)
            flat[k] = v - eps
            lm = loss(a)
            flat[k] = v
            fd = (lp - lm) / (2 * eps)
            got = g[name].reshape(-1)[k]
            assert abs(got - fd) <= 1e-6 * (1 + abs(fd)), (name, k, got, fd)


def _torch_zero_input_lstm(torch, nd, layers, H, params):
    """torch.nn.LSTM with input_size 0 (its constructor refuses 0, its kernels do not): built
    for 1 input, then given empty first-layer input weights."""
    m = torch.nn.LSTM(1, H, num_layers=layers, bidirectional=nd == 2, dtype=torch.float64)
    m.input_size = 0
    with torch.no_grad():
        for name, value in params.items():
            setattr(m, name, torch.nn.Parameter(torch.from_numpy(value.copy())))
    return m


def _engine_layers(params, nd, layers):
    out = []
    for layer in range(layers):
        dirs = []
        for d in range(nd):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            dirs.append((params["weight_ih" + sfx], params["weight_hh" + sfx],
                         params["bias_ih" + sfx] + params["bias_hh" + sfx], None, None))
        out.append(dirs)
    return out


@pytest.mark.parametrize("nd", [1, 2])
def test_zero_input_torch_order_stack_vs_torch(nd):
    """The path the modules use (PyTorch gate order, two layers) with input_size 0, forward
    and backward, against torch; with lengths, against torch run sequence by sequence."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    T, nb, H, L = 6, 3, 4, 2
    params = {}
    for layer in range(L):
        for d in range(nd):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            inp = 0 if layer == 0 else nd * H
            params["weight_ih" + sfx] = rng.standard_normal((4 * H, inp)) * 0.5
            params["weight_hh" + sfx] = rng.standard_normal((4 * H, H)) * 0.5
            params["bias_ih" + sfx] = rng.standard_normal(4 * H) * 0.5
            params["bias_hh" + sfx] = rng.standard_normal(4 * H) * 0.5
    m = _torch_zero_input_lstm(torch, nd, L, H, params)
    h0 = rng.standard_normal((L * nd, nb, H)) * 0.5
    c0 = rng.standard_normal((L * nd, nb, H)) * 0.5
    x = np.zeros((T, nb, 0))
    layers = _engine_layers(params, nd, L)
    common = dict(hidden_size=H, proj_size=0, order="torch", reverse=[False, True][:nd],
                  activations=[ACTS] * nd, h0=h0, c0=c0)
    y, hn, cn, tape = _core.network_forward(x, layers, keep_tape=True, **common)
    ty, (th, tc) = m(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(hn, th.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(cn, tc.detach().numpy(), atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx, dh0, _, grads = _core.network_backward(tape, layers, dy, None, None)
    h0t = torch.from_numpy(h0).requires_grad_()
    ty, _ = m(torch.from_numpy(x), (h0t, torch.from_numpy(c0)))
    (ty * torch.from_numpy(dy)).sum().backward()
    assert dx.shape == (T, nb, 0)
    np.testing.assert_allclose(dh0, h0t.grad.numpy(), atol=1e-10)
    for layer in range(L):
        for d in range(nd):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            np.testing.assert_allclose(grads[layer][d]["R"], getattr(m, "weight_hh" + sfx).grad,
                                       atol=1e-10, err_msg=sfx)
            np.testing.assert_allclose(grads[layer][d]["B"], getattr(m, "bias_ih" + sfx).grad,
                                       atol=1e-10, err_msg=sfx)
    # Variable lengths: each sequence alone through torch gives its rows of y, h_n and c_n.
    lens = [6, 2, 4]
    y, hn, cn, _ = _core.network_forward(x, layers, lengths=lens, **common)
    for b, n in enumerate(lens):
        with torch.no_grad():
            ty, (th, tc) = m(torch.zeros(n, 1, 0, dtype=torch.float64),
                             (torch.from_numpy(h0[:, b:b + 1].copy()),
                              torch.from_numpy(c0[:, b:b + 1].copy())))
        np.testing.assert_allclose(y[:n, b], ty[:, 0].numpy(), atol=1e-12)
        assert np.all(y[n:, b] == 0)
        np.testing.assert_allclose(hn[:, b], th[:, 0].numpy(), atol=1e-12)
        np.testing.assert_allclose(cn[:, b], tc[:, 0].numpy(), atol=1e-12)


# ----------------------------------------------------------------------------- impossible sizes

_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import pylstm
    from pylstm import _core
    from pylstm import functional as F
    ACTS = [("Sigmoid", None, None), ("Tanh", None, None), ("Tanh", None, None)]
    W, R = np.zeros((1, 4, 0), np.float32), np.zeros((1, 4, 1), np.float32)
    W2, R2 = np.zeros((2, 4, 0), np.float64), np.zeros((2, 4, 1), np.float64)
    big_view = np.broadcast_to(np.zeros(3, np.float32), (2**40, 1, 3))
    calls = {
        "T=2^40": lambda: F.lstm(np.zeros((2**40, 1, 0), np.float32), W, R),
        "B=2^40": lambda: F.lstm(np.zeros((1, 2**40, 0), np.float32), W, R),
        "T=2^36": lambda: F.lstm(np.zeros((2**36, 1, 0), np.float32), W, R),
        "T=2^36 bidirectional float64 with a tape": lambda: F.lstm(
            np.zeros((2**36, 1, 0)), W2, R2, direction="bidirectional", requires_grad=True),
        "T=2^38 B=2^3 layout 1": lambda: F.lstm(np.zeros((8, 2**38, 0), np.float32), W, R,
                                                layout=1),
        "T=2^40 with lengths": lambda: F.lstm(np.zeros((2**40, 1, 0), np.float32), W, R,
                                              sequence_lens=[1]),
        "T=2^24 B=2^10 H=2^8 (gates only)": lambda: F.lstm(
            np.zeros((2**24, 2**10, 0), np.float32), np.zeros((1, 1024, 0), np.float32),
            np.zeros((1, 1024, 256), np.float32)),
        "torch order T=2^40": lambda: _core.network_forward(
            np.zeros((2**40, 1, 0), np.float32), [[(W[0], R[0], None, None, None)]],
            hidden_size=1, proj_size=0, order="torch", reverse=[False], activations=[ACTS]),
        "broadcast X of 2^40 rows": lambda: F.lstm(big_view, np.zeros((1, 4, 3), np.float32),
                                                    R),
    }
    for name, call in calls.items():
        try:
            call()
            print(json.dumps([name, "returned", ""]), flush=True)
        except BaseException as e:
            kinds = [c.__name__ for c in type(e).__mro__]
            print(json.dumps([name, kinds, str(e)]), flush=True)
    # The engine is intact afterwards.
    Y, _, _ = F.lstm(np.zeros((3, 2, 0), np.float32), np.zeros((1, 8, 0), np.float32),
                     np.ones((1, 8, 2), np.float32))
    print(json.dumps(["after", list(Y.shape), ""]))
""")


def test_impossible_sizes_are_memory_errors_not_aborts():
    """The repro aborted the process ("memory allocation of 8796093022208 bytes failed"): each
    impossible size is now a PylstmMemoryError (a MemoryError) naming X. In a child process,
    so that a regression fails this test instead of killing the run."""
    res = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, f"child died ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    assert "memory allocation" not in res.stderr and "panicked" not in res.stderr, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 10 and rows[-1] == ["after", [3, 1, 2, 2], ""], res.stdout
    for name, kinds, msg in rows[:-1]:
        assert kinds != "returned", f"{name}: returned instead of raising"
        assert "PylstmMemoryError" in kinds and "MemoryError" in kinds, (name, kinds, msg)
        assert "PylstmError" in kinds, (name, kinds)
        assert msg.startswith("X:"), (name, msg)


# ----------------------------------------------------------------------------- tapes


def _small(rng, dtype=np.float64, nd=2):
    return dict(X=rng.standard_normal((4, 3, 2)).astype(dtype),
                W=rng.standard_normal((nd, 12, 2)).astype(dtype),
                R=rng.standard_normal((nd, 12, 3)).astype(dtype))


def test_second_backward_on_a_tape_is_a_tape_error():
    """The repro: a second backward on one tape silently accumulated the gradients again."""
    a = _small(np.random.default_rng(0))
    Y, *_, tape = F.lstm(**a, direction="bidirectional", requires_grad=True)
    before = tape.nbytes
    F.lstm_backward(tape, np.ones_like(Y))
    assert before > 0 and tape.nbytes == 0, "a used tape frees what it held"
    with pytest.raises(pylstm.TapeError) as err:
        F.lstm_backward(tape, np.ones_like(Y))
    assert isinstance(err.value, ValueError)
    assert "tape" in str(err.value) and "retain=True" in str(err.value)
    with pytest.raises(pylstm.TapeError):
        F.lstm_backward(tape, np.ones_like(Y), retain=True)


def test_retain_allows_another_backward_with_the_same_result():
    a = _small(np.random.default_rng(1))
    Y, *_, tape = F.lstm(**a, requires_grad=True, direction="bidirectional")
    dY = np.random.default_rng(2).standard_normal(Y.shape)
    g1 = F.lstm_backward(tape, dY, retain=True)
    g2 = F.lstm_backward(tape, dY, retain=True)
    g3 = F.lstm_backward(tape, dY)
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k], err_msg=k)
        np.testing.assert_array_equal(g1[k], g3[k], err_msg=k)
    with pytest.raises(pylstm.TapeError):
        F.lstm_backward(tape, dY)


def test_failed_backward_leaves_the_tape_usable():
    a = _small(np.random.default_rng(3), nd=1)
    Y, *_, tape = F.lstm(**a, requires_grad=True)
    with pytest.raises(pylstm.ShapeError):
        F.lstm_backward(tape, np.ones((1, 2, 3)))
    with pytest.raises(pylstm.ShapeError):  # a size only the engine checks
        _core.network_backward(tape.core, tape.layers, np.ones(5))
    assert F.lstm_backward(tape, np.ones_like(Y))["X"].shape == a["X"].shape


def test_core_backward_keeps_its_positional_form_and_takes_retain():
    """``pylstm.modules`` calls ``network_backward(tape, layers, dy, dh, dc)`` positionally."""
    a = _small(np.random.default_rng(4), np.float32, nd=1)
    Y, *_, tape = F.lstm(**a, requires_grad=True)
    dy = np.ones((4, 3, 3), np.float32)
    first = _core.network_backward(tape.core, tape.layers, dy, None, None, retain=True)
    again = _core.network_backward(tape.core, tape.layers, dy, None, None)
    np.testing.assert_array_equal(first[0], again[0])
    assert tape.core.used
    with pytest.raises(pylstm.TapeError, match="retain=True"):
        _core.network_backward(tape.core, tape.layers, dy, None, None)
    for bad in ("yes", 1, None):
        with pytest.raises(pylstm.DTypeError, match="retain"):
            F.lstm_backward(tape, retain=bad)
    with pytest.raises(pylstm.TapeError, match="tape"):
        _core.network_backward("not a tape", tape.layers)


# ----------------------------------------------------------------------------- arguments


def _args():
    rng = np.random.default_rng(5)
    return dict(X=rng.standard_normal((3, 2, 4)).astype(np.float32),
                W=rng.standard_normal((1, 28, 4)).astype(np.float32),
                R=rng.standard_normal((1, 28, 7)).astype(np.float32))


@pytest.mark.parametrize("kw,cls,parts", [
    (dict(direction=["forward"]), pylstm.DTypeError, ["direction", "str", "list"]),
    (dict(direction=b"forward"), pylstm.DTypeError, ["direction", "bytes"]),
    (dict(clip="1"), pylstm.DTypeError, ["clip", "number", "'1'"]),
    (dict(clip=True), pylstm.DTypeError, ["clip", "bool"]),
    (dict(clip=float("inf")), pylstm.LstmValueError, ["clip", "inf"]),
    (dict(hidden_size=7.0), pylstm.DTypeError, ["hidden_size", "int", "float 7.0"]),
    (dict(hidden_size=True), pylstm.DTypeError, ["hidden_size", "bool"]),
    (dict(hidden_size="7"), pylstm.DTypeError, ["hidden_size", "'7'"]),
    (dict(layout=True), pylstm.DTypeError, ["layout", "int", "bool True"]),
    (dict(layout=1.0), pylstm.DTypeError, ["layout", "float 1.0"]),
    (dict(layout=-1), pylstm.LstmValueError, ["layout", "0 or 1", "-1"]),
    (dict(input_forget=True), pylstm.DTypeError, ["input_forget", "bool"]),
    (dict(input_forget=0.5), pylstm.DTypeError, ["input_forget", "float 0.5"]),
    (dict(activation_alpha=[0.5]), pylstm.LstmValueError,
     ["activation_alpha", "at most 0", "got 1"]),
    (dict(activations=["HardSigmoid", "Tanh", "Tanh"], activation_alpha=[0.2, 0.1],
          activation_beta=[0.5, 0.5, 0.1]), pylstm.LstmValueError,
     ["activation_alpha", "at most 1", "got 2"]),
    (dict(activations=["HardSigmoid", "Tanh", "Tanh"], activation_beta=[0.5, 0.5]),
     pylstm.LstmValueError, ["activation_beta", "at most 1", "got 2"]),
    (dict(activations=["LeakyRelu", "Tanh", "Tanh"], activation_alpha=[float("nan")]),
     pylstm.LstmValueError, ["activation_alpha[0]", "nan"]),
    (dict(activations=["Elu", "Tanh", "Tanh"], activation_alpha=["0.1"]),
     pylstm.DTypeError, ["activation_alpha[0]", "'0.1'"]),
    (dict(activations=["Elu", "Tanh", "Tanh"], activation_alpha=0.1),
     pylstm.DTypeError, ["activation_alpha", "list", "float 0.1"]),
    (dict(activations="Tanh"), pylstm.DTypeError, ["activations", "list", "str"]),
    (dict(activations=["Sigmoid", 3, "Tanh"]), pylstm.DTypeError, ["activations", "int 3"]),
    (dict(sequence_lens=np.array([2.0, 3.0])), pylstm.DTypeError, ["sequence_lens", "float64"]),
    (dict(sequence_lens=[True, True]), pylstm.DTypeError, ["sequence_lens", "bool"]),
    (dict(sequence_lens=[[1, 2], [3]]), pylstm.DTypeError, ["sequence_lens", "list"]),
    (dict(sequence_lens=[2**70, 1]), pylstm.DTypeError, ["sequence_lens"]),
    (dict(requires_grad="yes"), pylstm.DTypeError, ["requires_grad", "bool", "'yes'"]),
    (dict(bf16_weights=1), pylstm.DTypeError, ["bf16_weights", "bool", "int 1"]),
    (dict(backend=3), pylstm.DTypeError, ["backend", "str", "int 3"]),
])
def test_arguments_of_the_wrong_type_or_value(kw, cls, parts):
    """Each hole of the repro list gets the package's own error naming the argument, the
    expected and the actual value (never a numpy error, an unhashable-type error, or a pass)."""
    with pytest.raises(cls) as err:
        F.lstm(**_args(), **kw)
    assert isinstance(err.value, pylstm.errors.PylstmError)
    msg = str(err.value)
    assert msg.startswith(parts[0]), msg
    for p in parts:
        assert p in msg, f"{p!r} not in {msg!r}"


def test_numpy_scalars_are_accepted_as_ints_and_numbers():
    ref = F.lstm(**_args(), clip=1.5, hidden_size=7)
    got = F.lstm(**_args(), clip=np.float32(1.5), hidden_size=np.int64(7), layout=np.int8(0),
                 input_forget=np.uint8(0), sequence_lens=np.array([3, 3], np.uint16),
                 requires_grad=np.bool_(False))
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("call,cls,parts", [
    (lambda: pylstm.set_num_threads(2.0), pylstm.DTypeError, ["n", "float 2.0"]),
    (lambda: pylstm.set_num_threads(True), pylstm.DTypeError, ["n", "bool"]),
    (lambda: pylstm.set_num_threads(0), pylstm.LstmValueError, ["n", ">= 1", "0"]),
    (lambda: pylstm.set_kernel(3), pylstm.DTypeError, ["name", "int 3"]),
    (lambda: _core.set_num_threads(True), pylstm.DTypeError, ["n", "bool"]),
    (lambda: _core.fma_peak("1"), pylstm.DTypeError, ["seconds", "str"]),
])
def test_runtime_settings_reject_wrong_types(call, cls, parts):
    threads = pylstm.get_num_threads()
    try:
        with pytest.raises(cls) as err:
            call()
    finally:
        pylstm.set_num_threads(threads)
    for p in parts:
        assert p in str(err.value), str(err.value)


# ----------------------------------------------------------------------------- panics


@pytest.mark.parametrize("in_pool,in_binding", [(False, False), (True, False), (False, True)])
def test_a_panic_is_an_engine_error_and_prints_nothing(in_pool, in_binding, capfd):
    threads = pylstm.get_num_threads()
    pylstm.set_num_threads(2)
    try:
        with pytest.raises(pylstm.EngineError) as err:
            _core._debug_panic(in_pool, in_binding)
        assert isinstance(err.value, RuntimeError)
        assert isinstance(err.value, pylstm.errors.PylstmError)
        assert "debug panic" in str(err.value) and "report" in str(err.value)
        _no_panic_printed(capfd)
        # The pool survives a panicking worker: a threaded call still runs.
        a = _small(np.random.default_rng(6))
        assert F.lstm(**a, direction="bidirectional")[0].shape == (4, 2, 3, 3)
    finally:
        pylstm.set_num_threads(threads)
