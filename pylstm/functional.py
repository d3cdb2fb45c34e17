"""The ONNX ``LSTM`` operator (opset 14), exactly, with its backward pass.

Shapes, gate order (i, o, f, c), defaults and semantics follow the ONNX specification. Where
the specification is silent or ambiguous, this follows onnxruntime's CPU kernel:

* ``activation_alpha`` / ``activation_beta`` are consumed in order only by the activation
  functions that take them (Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu);
  missing values take onnxruntime's defaults (LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1.0;
  onnxruntime has none for Affine, ScaledTanh and ThresholdedRelu, whose missing values are 0).
* ``clip`` bounds each gate's input after the bias and peephole terms are added.
* ``input_forget=1`` couples the forget gate to the input gate: ``f = 1 - i``.
* With ``sequence_lens``, outputs past a sequence's length are zero and ``Y_h``/``Y_c`` are the
  states at its last valid step; the reverse direction starts at each sequence's own last step.
  A length of 0 is rejected.
* ``layout=1`` (batch-major X, Y, initial and final states) is supported, which onnxruntime's
  CPU kernel itself rejects.
* ``input_size`` 0 (``X`` ``[seq_length, batch_size, 0]``, ``W`` ``[num_directions,
  4*hidden_size, 0]``) is valid, as in onnxruntime and PyTorch's ``LSTMCell``: the gates then
  come from the bias and the recurrence alone.

Arguments are checked strictly (see :mod:`pylstm._checks`): integers are ``int`` or numpy
integers, never ``bool`` nor a float, even a whole one (``hidden_size=7.0`` is a ``DTypeError``);
numbers are real and finite; flags are ``bool``. ``activation_alpha`` / ``activation_beta``
must hold at most as many values as the activations consume. Every error is a
:class:`pylstm.PylstmError` naming the argument, the expected and the actual value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pylstm import _checks, _core
from pylstm.errors import BackendError, DTypeError, LstmValueError, ShapeError, TapeError

__all__ = ["LstmTape", "lstm", "lstm_backward", "resolve_activations"]

_DIRECTIONS = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}
_DIRECTION_NAMES = tuple(_DIRECTIONS)
_DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")
_ACTIVATION_PARAMS = {
    "relu": (0, 0), "tanh": (0, 0), "sigmoid": (0, 0), "softsign": (0, 0), "softplus": (0, 0),
    "affine": (1, 1), "scaledtanh": (1, 1), "hardsigmoid": (1, 1),
    "leakyrelu": (1, 0), "thresholdedrelu": (1, 0), "elu": (1, 0),
}
# onnxruntime's values for missing alpha/beta (rnn_helpers.cc): only these three have defaults;
# every other function reads 0 for a missing parameter.
_ACTIVATION_DEFAULTS = {"leakyrelu": (0.01, 0.0), "hardsigmoid": (0.2, 0.5), "elu": (1.0, 0.0)}


def resolve_activations(activations: Sequence[str] | None, alpha: Sequence[float] | None,
                        beta: Sequence[float] | None, num_directions: int
                        ) -> list[list[tuple[str, float | None, float | None]]]:
    """Pair each activation with its alpha/beta as onnxruntime reads them: values are consumed
    in order, only by the functions that take them; missing ones take the defaults. More values
    than the functions consume, or a NaN/inf value, is an ``LstmValueError``."""
    if activations is None:
        names: list[Any] = list(_DEFAULT_ACTIVATIONS * num_directions)
    elif isinstance(activations, (str, bytes)) or not isinstance(activations, Sequence):
        raise DTypeError(f"activations: expected a list of {3 * num_directions} names, got "
                         f"{_checks.type_name(activations)}")
    else:
        names = list(activations)
    if len(names) != 3 * num_directions:
        raise LstmValueError(f"activations: expected {3 * num_directions} names (f, g, h per "
                             f"direction), got {len(names)}: {names}")
    alphas = [] if alpha is None else _checks.numbers_list("activation_alpha", alpha)
    betas = [] if beta is None else _checks.numbers_list("activation_beta", beta)
    n_alpha, n_beta = len(alphas), len(betas)
    resolved: list[tuple[str, float | None, float | None]] = []
    for name in names:
        if not isinstance(name, str):
            raise DTypeError(f"activations: expected names (str), got {_checks.type_name(name)}")
        counts = _ACTIVATION_PARAMS.get(name.lower())
        if counts is None:
            raise LstmValueError(f"activations: unknown activation function {name!r}; expected one "
                                 "of Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, "
                                 "ScaledTanh, HardSigmoid, Elu, Softsign, Softplus")
        default_a, default_b = _ACTIVATION_DEFAULTS.get(name.lower(), (0.0, 0.0))
        a = (alphas.pop(0) if alphas else default_a) if counts[0] else None
        b = (betas.pop(0) if betas else default_b) if counts[1] else None
        resolved.append((name, a, b))
    for arg, given, left in (("activation_alpha", n_alpha, alphas),
                             ("activation_beta", n_beta, betas)):
        if left:
            raise LstmValueError(f"{arg}: expected at most {given - len(left)} values (one per "
                                 f"activation that takes it, of {names}), got {given}")
    return [resolved[3 * d:3 * d + 3] for d in range(num_directions)]


@dataclass
class LstmTape:
    """What :func:`lstm` saved for :func:`lstm_backward` (returned with ``requires_grad=True``)."""

    core: Any
    layers: list
    layout: int
    num_directions: int
    hidden_size: int
    has: dict[str, bool]
    steps: int
    batch: int
    input_size: int
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        """Memory held by the tape."""
        return int(self.core.nbytes)


def lstm(X: np.ndarray, W: np.ndarray, R: np.ndarray, B: np.ndarray | None = None,
         sequence_lens: np.ndarray | Sequence[int] | None = None,
         initial_h: np.ndarray | None = None, initial_c: np.ndarray | None = None,
         P: np.ndarray | None = None, *, hidden_size: int | None = None,
         direction: str = "forward", activations: Sequence[str] | None = None,
         activation_alpha: Sequence[float] | None = None,
         activation_beta: Sequence[float] | None = None, clip: float | None = None,
         input_forget: int = 0, layout: int = 0, backend: str | None = None,
         requires_grad: bool = False, bf16_weights: bool = False) -> tuple:
    """Compute the ONNX LSTM operator.

    Args:
        X: ``[seq_length, batch_size, input_size]`` (``layout=0``) or batch-major (``layout=1``).
        W: ``[num_directions, 4*hidden_size, input_size]``, gates i, o, f, c.
        R: ``[num_directions, 4*hidden_size, hidden_size]``.
        B: ``[num_directions, 8*hidden_size]`` (``Wb`` then ``Rb``); zeros if omitted.
        sequence_lens: ``[batch_size]`` integers in ``1..=seq_length``.
        initial_h, initial_c: ``[num_directions, batch_size, hidden_size]`` (layout 0).
        P: ``[num_directions, 3*hidden_size]`` peepholes (i, o, f).
        hidden_size: optional; must agree with ``R``.
        direction: ``"forward"``, ``"reverse"`` or ``"bidirectional"``.
        activations: 3 names per direction (f, g, h); default Sigmoid, Tanh, Tanh.
        activation_alpha, activation_beta: parameters of the activations, in order.
        clip: cell clip threshold (positive).
        input_forget: 1 couples the forget gate to the input gate.
        layout: 0 (time-major) or 1 (batch-major).
        backend: ``"rust"`` (default) or another registered backend, e.g. ``"onnxruntime"``.
        requires_grad: also return a tape for :func:`lstm_backward` (Rust backend only).
        bf16_weights: opt-in, float32 inference on the Rust backend only: where the time loop
            is bound by reading ``R`` (batch up to 4, ``R`` of 2 MiB or more) each step reads
            it rounded to bfloat16 (8 significant bits), half the bytes; states and sums stay
            float32. Outputs move by about 1e-3 relative to float32. Here ``R`` is rounded on
            every call; ``pylstm.LSTM(..., bf16_weights=True)`` rounds it once per weights.

    Returns:
        ``(Y, Y_h, Y_c)`` with ``Y`` ``[seq_length, num_directions, batch_size, hidden_size]``
        (layout 0), or ``(Y, Y_h, Y_c, tape)`` with ``requires_grad=True``.
    """
    requires_grad = _checks.flag("requires_grad", requires_grad)
    bf16_weights = _checks.flag("bf16_weights", bf16_weights)
    if backend is not None and not isinstance(backend, str):
        raise DTypeError(f"backend: expected a backend name (str) or None, got "
                         f"{_checks.type_name(backend)}")
    args = _validate(X, W, R, B, sequence_lens, initial_h, initial_c, P, hidden_size, direction,
                     activations, activation_alpha, activation_beta, clip, input_forget, layout)
    from pylstm.backends import get_backend

    impl = get_backend(backend)
    if bf16_weights:
        _check_bf16(args["dtype"], requires_grad, impl.name)
    if impl.name != "rust":
        if requires_grad:
            raise BackendError(f"backend {impl.name!r} cannot compute gradients; "
                               "use backend='rust'")
        return impl.lstm(**_onnx_args(args))
    return _run_rust(args, requires_grad, bf16_weights)


def _check_bf16(dtype: Any, requires_grad: bool, backend: str) -> None:
    """Rejects the combinations ``bf16_weights=True`` cannot serve, naming the argument."""
    if backend != "rust":
        raise BackendError(f"bf16_weights: only the 'rust' backend has it, got backend {backend!r}")
    if np.dtype(dtype) != np.float32:
        raise DTypeError(f"bf16_weights: expected float32 inputs, got {np.dtype(dtype)}")
    if requires_grad:
        raise LstmValueError("bf16_weights: inference only, got requires_grad=True "
                             "(gradients are computed in float32)")


def _validate(X, W, R, B, sequence_lens, initial_h, initial_c, P, hidden_size, direction,
              activations, activation_alpha, activation_beta, clip, input_forget, layout
              ) -> dict[str, Any]:
    layout = _checks.one_of_ints("layout", layout, (0, 1))
    direction = _checks.choice("direction", direction, _DIRECTION_NAMES)
    input_forget = _checks.one_of_ints("input_forget", input_forget, (0, 1))
    if clip is not None:
        clip = _checks.number("clip", clip)
        if clip <= 0:
            raise LstmValueError(f"clip: expected a positive number, got {clip!r}")
    if hidden_size is not None:
        hidden_size = _checks.positive_int("hidden_size", hidden_size)
    dtype = _checks.float_dtype("X", X)
    X = np.asarray(X)
    if X.ndim != 3:
        dims = "[batch_size, seq_length, input_size]" if layout else \
            "[seq_length, batch_size, input_size]"
        raise ShapeError(f"X: expected 3 dimensions {dims}, got shape {list(X.shape)}")
    steps, batch, inp = (X.shape[1], X.shape[0], X.shape[2]) if layout else X.shape
    nd = len(_DIRECTIONS[direction])
    R = _checks.as_array("R", R)
    if R.ndim != 3:
        raise ShapeError(f"R: expected 3 dimensions [num_directions, 4*hidden_size, hidden_size], "
                         f"got shape {list(R.shape)}")
    h = R.shape[2]
    if hidden_size is not None and hidden_size != h:
        raise ShapeError(f"hidden_size: attribute is {hidden_size} but R has hidden size {h} "
                         f"(shape {list(R.shape)})")
    if h == 0:
        raise ShapeError("R: expected hidden_size >= 1, got 0")
    if steps == 0 or batch == 0:
        raise ShapeError(f"X: expected at least one time step and one sequence, got shape "
                         f"{list(X.shape)}")
    W = _checks.array("W", W, dtype, (nd, 4 * h, inp), "num_directions, 4*hidden_size, input_size")
    R = _checks.array("R", R, dtype, (nd, 4 * h, h), "num_directions, 4*hidden_size, hidden_size")
    Xc = _checks.array("X", X, dtype)
    if layout:
        Xc = np.ascontiguousarray(Xc.transpose(1, 0, 2))
    if B is not None:
        B = _checks.array("B", B, dtype, (nd, 8 * h), "num_directions, 8*hidden_size")
    if P is not None:
        P = _checks.array("P", P, dtype, (nd, 3 * h), "num_directions, 3*hidden_size")
    states: dict[str, np.ndarray | None] = {}
    for name, val in (("initial_h", initial_h), ("initial_c", initial_c)):
        if val is not None:
            shape = (batch, nd, h) if layout else (nd, batch, h)
            dims = "batch_size, num_directions, hidden_size" if layout else \
                "num_directions, batch_size, hidden_size"
            arr = _checks.array(name, val, dtype, shape, dims)
            states[name] = np.ascontiguousarray(arr.transpose(1, 0, 2)) if layout else arr
        else:
            states[name] = None
    lens = None if sequence_lens is None else \
        _checks.lengths("sequence_lens", sequence_lens, batch, steps)
    acts = resolve_activations(activations, activation_alpha, activation_beta, nd)
    return dict(X=Xc, W=W, R=R, B=B, P=P, lens=lens, h0=states["initial_h"],
                c0=states["initial_c"], direction=direction, acts=acts,
                alpha=None if activation_alpha is None else
                _checks.numbers_list("activation_alpha", activation_alpha),
                beta=None if activation_beta is None else
                _checks.numbers_list("activation_beta", activation_beta),
                activations=None if activations is None else list(activations),
                clip=clip, input_forget=input_forget,
                layout=layout, nd=nd, h=h, steps=steps, batch=batch, inp=inp, dtype=dtype)


def _onnx_args(a: dict[str, Any]) -> dict[str, Any]:
    """Validated arguments in ONNX form with layout normalised to 0, for other backends."""
    return dict(X=a["X"], W=a["W"], R=a["R"], B=a["B"],
                sequence_lens=None if a["lens"] is None else np.asarray(a["lens"], np.int32),
                initial_h=a["h0"], initial_c=a["c0"], P=a["P"], hidden_size=a["h"],
                direction=a["direction"], activations=a["activations"],
                activation_alpha=a["alpha"], activation_beta=a["beta"], clip=a["clip"],
                input_forget=a["input_forget"], layout_out=a["layout"])


def _layers(a: dict[str, Any]) -> list:
    h = a["h"]
    dirs = []
    for d in range(a["nd"]):
        bias = None if a["B"] is None else \
            np.ascontiguousarray(a["B"][d, :4 * h] + a["B"][d, 4 * h:])
        peep = None if a["P"] is None else a["P"][d]
        dirs.append((a["W"][d], a["R"][d], bias, peep, None))
    return [dirs]


def _run_rust(a: dict[str, Any], requires_grad: bool, bf16_weights: bool = False) -> tuple:
    nd, h, steps, batch = a["nd"], a["h"], a["steps"], a["batch"]
    layers = _layers(a)
    y, hn, cn, core_tape = _core.network_forward(
        a["X"], layers, hidden_size=h, proj_size=0, order="onnx",
        reverse=list(_DIRECTIONS[a["direction"]]), activations=a["acts"], clip=a["clip"],
        input_forget=bool(a["input_forget"]), h0=a["h0"], c0=a["c0"], lengths=a["lens"],
        keep_tape=requires_grad, bf16_weights=bf16_weights)
    Y = y.reshape(steps, batch, nd, h).transpose(0, 2, 1, 3)
    if a["layout"]:
        Y = Y.transpose(2, 0, 1, 3)
        hn, cn = hn.transpose(1, 0, 2), cn.transpose(1, 0, 2)
    out = (np.ascontiguousarray(Y), np.ascontiguousarray(hn), np.ascontiguousarray(cn))
    if not requires_grad:
        return out
    tape = LstmTape(core=core_tape, layers=layers, layout=a["layout"], num_directions=nd,
                    hidden_size=h, has={"B": a["B"] is not None, "P": a["P"] is not None,
                                        "initial_h": a["h0"] is not None,
                                        "initial_c": a["c0"] is not None},
                    steps=steps, batch=batch, input_size=a["inp"], dtype=a["dtype"])
    return (*out, tape)


def lstm_backward(tape: LstmTape, dY: np.ndarray | None = None, dY_h: np.ndarray | None = None,
                  dY_c: np.ndarray | None = None, *, retain: bool = False
                  ) -> dict[str, np.ndarray]:
    """Gradients of :func:`lstm` given gradients of its outputs (each may be omitted: zero).

    Returns a dict keyed like the inputs: ``X``, ``W``, ``R`` always; ``B``, ``P``,
    ``initial_h``, ``initial_c`` when they were given to the forward pass. Shapes match the
    inputs (layout included). ``B``'s two halves (``Wb``, ``Rb``) get the same gradient.

    A tape serves one backward pass, which frees it: a second call raises ``TapeError``
    unless the earlier calls passed ``retain=True`` (as PyTorch's ``retain_graph``). A call
    that fails (a wrong ``dY`` shape, say) leaves the tape usable.
    """
    if not isinstance(tape, LstmTape):
        raise TapeError(f"tape: expected the tape returned by lstm(..., requires_grad=True), got "
                        f"{type(tape).__name__}")
    retain = _checks.flag("retain", retain)
    nd, h, t, b, dt = tape.num_directions, tape.hidden_size, tape.steps, tape.batch, tape.dtype
    lay = tape.layout
    dy = dhn = dcn = None
    if dY is not None:
        shape = (b, t, nd, h) if lay else (t, nd, b, h)
        arr = _checks.array("dY", dY, dt, shape)
        arr = arr.transpose(1, 0, 2, 3) if lay else arr.transpose(0, 2, 1, 3)
        dy = np.ascontiguousarray(arr).reshape(t, b, nd * h)
    for name, val in (("dY_h", dY_h), ("dY_c", dY_c)):
        if val is None:
            continue
        arr = _checks.array(name, val, dt, (b, nd, h) if lay else (nd, b, h))
        arr = np.ascontiguousarray(arr.transpose(1, 0, 2)) if lay else arr
        if name == "dY_h":
            dhn = arr
        else:
            dcn = arr
    dx, dh0, dc0, grads = _core.network_backward(tape.core, tape.layers, dy, dhn, dcn,
                                                 retain=retain)
    g = grads[0]
    out: dict[str, np.ndarray] = {
        "X": np.ascontiguousarray(dx.transpose(1, 0, 2)) if lay else dx,
        "W": np.stack([gd["W"] for gd in g]),
        "R": np.stack([gd["R"] for gd in g]),
    }
    if tape.has["B"]:
        out["B"] = np.stack([np.concatenate([gd["B"], gd["B"]]) for gd in g])
    if tape.has["P"]:
        out["P"] = np.stack([gd["P"] for gd in g])
    for key, val in (("initial_h", dh0), ("initial_c", dc0)):
        if tape.has[key]:
            out[key] = np.ascontiguousarray(val.transpose(1, 0, 2)) if lay else val
    return out
