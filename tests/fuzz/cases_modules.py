"""Random and malformed constructions and calls of ``pylstm.LSTM`` and ``pylstm.LSTMCell``.

Only the constructors and ``m(x)``, ``m(x, hx)``, ``m(x, lengths=...)`` are used: the rest of
the modules' interface may change. PyTorch's conventions define the documented shapes."""

from __future__ import annotations

from typing import Any

import numpy as np
from oracle import Case, expect_shapes, junk, strided

import pylstm

_HX_NAMES = {"hx", "h_0", "c_0", "h", "c", "h0", "c0"}


def _case(desc: str, expect: str, names: set[str], call, check=None, reference=None) -> Case:
    return Case(desc=desc, call=call, expect=expect, names=names, check=check,
                reference=reference)


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"ndarray {v.dtype}{list(v.shape)}"
    r = repr(v)
    return r if len(r) < 60 else r[:57] + "..."


def _lstm_config(rng: np.random.Generator, deterministic: bool) -> dict[str, Any]:
    H = int(rng.integers(1, 6))
    L = int(rng.integers(1, 4))
    return dict(input_size=int(rng.integers(1, 6)), hidden_size=H, num_layers=L,
                bias=bool(rng.random() < 0.8), batch_first=bool(rng.random() < 0.3),
                dropout=0.0 if deterministic or L == 1 else float(rng.choice([0.0, 0.3])),
                bidirectional=bool(rng.random() < 0.5),
                proj_size=int(rng.integers(0, H)) if rng.random() < 0.3 else 0,
                dtype=rng.choice([np.float32, np.float64]), seed=int(rng.integers(100)))


def _cell_config(rng: np.random.Generator) -> dict[str, Any]:
    return dict(input_size=int(rng.integers(1, 6)), hidden_size=int(rng.integers(1, 6)),
                bias=bool(rng.random() < 0.8), dtype=rng.choice([np.float32, np.float64]),
                seed=int(rng.integers(100)))


# Values no constructor should take, per argument ("any": a lenient reading may accept it).
_BAD_CTOR = {
    "input_size": ([-1, 2.5, True, "3", None, [2]], [0]),
    "hidden_size": ([0, -1, 2.5, True, "3", None], []),
    "num_layers": ([0, -1, 1.5, True, "2", None], []),
    "dropout": ([-0.1, 1.5, "0.5", True, float("nan"), None], []),
    "proj_size": ([-1, 2.5, True, "1", None], []),
    "dtype": ([np.int32, np.float16, "float33", 5, np.complex64], [None]),
    "seed": (["x", 2.5, -1, [1.5]], []),
    "bias": (["yes", 2.5, [True]], [1, 0, None]),
    "batch_first": (["yes", 2.5], [1, 0, None]),
    "bidirectional": (["yes", 2.5], [1, 0, None]),
}


def _constructor_case(rng: np.random.Generator) -> Case:
    cell = rng.random() < 0.3
    cfg = _cell_config(rng) if cell else _lstm_config(rng, deterministic=False)
    cls = pylstm.LSTMCell if cell else pylstm.LSTM
    which = rng.integers(4)
    if which == 0:
        return Case(desc=f"{cls.__name__}({_short(cfg)})", expect="ok",
                    call=lambda: cls(**cfg), check=lambda m: None)
    if which == 1:
        # Impossible sizes whose first parameter numpy cannot even describe (no allocation
        # is tried); no bias, so nothing smaller comes first.
        cfg.update(input_size=2**31 + int(rng.integers(9)), hidden_size=2**31, bias=False)
        cfg.pop("proj_size", None)
        return Case(desc=f"{cls.__name__} of impossible size", expect="memory",
                    names={"input_size", "hidden_size"}, call=lambda: cls(**cfg))
    if which == 2 and not cell:
        cfg["proj_size"] = cfg["hidden_size"] + int(rng.integers(2))
        return Case(desc=f"LSTM proj_size {cfg['proj_size']} >= hidden_size", expect="error",
                    names={"proj_size"}, call=lambda: cls(**cfg))
    names = [n for n in _BAD_CTOR if n in cfg]
    name = str(rng.choice(names))
    bad, lenient = _BAD_CTOR[name]
    pool = bad + lenient
    k = int(rng.integers(len(pool)))
    value = pool[k]
    cfg[name] = value
    expect = "any" if k >= len(bad) else "error"
    return Case(desc=f"{cls.__name__}({name}={_short(value)})", expect=expect, names={name},
                call=lambda: cls(**cfg), check=lambda m: None)


