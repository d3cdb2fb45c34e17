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
from typing import Any

import numpy as np

from pylstm import _checks, _core
from pylstm._onnx_lstm import LstmTape, onnx_args, resolve_activations, run_rust, validate
from pylstm.errors import BackendError, DTypeError, LstmValueError, TapeError
from pylstm.runtime import check_bf16_compute_available, compute_dtype_is_bf16

__all__ = ["LstmTape", "lstm", "lstm_backward", "resolve_activations"]

def lstm(X: np.ndarray, W: np.ndarray, R: np.ndarray, B: np.ndarray | None = None,
         sequence_lens: np.ndarray | Sequence[int] | None = None,
         initial_h: np.ndarray | None = None, initial_c: np.ndarray | None = None,
         P: np.ndarray | None = None, *, hidden_size: int | None = None,
         direction: str = "forward", activations: Sequence[str] | None = None,
         activation_alpha: Sequence[float] | None = None,
         activation_beta: Sequence[float] | None = None, clip: float | None = None,
         input_forget: int = 0, layout: int = 0, backend: str | None = None,
         requires_grad: bool = False, bf16_weights: bool = False,
         compute_dtype: str = "float32") -> tuple:
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
        compute_dtype: ``"float32"`` (default) or, opt-in for float32 inference on the Rust
            backend where the CPU has AMX tiles (Intel Xeon from Sapphire Rapids on),
            ``"bfloat16"``: ``X``, ``W``, ``R`` and each step's hidden state are rounded to
            bfloat16 for the input projection and the recurrent product, which run on AMX
            tiles with float32 sums; bias, activations and the cell state stay float32.
            Outputs move by about 1e-2 relative to float32 (as PyTorch's bfloat16 LSTM).
            Here the weights are packed on every call; ``pylstm.LSTM(...,
            compute_dtype="bfloat16")`` packs them once per weights.

    Returns:
        ``(Y, Y_h, Y_c)`` with ``Y`` ``[seq_length, num_directions, batch_size, hidden_size]``
        (layout 0), or ``(Y, Y_h, Y_c, tape)`` with ``requires_grad=True``.
    """
    requires_grad = _checks.flag("requires_grad", requires_grad)
    bf16_weights = _checks.flag("bf16_weights", bf16_weights)
    tiles = compute_dtype_is_bf16(compute_dtype)
    if backend is not None and not isinstance(backend, str):
        raise DTypeError(f"backend: expected a backend name (str) or None, got "
                         f"{_checks.type_name(backend)}")
    args = validate(X, W, R, B, sequence_lens, initial_h, initial_c, P, hidden_size, direction,
                     activations, activation_alpha, activation_beta, clip, input_forget, layout)
    from pylstm.backends import get_backend

    impl = get_backend(backend)
    if bf16_weights:
        _check_bf16(args["dtype"], requires_grad, impl.name)
    if tiles:
        _check_bf16_compute(args["dtype"], requires_grad, impl.name, bf16_weights)
    if impl.name != "rust":
        if requires_grad:
            raise BackendError(f"backend {impl.name!r} cannot compute gradients; "
                               "use backend='rust'")
        return impl.lstm(**onnx_args(args))
    return run_rust(args, requires_grad, bf16_weights, tiles)


def _check_bf16(dtype: Any, requires_grad: bool, backend: str) -> None:
    """Rejects the combinations ``bf16_weights=True`` cannot serve, naming the argument."""
    if backend != "rust":
        raise BackendError(f"bf16_weights: only the 'rust' backend has it, got backend {backend!r}")
    if np.dtype(dtype) != np.float32:
        raise DTypeError(f"bf16_weights: expected float32 inputs, got {np.dtype(dtype)}")
    if requires_grad:
        raise LstmValueError("bf16_weights: inference only, got requires_grad=True "
                             "(gradients are computed in float32)")


def _check_bf16_compute(dtype: Any, requires_grad: bool, backend: str, bf16_weights: bool
                        ) -> None:
    """Rejects what ``compute_dtype="bfloat16"`` cannot serve, naming the argument."""
    if backend != "rust":
        raise BackendError(f"compute_dtype='bfloat16': only the 'rust' backend has it, got "
                           f"backend {backend!r}")
    if np.dtype(dtype) != np.float32:
        raise DTypeError(f"compute_dtype='bfloat16': expected float32 inputs, got "
                         f"{np.dtype(dtype)}")
    if requires_grad:
        raise LstmValueError("compute_dtype='bfloat16': inference only, got requires_grad=True "
                             "(gradients are computed in float32)")
    if bf16_weights:
        raise LstmValueError("bf16_weights: expected False with compute_dtype='bfloat16' (which "
                             "rounds every weight already)")
    check_bf16_compute_available()


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
