"""``LSTM`` and ``LSTMCell``: PyTorch's ``torch.nn.LSTM`` / ``LSTMCell`` on the Rust engine (or
another backend for inference), with gradients, as :class:`pylstm.nn.Module` layers.

Parameters are :class:`~pylstm.nn.Parameter` tensors named and shaped exactly as PyTorch names
them (gate order i, f, g, o), so a PyTorch ``state_dict`` converted to numpy loads as is. The
engine reads the live arrays (``p.data``) in place; optimisers update them in place.

``m(x, hx=None, lengths=None)`` returns ``y, (h_n, c_n)``: arrays for arrays, recorded tensors
for tensors (or inside :func:`pylstm.record`). Explicitly, ``(y, (h_n, c_n)), tape =
m.forward(x, requires_grad=True)`` and ``dx, (dh_0, dc_0) = m.backward(tape, (dy, (dh_n,
dc_n)))`` (any of the output gradients may be ``None``). The cell: ``h, c = cell(x, (h, c))``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pylstm import _checks, _core
from pylstm.errors import (
    BackendError,
    DTypeError,
    LstmValueError,
    PylstmMemoryError,
    ShapeError,
    TapeError,
)
from pylstm.runtime import check_bf16_compute_available, compute_dtype_is_bf16

from .module import Module

__all__ = ["LSTM", "LSTMCell", "ModuleTape"]

_DEFAULT_ACTS = [("Sigmoid", None, None), ("Tanh", None, None), ("Tanh", None, None)]


@dataclass
class ModuleTape:
    """What ``forward(..., requires_grad=True)`` saved for ``backward``."""

    core: Any
    owner: int
    layers: list
    x_shape: tuple[int, ...]
    steps: int
    out_steps: int
    batch: int
    unbatched: bool
    batch_first: bool

    @property
    def nbytes(self) -> int:
        """Memory held by the tape."""
        return int(self.core.nbytes)


def _to_numpy(value: Any) -> np.ndarray:
    """Arrays from numpy or from framework tensors (``.detach().cpu().numpy()``)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class _EngineModule(Module):
    """What the engine's layers share: dtype, seeded generator, parameter checks, packs."""

    def __init__(self, dtype: Any, seed: int | None) -> None:
        super().__init__()
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise DTypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
        if dt not in _checks.FLOAT_DTYPES:
            raise DTypeError(f"dtype: expected float32 or float64, got {dt}")
        if seed is not None:
            _checks.integer("seed", seed, 0)
        self.dtype = dt
        self.backend: str | None = None
        self._rng = np.random.default_rng(seed)
        self._own_version = 0

    def _init_params(self, shapes: Mapping[str, tuple[int, ...]], hidden: int) -> None:
        self._param_shapes = dict(shapes)
        try:  # math.sqrt: numpy has no sqrt of an int beyond int64
            bound = 1.0 / math.sqrt(hidden)
        except OverflowError:
            raise PylstmMemoryError(f"hidden_size: {str(hidden)[:40]} is beyond any machine's "
                                    "memory") from None
        for name, shape in shapes.items():
            try:
                values = self._rng.uniform(-bound, bound, shape).astype(self.dtype)
            except (ValueError, MemoryError):
                raise PylstmMemoryError(
                    f"input_size/hidden_size: parameter {name} of shape {list(shape)} cannot be "
                    "allocated") from None
            self.register_parameter(name, values)

    def _param(self, name: str) -> np.ndarray:
        """Parameter ``name`` as the engine reads it: checked by name against its shape and
        the module's dtype; an array the user replaced with a non-contiguous one is read
        through a contiguous copy (contiguous arrays are used in place)."""
        arr = self._parameters[name].data
        if not isinstance(arr, np.ndarray) or arr.dtype != self.dtype:
            got = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
            raise DTypeError(f"{name}: expected a numpy array of dtype {self.dtype} (the "
                             f"module's dtype), got {got}")
        _checks.expect_shape(name, arr, self._param_shapes[name])
        return np.ascontiguousarray(arr)

    @property
    def rng(self) -> np.random.Generator:
        """The generator behind initialisation and dropout masks (seeded by ``seed``)."""
        return self._rng

    @rng.setter
    def rng(self, value: np.random.Generator) -> None:
        self._rng = value

    def _parameters_changed(self) -> None:
        self.__dict__["_own_version"] = self.__dict__.get("_own_version", 0) + 1

    @property
    def _params_version(self) -> tuple:
        """What cached backends (onnxruntime sessions) and packed copies key on: changes with
        every optimiser step, ``load_state_dict``, ``mark_updated`` and assignment."""
        return (self.__dict__.get("_own_version", 0),
                tuple(p.version for p in self._parameters.values()))

    def _accumulate(self, name: str, grad: np.ndarray) -> None:
        self._parameters[name].grad += grad

    def _cached_packs(self, kind: str, names: list[list[str]], pack: Any,
                      per_layer: int = 1) -> list:
        """``pack(*arrays)`` for each group of parameters ``names`` (``per_layer`` groups to a
        layer, one per direction), as a list per layer; built once per
        version of the parameters: rebuilt when ``mark_updated()`` (called by
        ``load_state_dict`` and the optimisers) bumps the version or a parameter array is
        replaced, as the onnxruntime backend's session cache is."""
        flat = [n for group in names for n in group]
        arrays = [self._parameters[n].data for n in flat]
        key = (self._params_version,
               tuple((id(a), a.__array_interface__["data"][0]) for a in arrays))
        caches = self.__dict__.setdefault("_pack_caches", {})
        cached = caches.get(kind)
        if cached is None or cached[0] != key:
            packs = [pack(*(np.ascontiguousarray(self._param(n)) for n in group))
                     for group in names]
            nd = per_layer
            cached = (key, [packs[i:i + nd] for i in range(0, len(packs), nd)])
            caches[kind] = cached
        return cached[1]

    def __getstate__(self) -> dict[str, Any]:
        # Packed weights are derived, engine-owned copies: rebuilt on the next call after
        # unpickling or copying, never pickled.
        state = dict(self.__dict__)
        state.pop("_pack_caches", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _backend(self, backend: str | None):
        from pylstm.backends import get_backend

        return get_backend(backend if backend is not None else self.backend)

class LSTM(_EngineModule):
    """A multi-layer LSTM with PyTorch's ``nn.LSTM`` semantics.

    ``y, (h_n, c_n) = m(x, hx=None, lengths=None)``; ``x`` is ``[T, B, input_size]``
    (``[B, T, input_size]`` with ``batch_first``) or unbatched ``[T, input_size]``. ``lengths``
    gives what ``pack_padded_sequence(..., enforce_sorted=False)`` followed by
    ``pad_packed_sequence`` give: ``y`` has ``max(lengths)`` steps, zero past each length, and
    ``h_n``/``c_n`` hold each sequence's last valid step, in the caller's batch order.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, dtype: Any = np.float32, seed: int | None = None,
                 bf16_weights: bool = False, packed_weights: bool = False,
                 compute_dtype: str = "float32") -> None:
        super().__init__(dtype, seed)
        for name, flag in (("bf16_weights", bf16_weights), ("packed_weights", packed_weights)):
            if flag and self.dtype != np.float32:
                raise DTypeError(f"{name}: expected dtype float32, got {self.dtype}")
        if compute_dtype_is_bf16(compute_dtype):
            if self.dtype != np.float32:
                raise DTypeError(f"compute_dtype='bfloat16': expected dtype float32, got "
                                 f"{self.dtype}")
            if bf16_weights:
                raise LstmValueError("bf16_weights: expected False with compute_dtype="
                                     "'bfloat16' (which rounds every weight already)")
            check_bf16_compute_available()
        #: ``"float32"``, or opt-in ``"bfloat16"``: inference on the Rust backend rounds the
        #: inputs, weights and each step's hidden state to bfloat16 for the products, which
        #: run on AMX tiles with float32 sums (see ``pylstm.functional.lstm``); the weights
        #: are packed as tiles once per version of the parameters. Forwards for training
        #: (``requires_grad=True``) and other backends stay float32.
        self.compute_dtype = compute_dtype
        #: Opt-in: inference on the Rust backend reads the recurrent weights rounded to
        #: bfloat16 where that pays (see ``pylstm.functional.lstm``), packed once per
        #: version of the parameters (call ``mark_updated()`` after writing into them in
        #: place); forwards for training (``requires_grad=True``) stay float32.
        self.bf16_weights = bool(bf16_weights)
        #: Opt-in: inference on the Rust backend reads ``weight_ih`` and ``weight_hh`` from
        #: float32 copies packed once per version of the parameters into the layout the
        #: kernels stream (as onnxruntime packs a model's constant weights), instead of packing
        #: them on every call; same results. Call ``mark_updated()`` after writing into the
        #: parameters in place (the optimisers and ``load_state_dict`` do).
        self.packed_weights = bool(packed_weights)
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.num_layers = _checks.positive_int("num_layers", num_layers)
        self.proj_size = _checks.positive_int("proj_size", proj_size, allow_zero=True)
        if self.proj_size >= self.hidden_size:
            raise LstmValueError(f"proj_size: expected 0 <= proj_size < hidden_size "
                                 f"({hidden_size}), got {proj_size}")
        dropout = _checks.number("dropout", dropout)
        if not 0.0 <= dropout <= 1.0:
            raise LstmValueError(f"dropout: expected a number in [0, 1], got {dropout!r}")
        self.dropout = float(dropout)
        self.bias = _checks.flag("bias", bias)
        self.batch_first = _checks.flag("batch_first", batch_first)
        self.bidirectional = _checks.flag("bidirectional", bidirectional)
        self.num_directions = 2 if bidirectional else 1
        self._init_params(self._shapes(), self.hidden_size)

    def _out_size(self) -> int:
        return self.proj_size or self.hidden_size

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        h, p = self.hidden_size, self._out_size()
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            inp = self.input_size if layer == 0 else p * self.num_directions
            for d in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                shapes["weight_ih" + sfx] = (4 * h, inp)
                shapes["weight_hh" + sfx] = (4 * h, p)
                if self.bias:
                    shapes["bias_ih" + sfx] = (4 * h,)
                    shapes["bias_hh" + sfx] = (4 * h,)
                if self.proj_size:
                    shapes["weight_hr" + sfx] = (p, h)
        return shapes

    def __repr__(self) -> str:
        extra = "".join([f", num_layers={self.num_layers}" if self.num_layers > 1 else "",
                         ", batch_first=True" if self.batch_first else "",
                         f", dropout={self.dropout}" if self.dropout else "",
                         ", bidirectional=True" if self.bidirectional else "",
                         f", proj_size={self.proj_size}" if self.proj_size else "",
                         ", bias=False" if not self.bias else ""])
        return f"LSTM({self.input_size}, {self.hidden_size}{extra}, dtype={self.dtype.name})"

    def _core_layers(self) -> list:
        layers = []
        for layer in range(self.num_layers):
            dirs = []
            for d in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                p = self._param
                bias = p("bias_ih" + sfx) + p("bias_hh" + sfx) if self.bias else None
                proj = p("weight_hr" + sfx) if self.proj_size else None
                dirs.append((p("weight_ih" + sfx), p("weight_hh" + sfx), bias, None, proj))
            layers.append(dirs)
        return layers

    def _suffixes(self) -> list[str]:
        return [f"_l{layer}" + ("_reverse" if d else "")
                for layer in range(self.num_layers) for d in range(self.num_directions)]

    def _packed_bf16(self) -> list:
        """The recurrent weights rounded to bfloat16 and packed, per layer and direction."""
        return self._cached_packs("bf16", [["weight_hh" + s] for s in self._suffixes()],
                                  lambda r: _core.pack_bf16(r, self.hidden_size),
                                  self.num_directions)

    def _packed_f32(self) -> list:
        """``weight_ih`` and ``weight_hh`` packed for the kernels, per layer and direction."""
        return self._cached_packs("f32", [["weight_ih" + s, "weight_hh" + s]
                                          for s in self._suffixes()],
                                  lambda w, r: _core.pack_weights(w, r, self.hidden_size),
                                  self.num_directions)

    def _packed_tiles(self) -> list:
        """``weight_ih`` and ``weight_hh`` rounded to bfloat16 and packed as AMX tiles."""
        return self._cached_packs("tiles", [["weight_ih" + s, "weight_hh" + s]
                                            for s in self._suffixes()],
                                  lambda w, r: _core.pack_tiles(w, r, self.hidden_size),
                                  self.num_directions)

    def _prepare(self, x: Any, hx: Any, lengths: Any) -> dict[str, Any]:
        x = _to_numpy(x) if hasattr(x, "detach") else x
        _checks.float_dtype("x", x)
        x = _checks.array("x", x, self.dtype)
        unbatched = x.ndim == 2
        if x.ndim not in (2, 3):
            order = "batch, seq" if self.batch_first else "seq, batch"
            raise ShapeError(f"x: expected 3 dimensions [{order}, input_size] or 2 "
                             f"[seq, input_size], got shape {list(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ShapeError(f"x: expected input_size {self.input_size} in the last dimension, "
                             f"got shape {list(x.shape)}")
        xt = x[:, None, :] if unbatched else (x.transpose(1, 0, 2) if self.batch_first else x)
        xt = np.ascontiguousarray(xt)
        steps, batch = xt.shape[0], xt.shape[1]
        if steps == 0 or batch == 0:
            raise ShapeError(f"x: expected at least one time step and one sequence, got shape "
                             f"{list(x.shape)}")
        nld = self.num_layers * self.num_directions
        h0 = c0 = None
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise DTypeError("hx: expected a tuple (h_0, c_0)")
            shape_h = (nld, self._out_size()) if unbatched else (nld, batch, self._out_size())
            shape_c = (nld, self.hidden_size) if unbatched else (nld, batch, self.hidden_size)
            h0 = _checks.array("h_0", _to_numpy(hx[0]), self.dtype, shape_h)
            c0 = _checks.array("c_0", _to_numpy(hx[1]), self.dtype, shape_c)
            if unbatched:
                h0, c0 = np.ascontiguousarray(h0[:, None]), np.ascontiguousarray(c0[:, None])
        lens = None
        if lengths is not None:
            if unbatched:
                raise ShapeError("lengths: not supported with unbatched (2-D) input")
            lens = _checks.lengths("lengths", _to_numpy(lengths), batch, steps)
        return dict(x=xt, h0=h0, c0=c0, lens=lens, steps=steps, batch=batch,
                    unbatched=unbatched, x_shape=x.shape)

    def _masks(self, steps: int, batch: int) -> list | None:
        if not (self.training and self.dropout > 0 and self.num_layers > 1):
            return None
        keep = 1.0 - self.dropout
        shape = (steps, batch, self.num_directions * self._out_size())
        if keep == 0.0:
            return [np.zeros(shape, self.dtype) for _ in range(self.num_layers - 1)]
        return [((self._rng.random(shape) < keep) / keep).astype(self.dtype)
                for _ in range(self.num_layers - 1)]

    def _finish(self, y: np.ndarray, hn: np.ndarray, cn: np.ndarray, prep: dict[str, Any]):
        out_steps = max(prep["lens"]) if prep["lens"] is not None else prep["steps"]
        y = y[:out_steps]
        if prep["unbatched"]:
            return np.ascontiguousarray(y[:, 0]), (np.ascontiguousarray(hn[:, 0]),
                                                   np.ascontiguousarray(cn[:, 0])), out_steps
        if self.batch_first:
            y = y.transpose(1, 0, 2)
        return np.ascontiguousarray(y), (hn, cn), out_steps

    def forward(self, x: Any, hx: Any = None, lengths: Any = None, requires_grad: bool = False,
                backend: str | None = None):
        """``y, (h_n, c_n)``; with ``requires_grad``, ``((y, (h_n, c_n)), tape)`` for
        :meth:`backward`."""
        y, state, tape = self._forward(x, hx, lengths, requires_grad, backend)
        return ((y, state), tape) if requires_grad else (y, state)

    def _forward(self, x, hx, lengths, requires_grad, backend=None):
        impl = self._backend(backend)
        if impl.name != "rust":
            if requires_grad:
                raise BackendError(f"backend {impl.name!r} cannot compute gradients; use the "
                                   "'rust' backend for training")
            y, state = impl.run_module(self, x, hx, lengths)
            return y, state, None
        prep = self._prepare(x, hx, lengths)
        layers = self._core_layers()
        y, hn, cn, core_tape = _core.network_forward(
            prep["x"], layers, hidden_size=self.hidden_size, proj_size=self.proj_size,
            order="torch", reverse=[False, True][:self.num_directions],
            activations=[_DEFAULT_ACTS] * self.num_directions, h0=prep["h0"], c0=prep["c0"],
            lengths=prep["lens"], masks=self._masks(prep["steps"], prep["batch"]),
            keep_tape=requires_grad,
            bf16_weights=self._packed_bf16() if self.bf16_weights and not requires_grad else None,
            packed_weights=(self._packed_f32() if self.packed_weights and not requires_grad
                            else None),
            tile_weights=(self._packed_tiles() if self.compute_dtype == "bfloat16"
                          and not requires_grad else None))
        y, state, out_steps = self._finish(y, hn, cn, prep)
        tape = None
        if requires_grad:
            tape = ModuleTape(core=core_tape, owner=id(self), layers=layers,
                              x_shape=prep["x_shape"], steps=prep["steps"], out_steps=out_steps,
                              batch=prep["batch"], unbatched=prep["unbatched"],
                              batch_first=self.batch_first)
        return y, state, tape

    def backward(self, tape: ModuleTape, dy: Any = None, dh_n: Any = None, dc_n: Any = None):
        """Back-propagate; add the parameter gradients into each ``p.grad``; return
        ``dx, (dh_0, dc_0)`` shaped like ``x`` and the initial states. ``dy`` may be the
        outputs' structure ``(dy, (dh_n, dc_n))``."""
        if isinstance(dy, tuple):
            if len(dy) != 2 or not isinstance(dy[1], tuple) or len(dy[1]) != 2:
                raise LstmValueError("dy: expected an array or the pair (dy, (dh_n, dc_n))")
            if dh_n is not None or dc_n is not None:
                raise LstmValueError("dh_n/dc_n: give them either in the pair dy or by keyword")
            dy, (dh_n, dc_n) = dy
        if not isinstance(tape, ModuleTape) or tape.owner != id(self):
            raise TapeError("tape: expected a tape made by this module's forward(..., "
                            "requires_grad=True)")
        t, b, nd, p, h = tape.steps, tape.batch, self.num_directions, self._out_size(), \
            self.hidden_size
        nld = self.num_layers * nd
        dyc = None
        if dy is not None:
            if tape.unbatched:
                arr = _checks.array("dy", _to_numpy(dy), self.dtype, (tape.out_steps, nd * p))
                arr = arr[:, None]
            elif self.batch_first:
                arr = _checks.array("dy", _to_numpy(dy), self.dtype, (b, tape.out_steps, nd * p))
                arr = arr.transpose(1, 0, 2)
            else:
                arr = _checks.array("dy", _to_numpy(dy), self.dtype, (tape.out_steps, b, nd * p))
            dyc = np.zeros((t, b, nd * p), self.dtype)
            dyc[:tape.out_steps] = arr
        states: list[np.ndarray | None] = []
        for name, val, size in (("dh_n", dh_n, p), ("dc_n", dc_n, h)):
            if val is None:
                states.append(None)
                continue
            shape = (nld, size) if tape.unbatched else (nld, b, size)
            arr = _checks.array(name, _to_numpy(val), self.dtype, shape)
            states.append(np.ascontiguousarray(arr[:, None]) if tape.unbatched else arr)
        dx, dh0, dc0, grads = _core.network_backward(tape.core, tape.layers, dyc, states[0],
                                                     states[1])
        for layer, dirs in enumerate(grads):
            for d, g in enumerate(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                self._accumulate("weight_ih" + sfx, g["W"])
                self._accumulate("weight_hh" + sfx, g["R"])
                if self.bias:
                    self._accumulate("bias_ih" + sfx, g["B"])
                    self._accumulate("bias_hh" + sfx, g["B"])
                if self.proj_size:
                    self._accumulate("weight_hr" + sfx, g["weight_hr"])
        if tape.unbatched:
            return np.ascontiguousarray(dx[:, 0]), (np.ascontiguousarray(dh0[:, 0]),
                                                    np.ascontiguousarray(dc0[:, 0]))
        if self.batch_first:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        return dx, (dh0, dc0)

    def to_onnx(self, path: str | None = None, opset: int | None = None):
        """Export to ONNX (see :func:`pylstm.interop.onnx_export.export_lstm`)."""
        from pylstm.interop.onnx_export import export_lstm

        return export_lstm(self, path=path, opset=opset)

    @classmethod
    def from_onnx(cls, path_or_model: Any) -> LSTM:
        """Build a module from an ONNX graph's LSTM nodes (see
        :func:`pylstm.interop.onnx_import.import_lstm`)."""
        from pylstm.interop.onnx_import import import_lstm

        return import_lstm(path_or_model)


class LSTMCell(_EngineModule):
    """One LSTM step with PyTorch's ``nn.LSTMCell`` semantics: ``h, c = cell(x, (h, c))``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 dtype: Any = np.float32, seed: int | None = None,
                 packed_weights: bool = False) -> None:
        super().__init__(dtype, seed)
        if packed_weights and self.dtype != np.float32:
            raise DTypeError(f"packed_weights: expected dtype float32, got {self.dtype}")
        #: Opt-in, as for :class:`LSTM`: inference reads the weights from float32 copies packed
        #: once per version of the parameters (``mark_updated()`` after in-place writes).
        self.packed_weights = bool(packed_weights)
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.bias = _checks.flag("bias", bias)
        h = self.hidden_size
        shapes: dict[str, tuple[int, ...]] = {"weight_ih": (4 * h, self.input_size),
                                              "weight_hh": (4 * h, h)}
        if self.bias:
            shapes.update(bias_ih=(4 * h,), bias_hh=(4 * h,))
        self._init_params(shapes, h)

    def __repr__(self) -> str:
        return f"LSTMCell({self.input_size}, {self.hidden_size}, dtype={self.dtype.name})"

    def _core_layers(self) -> list:
        p = self._param
        bias = p("bias_ih") + p("bias_hh") if self.bias else None
        return [[(p("weight_ih"), p("weight_hh"), bias, None, None)]]

    def forward(self, x: Any, hx: Sequence[Any] | None = None, requires_grad: bool = False,
                backend: str | None = None):
        """``(h, c)``; with ``requires_grad``, ``((h, c), tape)`` for :meth:`backward`."""
        impl = self._backend(backend)
        if impl.name != "rust":
            if requires_grad:
                raise BackendError(f"backend {impl.name!r} cannot compute gradients; use the "
                                   "'rust' backend for training")
            return impl.run_module(self, x, hx, None)[1]
        x = _to_numpy(x) if hasattr(x, "detach") else x
        _checks.float_dtype("x", x)
        x = _checks.array("x", x, self.dtype)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ShapeError(f"x: expected shape [batch, {self.input_size}] or "
                             f"[{self.input_size}], got {list(x.shape)}")
        unbatched = x.ndim == 1
        xb = x[None] if unbatched else x
        batch = xb.shape[0]
        if batch == 0:
            raise ShapeError("x: expected a batch of at least one row, got 0")
        h0 = c0 = None
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise DTypeError("hx: expected a tuple (h, c)")
            shape = (self.hidden_size,) if unbatched else (batch, self.hidden_size)
            h0 = _checks.array("h", _to_numpy(hx[0]), self.dtype, shape).reshape(1, batch, -1)
            c0 = _checks.array("c", _to_numpy(hx[1]), self.dtype, shape).reshape(1, batch, -1)
        layers = self._core_layers()
        _, hn, cn, core_tape = _core.network_forward(
            np.ascontiguousarray(xb[None]), layers, hidden_size=self.hidden_size, proj_size=0,
            order="torch", reverse=[False], activations=[_DEFAULT_ACTS],
            h0=None if h0 is None else np.ascontiguousarray(h0),
            c0=None if c0 is None else np.ascontiguousarray(c0), keep_tape=requires_grad,
            packed_weights=(self._cached_packs(
                "f32", [["weight_ih", "weight_hh"]],
                lambda w, r: _core.pack_weights(w, r, self.hidden_size))
                if self.packed_weights and not requires_grad else None))
        h, c = hn[0], cn[0]
        if unbatched:
            h, c = h[0], c[0]
        if not requires_grad:
            return h, c
        tape = ModuleTape(core=core_tape, owner=id(self), layers=layers, x_shape=x.shape, steps=1,
                          out_steps=1, batch=batch, unbatched=unbatched, batch_first=False)
        return (h, c), tape

    def backward(self, tape: ModuleTape, dh: Any = None, dc: Any = None):
        """Back-propagate one step; add into each ``p.grad``; return ``dx, (dh_prev, dc_prev)``.
        ``dh`` may be the outputs' structure ``(dh, dc)``."""
        if isinstance(dh, tuple):
            if dc is not None or len(dh) != 2:
                raise LstmValueError("dh: expected an array or the pair (dh, dc)")
            dh, dc = dh
        if not isinstance(tape, ModuleTape) or tape.owner != id(self):
            raise TapeError("tape: expected a tape made by this cell's forward(..., "
                            "requires_grad=True)")
        shape = (self.hidden_size,) if tape.unbatched else (tape.batch, self.hidden_size)
        states = []
        for name, val in (("dh", dh), ("dc", dc)):
            states.append(None if val is None else np.ascontiguousarray(
                _checks.array(name, _to_numpy(val), self.dtype, shape).reshape(1, tape.batch, -1)))
        dx, dh0, dc0, grads = _core.network_backward(tape.core, tape.layers, None, states[0],
                                                     states[1])
        g = grads[0][0]
        self._accumulate("weight_ih", g["W"])
        self._accumulate("weight_hh", g["R"])
        if self.bias:
            self._accumulate("bias_ih", g["B"])
            self._accumulate("bias_hh", g["B"])
        dx, dh0, dc0 = dx[0], dh0[0], dc0[0]
        if tape.unbatched:
            dx, dh0, dc0 = dx[0], dh0[0], dc0[0]
        return dx, (dh0, dc0)
