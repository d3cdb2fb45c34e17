"""Bad input raises a ValueError/TypeError subclass naming the argument, the expected and the
actual value; unusual but valid input (non-contiguous arrays, NaN) works."""

from __future__ import annotations

import re

import numpy as np
import pytest

import pylstm
from pylstm import functional as F

T, NB, n_in, H = 3, 2, 4, 5


def _inputs(nd=1, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        X=rng.standard_normal((T, NB, n_in)).astype(dtype),
        W=(rng.standard_normal((nd, 4 * H, n_in)) * 0.5).astype(dtype),
        R=(rng.standard_normal((nd, 4 * H, H)) * 0.5).astype(dtype),
        B=(rng.standard_normal((nd, 8 * H)) * 0.5).astype(dtype),
        initial_h=(rng.standard_normal((nd, NB, H)) * 0.5).astype(dtype),
        initial_c=(rng.standard_normal((nd, NB, H)) * 0.5).astype(dtype),
        P=(rng.standard_normal((nd, 3 * H)) * 0.5).astype(dtype),
    )


def _call(args, **kw):
    a = dict(args)
    return F.lstm(a.pop("X"), a.pop("W"), a.pop("R"), **a, **kw)


def _mentions(msg: str, *parts: str):
    for p in parts:
        assert p in msg, f"{p!r} not in message {msg!r}"


def _shape(shape):
    return "[" + ", ".join(map(str, shape)) + "]"


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name,bad,expected", [
    ("X", (T, NB), "3 dimensions"),
    ("X", (T, NB, n_in, 1), "3 dimensions"),
    ("W", (1, 4 * H, n_in + 1), _shape((1, 4 * H, n_in))),
    ("W", (1, 4 * H + 1, n_in), _shape((1, 4 * H, n_in))),
    ("W", (2, 4 * H, n_in), _shape((1, 4 * H, n_in))),
    ("W", (4 * H, n_in), _shape((1, 4 * H, n_in))),
    ("R", (1, 4 * H + 1, H), _shape((1, 4 * H, H))),
    ("R", (4 * H, H), "3 dimensions"),
    ("B", (1, 4 * H), _shape((1, 8 * H))),
    ("B", (8 * H,), _shape((1, 8 * H))),
    ("P", (1, 4 * H), _shape((1, 3 * H))),
    ("initial_h", (1, NB + 1, H), _shape((1, NB, H))),
    ("initial_h", (NB, H), _shape((1, NB, H))),
    ("initial_c", (1, NB, H - 1), _shape((1, NB, H))),
])
def test_functional_wrong_shapes(name, bad, expected):
    args = _inputs()
    args[name] = np.zeros(bad)
    with pytest.raises(pylstm.ShapeError) as err:
        _call(args)
    assert isinstance(err.value, ValueError)
    msg = str(err.value)
    _mentions(msg, expected, _shape(bad))
    assert msg.startswith(name + ":"), msg


def test_functional_hidden_size_from_R_disagrees_with_W():
    """R's last axis gives hidden_size; W (and R's own 4*hidden_size axis) must follow it."""
    args = _inputs()
    args["R"] = np.zeros((1, 4 * H, H + 1))
    with pytest.raises(pylstm.ShapeError) as err:
        _call(args)
    msg = str(err.value)
    assert "W" in msg or "R" in msg, msg
    _mentions(msg, _shape((1, 4 * (H + 1), n_in)), _shape((1, 4 * H, n_in)))


def test_functional_shapes_disagree_between_directions():
    args = _inputs(nd=1)
    with pytest.raises(ValueError) as err:
        _call(args, direction="bidirectional")
    _mentions(str(err.value), "W", _shape((2, 4 * H, n_in)), _shape((1, 4 * H, n_in)))


