"""The ONNX ``LSTM`` operator's argument checks and its call into the Rust core.

The low layer under :mod:`pylstm.functional` and the ``rust`` backend: it imports only the
checks, the errors and the compiled core, so the backend can run the operator without importing
``functional`` (which imports the backend registry): imports only go downwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pylstm import _checks, _core
from pylstm.errors import DTypeError, LstmValueError, ShapeError

__all__ = ["LstmTape", "onnx_args", "resolve_activations", "run_rust", "validate"]

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


def validate(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None,
             hidden_size=None, direction="forward", activations=None, activation_alpha=None,
             activation_beta=None, clip=None, input_forget=0, layout=0) -> dict[str, Any]:
    """Every argument of the ONNX operator checked (each error names its argument), in the
    form :func:`run_rust` takes: X and the states in layout 0, lengths as ``int`` list."""
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


def onnx_args(a: dict[str, Any]) -> dict[str, Any]:
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


def run_rust(a: dict[str, Any], requires_grad: bool, bf16_weights: bool = False,
             tiles: bool = False) -> tuple:
    """The operator on the Rust core: ``(Y, Y_h, Y_c)`` in ``a``'s layout, and the tape when
    ``requires_grad``."""
    nd, h, steps, batch = a["nd"], a["h"], a["steps"], a["batch"]
    layers = _layers(a)
    y, hn, cn, core_tape = _core.network_forward(
        a["X"], layers, hidden_size=h, proj_size=0, order="onnx",
        reverse=list(_DIRECTIONS[a["direction"]]), activations=a["acts"], clip=a["clip"],
        input_forget=bool(a["input_forget"]), h0=a["h0"], c0=a["c0"], lengths=a["lens"],
        keep_tape=requires_grad, bf16_weights=bf16_weights, tile_weights=tiles)
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
