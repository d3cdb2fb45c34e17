"""Random and malformed calls of ``pylstm.functional.lstm`` and ``lstm_backward``.

Each case starts from a random valid call (small sizes, input width 0 included, every
optional input and attribute maybe present) and applies one change from the catalogue below,
which says what the changed call may do (see ``oracle``)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
from oracle import Case, expect_shapes, junk, strided

from pylstm import functional as F

_TAKES = {"Affine": 2, "ScaledTanh": 2, "HardSigmoid": 2, "LeakyRelu": 1, "ThresholdedRelu": 1,
          "Elu": 1}
_NAMES = ["Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
          "HardSigmoid", "Elu", "Softsign", "Softplus"]
_ARRAYS = ["X", "W", "R", "B", "P", "initial_h", "initial_c"]
# Arguments a change of one array's shape may be reported against: R sets hidden_size, X the
# batch and the input width, so the arrays checked against them may be the ones named.
_RELATED = {"X": {"X", "W", "initial_h", "initial_c", "sequence_lens"},
            "R": {"R", "W", "B", "P", "initial_h", "initial_c", "hidden_size"}}


def _base(rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    nd = int(rng.integers(1, 3))
    direction = "bidirectional" if nd == 2 else str(rng.choice(["forward", "reverse"]))
    T, nb = int(rng.integers(1, 6)), int(rng.integers(1, 5))
    n_in, H = int(rng.choice([0, 1, 2, 3, 5])), int(rng.integers(1, 6))
    dt = np.dtype(rng.choice([np.float32, np.float64]))
    layout = int(rng.integers(2))

    def arr(*shape):
        return (rng.standard_normal(shape) * 0.5).astype(dt)

    args: dict[str, Any] = dict(X=arr(nb, T, n_in) if layout else arr(T, nb, n_in),
                                W=arr(nd, 4 * H, n_in), R=arr(nd, 4 * H, H),
                                direction=direction, layout=layout)
    if rng.random() < 0.5:
        args["B"] = arr(nd, 8 * H)
    if rng.random() < 0.3:
        args["P"] = arr(nd, 3 * H)
    for s in ("initial_h", "initial_c"):
        if rng.random() < 0.4:
            args[s] = arr(nb, nd, H) if layout else arr(nd, nb, H)
    if rng.random() < 0.4:
        args["sequence_lens"] = rng.integers(1, T + 1, nb).astype(rng.choice(["int32", "int64"]))
    if rng.random() < 0.3:
        names = [str(rng.choice(_NAMES)) if k % 3 else "Sigmoid" for k in range(3 * nd)]
        args["activations"] = names
        n_a = sum(n in _TAKES for n in names)
        n_b = sum(_TAKES.get(n) == 2 for n in names)
        # Up to as many values as are consumed (fewer: the rest take defaults).
        args["activation_alpha"] = [float(v) for v in rng.uniform(0.1, 1, rng.integers(n_a + 1))]
        args["activation_beta"] = [float(v) for v in rng.uniform(0.1, 1, rng.integers(n_b + 1))]
    if rng.random() < 0.3:
        args["clip"] = float(rng.uniform(0.5, 3))
    if rng.random() < 0.2:
        args["input_forget"] = 1
    if rng.random() < 0.3:
        args["hidden_size"] = H
    args["requires_grad"] = bool(rng.random() < 0.4)
    meta = dict(nd=nd, T=T, nb=nb, n_in=n_in, H=H, dtype=dt, layout=layout)
    return args, meta


def _expected_shapes(args: dict[str, Any], meta: dict[str, Any]) -> list[tuple[int, ...]]:
    nd, T, nb, H = meta["nd"], meta["T"], meta["nb"], meta["H"]
    if meta["layout"]:
        return [(nb, T, nd, H), (nb, nd, H), (nb, nd, H)]
    return [(T, nd, nb, H), (nd, nb, H), (nd, nb, H)]


def _checker(args: dict[str, Any], meta: dict[str, Any]) -> Callable[[Any], str | None]:
    shapes, dt = _expected_shapes(args, meta), meta["dtype"]
    grads_expected = {k: np.shape(args[k]) for k in _ARRAYS if args.get(k) is not None}

    def check(out: Any) -> str | None:
        problem = expect_shapes(out, shapes, dt)
        if problem or not args.get("requires_grad"):
            return problem
        grads = out[3]
        if set(grads) != set(grads_expected):
            return f"gradients for {sorted(grads)}, expected {sorted(grads_expected)}"
        for k, shape in grads_expected.items():
            if grads[k].shape != shape or grads[k].dtype != dt:
                return f"gradient {k}: {grads[k].shape} {grads[k].dtype}, expected {shape} {dt}"
        return None

    return check


def _run(args: dict[str, Any], backward: dict[str, Any] | None = None,
         second: dict[str, Any] | None = None) -> Any:
    """The forward call, then (with ``requires_grad``) the backward call(s)."""
    out = F.lstm(**args)
    if not args.get("requires_grad") or not isinstance(out, tuple) or len(out) != 4:
        return out
    Y, Y_h, Y_c, tape = out
    bw = backward if backward is not None else {"dY": np.ones_like(Y)}
    grads = F.lstm_backward(tape, **bw)
    if second is not None:
        again = F.lstm_backward(tape, **second)
        if not all(np.array_equal(grads[k], again[k], equal_nan=True) for k in grads):
            raise AssertionError("a retained tape gave different gradients the second time")
    return Y, Y_h, Y_c, grads


# ----------------------------------------------------------------------------- the changes
# Each takes (args, meta, rng), changes args in place and returns (description, expect, names).


def _equivalent(args, meta, rng):
    present = [k for k in _ARRAYS if isinstance(args.get(k), np.ndarray)]
    how = rng.integers(4)
    if how == 0:
        k = str(rng.choice(present))
        args[k] = strided(args[k])
        return f"{k} as a strided view", "same", set()
    if how == 1:
        k = str(rng.choice(present))
        args[k] = np.asfortranarray(args[k])
        return f"{k} Fortran-ordered", "same", set()
    if how == 2 and "sequence_lens" in args:
        args["sequence_lens"] = [int(v) for v in args["sequence_lens"]]
        return "sequence_lens as a list", "same", set()
    if meta["dtype"] == np.float64:
        k = str(rng.choice(present))
        args[k] = args[k].tolist()
        return f"{k} as a nested list", "same", set()
    args["layout"] = np.int64(args["layout"])
    return "layout as a numpy integer", "same", set()


def _non_finite(args, meta, rng):
    k = str(rng.choice([k for k in _ARRAYS if isinstance(args.get(k), np.ndarray)]))
    if args[k].size == 0:
        return f"{k} empty (no value to spoil)", "ok", set()
    flat = args[k].reshape(-1)
    flat[int(rng.integers(flat.size))] = rng.choice([np.nan, np.inf, -np.inf])
    return f"a non-finite value in {k}", "ok", set()


def _bad_shape(args, meta, rng):
    k = str(rng.choice([k for k in _ARRAYS if isinstance(args.get(k), np.ndarray)]))
    a = args[k]
    how = rng.integers(3)
    if how == 0:
        new = np.zeros(a.shape + (1,), a.dtype)
    elif how == 1 and a.ndim > 1:
        new = np.zeros(a.shape[1:], a.dtype)
    else:
        shape = list(a.shape)
        axis = int(rng.integers(len(shape)))
        shape[axis] += int(rng.choice([1, 2, 5]))
        new = np.zeros(shape, a.dtype)
    args[k] = new
    if k == "X" and new.ndim == 3:
        # A different input width or batch is caught by W or the states; a longer sequence
        # (or a different batch with no states nor lengths) is still a valid call.
        return f"X reshaped to {list(new.shape)}", "any", _RELATED["X"]
    return f"{k} of shape {list(new.shape)}", "error", _RELATED.get(k, {k})


def _bad_dtype(args, meta, rng):
    k = str(rng.choice([k for k in _ARRAYS if isinstance(args.get(k), np.ndarray)]))
    other = np.float32 if meta["dtype"] == np.float64 else np.float64
    dt = rng.choice([np.float16, np.int32, np.int64, np.complex64, bool, other])
    args[k] = args[k].astype(dt)
    if k == "X" and dt is other:
        return "X of the other float dtype", "error", {"W", "R", "B", "P", "initial_h",
                                                      "initial_c", "X"}
    return f"{k} of dtype {np.dtype(dt)}", "error", {k}


def _wrong_type(args, meta, rng):
    k = str(rng.choice(["X", "W", "R", "B", "P", "initial_h", "initial_c", "sequence_lens"]))
    value = junk(rng, "abc", 3)
    if value is None or (k == "sequence_lens" and isinstance(value, list)):
        value = "None"  # None is the valid 'absent'; a list of ints may be valid lengths
    args[k] = value
    names = {k} | ({"R"} if k == "X" else set())
    return f"{k} = {value!r}", "error", names


def _zero_size(args, meta, rng):
    which = rng.integers(3)
    dt, nd, H = meta["dtype"], meta["nd"], meta["H"]
    if which == 0:  # no time steps or no sequences
        shape = list(args["X"].shape)
        shape[int(rng.integers(2))] = 0
        args["X"] = np.zeros(shape, dt)
        return f"X of shape {shape}", "error", _RELATED["X"]
    if which == 1:  # hidden size 0
        args["R"] = np.zeros((nd, 0, 0), dt)
        return "R of hidden size 0", "error", _RELATED["R"]
    # input width 0 is valid: the gates come from the bias and the recurrence
    lay = meta["layout"]
    T, nb = meta["T"], meta["nb"]
    args["X"] = np.zeros((nb, T, 0) if lay else (T, nb, 0), dt)
    args["W"] = np.zeros((nd, 4 * H, 0), dt)
    meta["n_in"] = 0
    return "input width 0", "ok", set()


def _huge(args, meta, rng):
    dt, nd, H = meta["dtype"], meta["nd"], meta["H"]
    steps = int(2 ** rng.integers(38, 45))
    for k in ("initial_h", "initial_c", "sequence_lens"):
        args.pop(k, None)
    if rng.random() < 0.5:  # zero-width: X holds no bytes at any length
        steps_batch = (steps, meta["nb"]) if rng.random() < 0.5 else (1, steps)
        shape = steps_batch[::-1] if args["layout"] else steps_batch
        args["X"] = np.zeros((*shape, 0), dt)
        args["W"] = np.zeros((nd, 4 * H, 0), dt)
        return f"X of {[*shape, 0]} (zero width)", "memory", {"X"}
    # a broadcast view: huge but holding one row
    row = np.zeros(meta["n_in"] or 1, dt)
    args["X"] = np.broadcast_to(row, (steps, meta["nb"], row.size))
    args["W"] = np.zeros((nd, 4 * H, row.size), dt)
    args["layout"] = 0
    return f"X a broadcast view of {steps} steps", "memory", {"X"}


def _bad_attribute(args, meta, rng):
    T, H, nb, nd = meta["T"], meta["H"], meta["nb"], meta["nd"]
    nan = float("nan")
    # Values each of which no reading of the specification accepts.
    options: dict[str, list[Any]] = {
        "direction": ["sideways", ["forward"], "Forward", 0, None, b"forward"],
        "layout": [2, -1, 1.0, "0", np.float64(0), True, None, [0]],
        "clip": ["1", -1.0, 0, np.inf, nan, [1.0], True, 1j],
        "hidden_size": [float(H), H + 1, 0, -H, str(H), True, 2.5, [H]],
        "input_forget": [2, -1, 0.0, "1", True, None],
        "activations": ["Tanh", ["Sigmoid", "Tanh"], ["Sigmoid", "Swish", "Tanh"] * nd,
                        ["Sigmoid", 3, "Tanh"] * nd, 2.5, {"a": 1}, b"Tanh"],
        "activation_alpha": [[0.5] * (3 * nd + 1), [nan], "0.5", 0.5, [True], [None],
                             {"a": 1}, np.zeros((2, 2))],
        "activation_beta": [[0.5] * (3 * nd + 1), [np.inf], "0.5", [object()]],
        "sequence_lens": [[0] * nb, [T + 1] * nb, [1.0] * nb, [1] * (nb + 1), [[1] * nb],
                          ["1"] * nb, [True] * nb, [2**70] * nb, -1, nan, "1", [-1] * nb],
        "requires_grad": [1, "yes", None, 2.5, np.array([True])],
        "bf16_weights": [1, "yes", None, [True]],
        "backend": [3, ["rust"], b"rust", 2.5],
    }
    name = str(rng.choice(sorted(options)))
    values = options[name]
    value = values[int(rng.integers(len(values)))]
    if name in ("activation_alpha", "activation_beta") and isinstance(value, list) \
            and len(value) == 1:
        # A single bad value is only read by an activation that takes one.
        args["activations"] = ["LeakyRelu", "HardSigmoid", "Tanh"] * nd
    args[name] = value
    names = {name} | ({"activations"} if name.startswith("activation_") else set())
    return f"{name} = {_short(value)}", "error", names


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"ndarray {v.dtype}{list(v.shape)}"
    r = repr(v)
    return r if len(r) < 60 else r[:57] + "..."


def _bf16(args, meta, rng):
    args["bf16_weights"] = True
    if meta["dtype"] == np.float32 and not args.get("requires_grad"):
        return "bf16_weights on float32 inference", "ok", set()
    return "bf16_weights where it cannot serve", "error", {"bf16_weights"}


CHANGES = [_equivalent, _non_finite, _bad_shape, _bad_dtype, _wrong_type, _zero_size, _huge,
           _bad_attribute, _bf16]


def _backward_case(args, meta, rng):
    """A valid forward with requires_grad, then a fuzzed backward: (description, expect,
    names, backward arguments, a second backward's arguments, the plain equivalent)."""
    shapes = _expected_shapes(args, meta)
    dt = meta["dtype"]
    names = ["dY", "dY_h", "dY_c"]
    bw = {n: (rng.standard_normal(s).astype(dt) if rng.random() < 0.7 else None)
          for n, s in zip(names, shapes, strict=True)}
    how = rng.integers(6)
    if how == 0:
        return "backward", "ok", set(), bw, None, None
    if how == 1:
        return "backward twice", "error", {"tape"}, bw, dict(bw), None
    if how == 2:
        return "backward twice, retained", "ok", set(), dict(bw, retain=True), dict(bw), None
    k = str(rng.choice(names))
    g = bw[k] if bw[k] is not None else rng.standard_normal(shapes[names.index(k)]).astype(dt)
    plain = dict(bw, **{k: g})
    if how == 3:
        return f"{k} strided", "same", set(), dict(bw, **{k: strided(g)}), None, plain
    if how == 4:
        bad = np.zeros(g.shape + (1,), dt) if rng.random() < 0.5 else g.astype(np.float16)
        return f"{k} of {bad.shape} {bad.dtype}", "error", {k}, dict(bw, **{k: bad}), None, None
    value = [1, "yes", None, 2.5, [True]][int(rng.integers(5))]
    return f"retain = {value!r}", "error", {"retain"}, dict(bw, retain=value), None, None


def make_case(rng: np.random.Generator) -> Case:
    """One random case."""
    args, meta = _base(rng)
    if rng.random() < 0.2:
        args["requires_grad"] = True
        base_args = copy.deepcopy(args)
        desc, expect, names, bw, second, plain = _backward_case(args, meta, rng)
        return Case(desc=desc, expect=expect, names=names, check=_checker(args, meta),
                    call=lambda: _run(args, bw, second),
                    reference=lambda: _run(base_args, plain))
    base_args = copy.deepcopy(args)
    change = CHANGES[int(rng.integers(len(CHANGES)))]
    desc, expect, names = change(args, meta, rng)
    check = None
    if expect in ("ok", "same"):
        check = _checker(args, meta)
    elif expect == "any":
        # A changed X that is still valid has other sizes than the base: check the shapes
        # the call itself implies.
        check = _checker_from_call(args, meta)
    return Case(desc=desc, expect=expect, names=names, check=check, call=lambda: _run(args),
                reference=lambda: _run(base_args))


def _checker_from_call(args: dict[str, Any], meta: dict[str, Any]):
    X = args["X"]
    lay = meta["layout"]
    m = dict(meta, T=X.shape[1] if lay else X.shape[0], nb=X.shape[0] if lay else X.shape[1])
    return _checker(args, m)


def describe(args: dict[str, Any]) -> str:
    """A short, replayable summary of a call's arguments."""
    parts = []
    for k, v in args.items():
        if isinstance(v, np.ndarray):
            parts.append(f"{k}={v.dtype}{list(v.shape)}")
        else:
            parts.append(f"{k}={v!r}")
    return ", ".join(parts)