def test_functional_layout1_state_shape():
    args = _inputs()
    args["X"] = np.ascontiguousarray(args["X"].transpose(1, 0, 2))
    # initial_h in layout-0 shape [1, NB, H] while layout 1 wants [NB, 1, H]
    with pytest.raises(pylstm.ShapeError) as err:
        _call(args, layout=1)
    _mentions(str(err.value), "initial_h", _shape((NB, 1, H)), _shape((1, NB, H)))


@pytest.mark.parametrize("lens,expect", [
    ([0, 1], "got 0"), ([T + 1, 1], f"got {T + 1}"), ([1, -2], "got -2"),
    ([1], "[1]"), ([1, 1, 1], "[3]"), ([[1, 1]], "[1, 2]"),
])
def test_functional_bad_sequence_lens(lens, expect):
    with pytest.raises(ValueError) as err:
        _call(_inputs(), sequence_lens=np.array(lens))
    _mentions(str(err.value), "sequence_lens", expect)


def test_functional_non_integer_sequence_lens():
    with pytest.raises(TypeError) as err:
        _call(_inputs(), sequence_lens=np.array([1.5, 2.0]))
    _mentions(str(err.value), "sequence_lens", "float64")


@pytest.mark.parametrize("shape", [(T, 0, n_in), (0, NB, n_in)])
def test_functional_empty_batch_or_sequence(shape):
    args = _inputs()
    args["X"] = np.zeros(shape)
    args.pop("initial_h")
    args.pop("initial_c")
    with pytest.raises(pylstm.ShapeError) as err:
        _call(args)
    _mentions(str(err.value), "X", _shape(shape))


def test_hidden_size_attribute_disagreeing_with_R():
    with pytest.raises(ValueError) as err:
        _call(_inputs(), hidden_size=H + 2)
    _mentions(str(err.value), "hidden_size", str(H + 2), str(H))
    # Agreeing is fine.
    _call(_inputs(), hidden_size=H)


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16, np.complex128, bool])
def test_functional_bad_x_dtype(dtype):
    args = _inputs()
    args["X"] = args["X"].astype(dtype)
    with pytest.raises(pylstm.DTypeError) as err:
        _call(args)
    assert isinstance(err.value, TypeError)
    _mentions(str(err.value), "X", np.dtype(dtype).name)


@pytest.mark.parametrize("dtype", [np.int32, np.float16])
def test_engine_entry_checks_x_dtype_itself(dtype):
    # The engine tells float32 from float64 by array type, not the dtype's name: anything
    # else still gets a DTypeError that names X and the dtype it got.
    from pylstm import _core

    acts = [("Sigmoid", None, None), ("Tanh", None, None), ("Tanh", None, None)]
    w = np.zeros((16, 4), np.float32)
    with pytest.raises(pylstm.DTypeError) as err:
        _core.network_forward(np.zeros((2, 1, 4), dtype), [[(w, w, None, None, None)]],
                              hidden_size=4, proj_size=0, order="torch", reverse=[False],
                              activations=[acts], h0=None, c0=None, keep_tape=False,
                              packed_weights=None)
    _mentions(str(err.value), "X", np.dtype(dtype).name, "float32 or float64")


@pytest.mark.parametrize("name", ["W", "R", "B", "P", "initial_h", "initial_c"])
@pytest.mark.parametrize("xdt,odt", [(np.float32, np.float64), (np.float64, np.float32),
                                     (np.float64, np.int64), (np.float32, np.float16)])
def test_functional_mixed_dtypes(name, xdt, odt):
    args = _inputs(dtype=xdt)
    args[name] = args[name].astype(odt)
    with pytest.raises(pylstm.DTypeError) as err:
        _call(args)
    _mentions(str(err.value), name, np.dtype(xdt).name, np.dtype(odt).name)


def test_functional_not_an_array():
    with pytest.raises(TypeError) as err:
        _call(dict(_inputs(), X="hello"))
    assert "X" in str(err.value)


# ----------------------------------------------------------------------------- attributes