def _lstm_shapes(cfg: dict[str, Any], T: int, nb: int | None) -> list[tuple[int, ...]]:
    nd = 2 if cfg["bidirectional"] else 1
    out = cfg["proj_size"] or cfg["hidden_size"]
    L, H = cfg["num_layers"], cfg["hidden_size"]
    if nb is None:
        return [(T, nd * out), (L * nd, out), (L * nd, H)]
    y = (nb, T, nd * out) if cfg["batch_first"] else (T, nb, nd * out)
    return [y, (L * nd, nb, out), (L * nd, nb, H)]


def _flatten(out: Any) -> Any:
    """``y, (h, c)`` -> ``(y, h, c)`` (and ``(h, c)`` as it is)."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], tuple):
        return (out[0], *out[1])
    return out


def _lstm_call_case(rng: np.random.Generator) -> Case:
    how = int(rng.integers(9))
    cfg = _lstm_config(rng, deterministic=how == 0)
    dt = np.dtype(cfg["dtype"])
    m = pylstm.LSTM(**cfg)
    T, nb, n_in = int(rng.integers(1, 6)), int(rng.integers(1, 5)), cfg["input_size"]
    unbatched = rng.random() < 0.2
    nd = 2 if cfg["bidirectional"] else 1
    L, H, out = cfg["num_layers"], cfg["hidden_size"], cfg["proj_size"] or cfg["hidden_size"]
    if unbatched:
        x = rng.standard_normal((T, n_in)).astype(dt)
        hx = (rng.standard_normal((L * nd, out)).astype(dt),
              rng.standard_normal((L * nd, H)).astype(dt))
    else:
        x = rng.standard_normal((nb, T, n_in) if cfg["batch_first"] else (T, nb, n_in)).astype(dt)
        hx = (rng.standard_normal((L * nd, nb, out)).astype(dt),
              rng.standard_normal((L * nd, nb, H)).astype(dt))
    use_hx = rng.random() < 0.5
    lens = None if unbatched or rng.random() < 0.6 else rng.integers(1, T + 1, nb)
    t_out = T if lens is None else int(max(lens))
    shapes = _lstm_shapes(cfg, t_out, None if unbatched else nb)

    def check(o):
        return expect_shapes(_flatten(o), shapes, dt)

    def run(x=x, hx=hx if use_hx else None, lengths=lens):
        if lengths is not None:
            return m(x, hx, lengths=lengths) if hx is not None else m(x, lengths=lengths)
        return m(x, hx) if hx is not None else m(x)

    desc = f"LSTM({_short(cfg)}) on x {list(x.shape)}" + (" with hx" if use_hx else "") + \
        ("" if lens is None else f" lengths {list(lens)}")
    if how == 0:  # equivalent forms
        what = int(rng.integers(3))
        if what == 0:
            return _case(desc + ", x strided", "same", set(), lambda: run(x=strided(x)), check,
                        reference=run)
        if what == 1 and use_hx:
            return _case(desc + ", hx strided", "same", set(),
                        lambda: run(hx=(strided(hx[0]), strided(hx[1]))), check, reference=run)
        if lens is not None:
            return _case(desc + ", lengths as a list", "same", set(),
                        lambda: run(lengths=[int(v) for v in lens]), check, reference=run)
        return _case(desc + ", x Fortran-ordered", "same", set(),
                    lambda: run(x=np.asfortranarray(x)), check, reference=run)
    if how == 1:  # valid, with non-finite values
        bad = x.copy()
        bad.reshape(-1)[int(rng.integers(bad.size))] = rng.choice([np.nan, np.inf])
        return _case(desc + ", a non-finite x", "ok", set(), lambda: run(x=bad), check)
    if how == 2:  # x of a wrong shape
        options = [x[..., :0], x[None, None] if unbatched else x[None], x.reshape(-1),
                   np.zeros(x.shape[:-1] + (n_in + 1,), dt), x[:0], x[:, :0]]
        k = int(rng.integers(len(options)))
        return _case(desc + f", x reshaped {list(options[k].shape)}", "error", {"x"},
                    lambda: run(x=options[k]))
    if how == 3:  # x of a wrong dtype or type
        other = np.float32 if dt == np.float64 else np.float64
        bad = [x.astype(other), x.astype(np.float16), x.astype(np.int64), "x", None, 3.0,
               x.astype(bool)][int(rng.integers(7))]
        return _case(desc + f", x = {_short(bad)}", "error", {"x", "input"}, lambda: run(x=bad))
    if how == 4:  # hx malformed
        options: list[Any] = [hx[0], (hx[0],), (hx[0], hx[1], hx[1]), (None, hx[1]),
                              (hx[0][..., :-1] if out > 1 else hx[0][..., None], hx[1]),
                              (hx[0], hx[1].astype(np.float16)), "hx",
                              (np.concatenate([hx[0], hx[0]]), hx[1])]
        k = int(rng.integers(len(options)))
        return _case(desc + f", hx malformed ({k})", "error", _HX_NAMES,
                    lambda: run(hx=options[k]))
    if how == 5 and not unbatched:  # lengths malformed
        options = [[0] * nb, [T + 1] * nb, [1] * (nb + 1), np.ones(nb) * 1.0, [[1] * nb],
                   ["1"] * nb, [True] * nb, -1]
        k = int(rng.integers(len(options)))
        return _case(desc + f", lengths = {_short(options[k])}", "error", {"lengths"},
                    lambda: run(lengths=options[k]))
    if how == 5:
        return _case(desc + ", lengths with unbatched x", "error", {"lengths"},
                    lambda: run(lengths=[T]))
    if how == 6:  # an impossible length, as a broadcast view holding one row
        steps = int(2 ** rng.integers(38, 45))
        shape = (nb, steps, n_in) if cfg["batch_first"] else (steps, nb, n_in)
        huge = np.broadcast_to(np.zeros(n_in, dt), shape)
        return _case(desc + f", x a broadcast view of {steps} steps", "memory", {"x"},
                    lambda: run(x=huge, hx=None, lengths=None))
    return _case(desc, "ok", set(), run, check)


def _cell_call_case(rng: np.random.Generator) -> Case:
    cfg = _cell_config(rng)
    dt = np.dtype(cfg["dtype"])
    m = pylstm.LSTMCell(**cfg)
    nb, n_in, H = int(rng.integers(1, 5)), cfg["input_size"], cfg["hidden_size"]
    unbatched = rng.random() < 0.3
    x = rng.standard_normal((n_in,) if unbatched else (nb, n_in)).astype(dt)
    st = (H,) if unbatched else (nb, H)
    hx = (rng.standard_normal(st).astype(dt), rng.standard_normal(st).astype(dt))
    use_hx = rng.random() < 0.5

    def check(o):
        return expect_shapes(o, [st, st], dt)

    def run(x=x, hx=hx if use_hx else None):
        return m(x, hx) if hx is not None else m(x)

    desc = f"LSTMCell({_short(cfg)}) on x {list(x.shape)}" + (" with hx" if use_hx else "")
    how = int(rng.integers(6))
    if how == 0:
        return _case(desc + ", x strided", "same", set(), lambda: run(x=strided(x)), check,
                    reference=run)
    if how == 1:
        bad = x.copy()
        bad.reshape(-1)[int(rng.integers(bad.size))] = np.nan
        return _case(desc + ", NaN in x", "ok", set(), lambda: run(x=bad), check)
    if how == 2:
        options = [x[None, None], np.zeros(x.shape[:-1] + (n_in + 1,), dt), x[:0], x.astype(
            np.int32), junk(rng, "x")]
        k = int(rng.integers(len(options)))
        return _case(desc + f", x = {_short(options[k])}", "error", {"x", "input"},
                    lambda: run(x=options[k]))
    if how == 3:
        options = [hx[0], (hx[0],), (hx[0], np.zeros(st[:-1] + (H + 1,), dt)),
                   (hx[0].astype(np.float16), hx[1]), (None, hx[1]), 5]
        k = int(rng.integers(len(options)))
        return _case(desc + f", hx malformed ({k})", "error", _HX_NAMES,
                    lambda: run(hx=options[k]))
    return _case(desc, "ok", set(), run, check)


def make_case(rng: np.random.Generator) -> Case:
    """One random case: a construction (a quarter) or a call of a valid module."""
    r = rng.random()
    if r < 0.25:
        return _constructor_case(rng)
    if r < 0.7:
        return _lstm_call_case(rng)
    return _cell_call_case(rng)