@pytest.mark.parametrize("kw,parts", [
    (dict(activations=["Sigmoid", "Tanh", "Swish"]), ["activations", "Swish"]),
    (dict(activations=["Sigmoid", "Tanh"]), ["activations", "3", "2"]),
    (dict(activations=["Sigmoid", "Tanh", "Tanh"] * 2), ["activations", "3", "6"]),
    (dict(direction="sideways"), ["direction", "sideways"]),
    (dict(layout=2), ["layout", "2"]),
    (dict(clip=-1.0), ["clip", "-1.0"]),
    (dict(clip=0.0), ["clip", "0.0"]),
    (dict(clip=float("nan")), ["clip", "nan"]),
    (dict(input_forget=2), ["input_forget", "2"]),
])
def test_functional_bad_attributes(kw, parts):
    with pytest.raises(ValueError) as err:
        _call(_inputs(), **kw)
    _mentions(str(err.value), *parts)


def test_activation_names_are_case_insensitive():
    a = _call(_inputs(), activations=["sigmoid", "TANH", "Tanh"])
    b = _call(_inputs())
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------- odd but valid


def _noncontiguous(a: np.ndarray) -> np.ndarray:
    """The same values in a strided (every other element) buffer."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    view = big[..., ::2]
    assert not view.flags.c_contiguous
    return view


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", [0, 1])
def test_functional_non_contiguous_inputs_same_result(dtype, layout):
    args = _inputs(nd=2, dtype=dtype)
    if layout:
        args["X"] = np.ascontiguousarray(args["X"].transpose(1, 0, 2))
        for s in ("initial_h", "initial_c"):
            args[s] = np.ascontiguousarray(args[s].transpose(1, 0, 2))
    want = _call(args, direction="bidirectional", layout=layout, sequence_lens=[3, 1])
    strided = {k: _noncontiguous(v) for k, v in args.items()}
    # Fortran-ordered and transposed views too.
    strided["W"] = np.asfortranarray(args["W"])
    strided["X"] = np.ascontiguousarray(args["X"].transpose(2, 1, 0)).transpose(2, 1, 0)
    assert not strided["X"].flags.c_contiguous
    got = _call(strided, direction="bidirectional", layout=layout, sequence_lens=[3, 1])
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    # And the gradients too.
    *_, tw = _call(args, direction="bidirectional", layout=layout, requires_grad=True)
    *_, tg = _call(strided, direction="bidirectional", layout=layout, requires_grad=True)
    dY = np.ones_like(want[0])
    gw = F.lstm_backward(tw, dY)
    gg = F.lstm_backward(tg, _noncontiguous(dY))
    for k in gw:
        np.testing.assert_array_equal(gg[k], gw[k], err_msg=k)


def test_module_non_contiguous_inputs_same_result():
    m = pylstm.LSTM(n_in, H, num_layers=2, dtype=np.float64, seed=0)
    x = np.random.default_rng(1).standard_normal((T, NB, n_in))
    y, (h, c) = m(x)
    y2, (h2, c2) = m(_noncontiguous(x))
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(c2, c)
    cell = pylstm.LSTMCell(n_in, H, dtype=np.float64, seed=0)
    np.testing.assert_array_equal(cell(_noncontiguous(x[0]))[0], cell(x[0])[0])


def test_list_input_is_accepted():
    args = _inputs()
    want = _call(args)
    got = F.lstm(args["X"].tolist(), args["W"], args["R"], args["B"], None, args["initial_h"],
                 args["initial_c"], args["P"])
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_nan_input_propagates(direction):
    nd = 2 if direction == "bidirectional" else 1
    args = _inputs(nd=nd)
    args["X"][1, 0, 2] = np.nan  # batch row 0 only, at step 1
    Y, Yh, Yc, tape = _call(args, direction=direction, requires_grad=True)
    assert np.isnan(Y[1:, 0, 0]).all()  # forward direction from step 1 on
    assert np.isnan(Yh[:, 0]).all() and np.isnan(Yc[:, 0]).all()
    assert np.isfinite(Y[0, 0, 0]).all()  # before the NaN (forward direction)
    assert np.isfinite(Y[:, :, 1]).all() and np.isfinite(Yh[:, 1]).all()  # other sequence
    g = F.lstm_backward(tape, np.ones_like(Y))
    assert np.isnan(g["W"]).any()
    assert np.isfinite(g["X"][:, 1]).all()
    m = pylstm.LSTM(n_in, H, dtype=np.float64, seed=0)
    y, (h, c) = m(args["X"])
    assert np.isnan(y[1:, 0]).all() and np.isfinite(y[:, 1]).all() and np.isnan(h[:, 0]).all()


def test_inf_weights_do_not_crash():
    args = _inputs()
    args["W"][0, 0, 0] = np.inf
    Y, _, _ = _call(args)
    assert Y.shape == (T, 1, NB, H)


# ----------------------------------------------------------------------------- tapes


def test_lstm_backward_wrong_tape():
    m = pylstm.LSTM(n_in, H, dtype=np.float64)
    _, mtape = m.forward(_inputs()["X"], requires_grad=True)
    for bad in (None, "tape", mtape):
        with pytest.raises(pylstm.TapeError) as err:
            F.lstm_backward(bad)
        assert isinstance(err.value, ValueError)
        _mentions(str(err.value), "tape", type(bad).__name__)


def test_lstm_backward_wrong_gradient_shapes():
    *_, tape = _call(_inputs(), requires_grad=True)
    with pytest.raises(pylstm.ShapeError) as err:
        F.lstm_backward(tape, np.zeros((T, 1, NB, H + 1)))
    _mentions(str(err.value), "dY", _shape((T, 1, NB, H)), _shape((T, 1, NB, H + 1)))
    with pytest.raises(pylstm.ShapeError) as err:
        F.lstm_backward(tape, None, np.zeros((1, NB + 1, H)))
    _mentions(str(err.value), "dY_h", _shape((1, NB, H)))
    with pytest.raises(pylstm.DTypeError) as err:
        F.lstm_backward(tape, None, None, np.zeros((1, NB, H), np.float32))
    _mentions(str(err.value), "dY_c", "float64", "float32")


def test_module_backward_wrong_tape():
    a = pylstm.LSTM(n_in, H, dtype=np.float64, seed=0)
    b = pylstm.LSTM(n_in, H, dtype=np.float64, seed=0)
    x = _inputs()["X"]
    _, tape = a.forward(x, requires_grad=True)
    with pytest.raises(pylstm.TapeError, match="tape"):
        b.backward(tape, np.zeros((T, NB, H)))
    *_, ftape = _call(_inputs(), requires_grad=True)
    with pytest.raises(pylstm.TapeError, match="tape"):
        a.backward(ftape, np.zeros((T, NB, H)))
    cell = pylstm.LSTMCell(n_in, H, dtype=np.float64)
    with pytest.raises(pylstm.TapeError, match="tape"):
        cell.backward(tape, np.zeros((NB, H)))
    with pytest.raises(ValueError) as err:
        a.backward(tape, np.zeros((T, NB, H + 1)))
    _mentions(str(err.value), "dy", _shape((T, NB, H)), _shape((T, NB, H + 1)))
    # The failures consumed nothing: the right tape still works.
    dx, _ = a.backward(tape, np.ones((T, NB, H)))
    assert dx.shape == x.shape


# ----------------------------------------------------------------------------- modules


@pytest.mark.parametrize("x_shape,parts", [
    ((T, NB, n_in, 1), ["x", "[3, 2, 4, 1]"]),
    ((n_in,), ["x", "[4]"]),
    ((T, NB, n_in + 1), ["x", str(n_in), "[3, 2, 5]"]),
    ((T, 0, n_in), ["x", "[3, 0, 4]"]),
    ((0, NB, n_in), ["x", "[0, 2, 4]"]),
])
def test_module_bad_x_shape(x_shape, parts):
    m = pylstm.LSTM(n_in, H, dtype=np.float64)
    with pytest.raises(pylstm.ShapeError) as err:
        m(np.zeros(x_shape))
    _mentions(str(err.value), *parts)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float16])
def test_module_bad_x_dtype(dtype):
    m = pylstm.LSTM(n_in, H, dtype=np.float64)
    with pytest.raises(pylstm.DTypeError) as err:
        m(np.zeros((T, NB, n_in), dtype))
    _mentions(str(err.value), "x", np.dtype(dtype).name)
    cell = pylstm.LSTMCell(n_in, H, dtype=np.float32)
    with pytest.raises(TypeError) as err:
        cell(np.zeros((NB, n_in), np.float64 if dtype == np.float32 else dtype))


def test_module_bad_states_and_lengths():
    m = pylstm.LSTM(n_in, H, num_layers=2, proj_size=2, dtype=np.float64)
    x = np.zeros((T, NB, n_in))
    good_h, good_c = np.zeros((2, NB, 2)), np.zeros((2, NB, H))
    with pytest.raises(pylstm.ShapeError) as err:
        m(x, (np.zeros((2, NB, H)), good_c))  # h must have proj_size features
    _mentions(str(err.value), "h_0", "[2, 2, 2]", "[2, 2, 5]")
    with pytest.raises(pylstm.ShapeError) as err:
        m(x, (good_h, np.zeros((1, NB, H))))
    _mentions(str(err.value), "c_0", "[2, 2, 5]", "[1, 2, 5]")
    with pytest.raises(TypeError, match="hx"):
        m(x, good_h)
    with pytest.raises(pylstm.DTypeError, match="h_0"):
        m(x, (good_h.astype(np.float32), good_c))
    for lens, part in (([0, 1], "got 0"), ([T + 1, 1], f"got {T + 1}"), ([1], "[1]")):
        with pytest.raises(ValueError) as err:
            m(x, lengths=lens)
        _mentions(str(err.value), "lengths", part)
    with pytest.raises(ValueError, match="lengths"):
        m(np.zeros((T, n_in)), lengths=[T])


def test_lstm_cell_bad_input():
    cell = pylstm.LSTMCell(n_in, H, dtype=np.float64)
    with pytest.raises(pylstm.ShapeError) as err:
        cell(np.zeros((NB, n_in + 1)))
    _mentions(str(err.value), "x", str(n_in), "[2, 5]")
    with pytest.raises(pylstm.ShapeError):
        cell(np.zeros((1, NB, n_in)))
    with pytest.raises(pylstm.ShapeError) as err:
        cell(np.zeros((0, n_in)))
    assert "x" in str(err.value)
    with pytest.raises(pylstm.ShapeError) as err:
        cell(np.zeros((NB, n_in)), (np.zeros((NB, H + 1)), np.zeros((NB, H))))
    _mentions(str(err.value), "h", "[2, 5]", "[2, 6]")
    (h, c), tape = cell.forward(np.zeros((NB, n_in)), requires_grad=True)
    with pytest.raises(pylstm.ShapeError) as err:
        cell.backward(tape, np.zeros((NB + 1, H)))
    _mentions(str(err.value), "dh", "[2, 5]", "[3, 5]")


@pytest.mark.parametrize("kw,parts", [
    (dict(proj_size=5), ["proj_size", "5"]),
    (dict(proj_size=-1), ["proj_size", "-1"]),
    (dict(dropout=1.5), ["dropout", "1.5"]),
    (dict(dropout=-0.1), ["dropout", "-0.1"]),
    (dict(num_layers=0), ["num_layers", "0"]),
    (dict(dtype=np.int32), ["dtype", "int32"]),
    (dict(dtype=np.float16), ["dtype", "float16"]),
])
def test_lstm_constructor_bad_arguments(kw, parts):
    with pytest.raises((ValueError, TypeError)) as err:
        pylstm.LSTM(n_in, H, **kw)
    _mentions(str(err.value), *parts)


@pytest.mark.parametrize("args,parts", [((-1, H), ["input_size", "-1"]),
                                        ((n_in, 0), ["hidden_size", "0"]),
                                        ((n_in, 2.5), ["hidden_size", "float"])])
def test_constructors_bad_sizes(args, parts):
    for cls in (pylstm.LSTM, pylstm.LSTMCell):
        with pytest.raises((ValueError, TypeError)) as err:
            cls(*args)
        _mentions(str(err.value), *parts)


def test_error_messages_are_single_readable_lines():
    """Messages are plain text without Rust panics or backtraces."""
    for call in (lambda: _call(dict(_inputs(), W=np.zeros((1, 3, 3)))),
                 lambda: _call(_inputs(), sequence_lens=[0, 1]),
                 lambda: _call(dict(_inputs(), X=np.zeros((T, NB, n_in), np.float16)))):
        with pytest.raises((ValueError, TypeError)) as err:
            call()
        msg = str(err.value)
        assert not re.search(r"panick|backtrace|RUST_BACKTRACE", msg), msg


def test_module_parameters_replaced_by_non_contiguous_arrays():
    """A parameter's ``data`` is a plain array a user may replace: a strided or
    Fortran-ordered replacement gives the same result; a wrong shape or dtype is named in the
    error."""
    m = pylstm.LSTM(n_in, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    params = dict(m.named_parameters())
    x = np.random.default_rng(2).standard_normal((T, NB, n_in))
    want, (h_want, _) = m(x)
    (y_t, _), tape = m.forward(x, requires_grad=True)
    dx_want, _ = m.backward(tape, np.ones_like(y_t))
    g_want = {k: p.grad.copy() for k, p in params.items()}
    orig = {k: p.data.copy() for k, p in params.items()}
    params["weight_ih_l0"].data = np.asfortranarray(orig["weight_ih_l0"])
    params["weight_hh_l1_reverse"].data = _noncontiguous(orig["weight_hh_l1_reverse"])
    params["bias_ih_l1"].data = _noncontiguous(orig["bias_ih_l1"])
    y, (h, _) = m(x)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(h, h_want)
    m.zero_grad()
    (y_t, _), tape = m.forward(x, requires_grad=True)
    dx, _ = m.backward(tape, np.ones_like(y_t))
    np.testing.assert_array_equal(dx, dx_want)
    for k in g_want:
        np.testing.assert_array_equal(params[k].grad, g_want[k], err_msg=k)
    params["weight_hh_l1_reverse"].data = orig["weight_hh_l1_reverse"][:, :-1].copy()
    with pytest.raises(pylstm.ShapeError) as err:
        m(x)
    _mentions(str(err.value), "weight_hh_l1_reverse", _shape((4 * H, H)), _shape((4 * H, H - 1)))
    params["weight_hh_l1_reverse"].data = orig["weight_hh_l1_reverse"].astype(np.float32)
    with pytest.raises(pylstm.DTypeError) as err:
        m(x)
    _mentions(str(err.value), "weight_hh_l1_reverse", "float64", "float32")
    cell = pylstm.LSTMCell(n_in, H, dtype=np.float64, seed=0)
    cparams = dict(cell.named_parameters())
    h_cell, _ = cell(x[0])
    cparams["weight_hh"].data = np.asfortranarray(cparams["weight_hh"].data)
    np.testing.assert_array_equal(cell(x[0])[0], h_cell)
    cparams["bias_hh"].data = cparams["bias_hh"].data[:-1].copy()
    with pytest.raises(pylstm.ShapeError) as err:
        cell(x[0])
    _mentions(str(err.value), "bias_hh", _shape((4 * H,)), _shape((4 * H - 1,)))
