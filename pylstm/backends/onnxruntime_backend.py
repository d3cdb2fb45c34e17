"""The built-in ``onnxruntime`` backend (inference only).

* ``lstm(**onnx_args)`` runs one ONNX ``LSTM`` node. Every attribute is passed through;
  ``layout=1`` (which onnxruntime rejects) is handled by transposing in numpy. onnxruntime's
  LSTM kernel supports float32 and float16 only: float64 raises ``BackendError``.
* ``run_module(module, x, hx, lengths)`` runs an ``LSTM`` / ``LSTMCell`` through a graph built by
  :func:`pylstm.interop._graph.build_module_model` with the weights as initializers: a stack of
  ``LSTM`` nodes, or ``Scan`` loops for ``proj_size > 0`` and float64.

Sessions are built once and cached:

* ``lstm``: per (dtype, attributes, which optional inputs are given, providers), in a bounded
  LRU. Batch, sequence and input sizes are dynamic axes, so one session serves all shapes.
* modules: per module (a ``weakref`` to it), per (has initial state, has lengths, providers).
  The cache entry is keyed on the module's ``_params_version`` counter (bumped by
  ``load_state_dict``, by replacing a parameter and by ``mark_updated()`` after in-place
  optimiser steps) **and** on the identity (``id`` and data pointer) of every parameter array,
  so replacing an array is noticed even without a version bump. An in-place write into a
  parameter array that is not followed by ``module.mark_updated()`` is *not* noticed: the
  session keeps the old weights (hashing every weight on every call would cost as much as a
  small forward pass). Modules without ``_params_version`` fall back to a CRC32 of the weights.

Execution providers: by default ``CUDAExecutionProvider`` when
``onnxruntime.get_available_providers()`` lists it, then ``CPUExecutionProvider``. What really
ran is read back from ``session.get_providers()`` (:attr:`OnnxRuntimeBackend.last_providers`);
when a requested provider did not come up, ONE ``RuntimeWarning`` is issued per process and
provider set (onnxruntime's own log spam is silenced with ``log_severity_level=3``).

Importing this module does not import onnxruntime.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
import weakref
import zlib
from collections import OrderedDict
from typing import Any

import numpy as np

from pylstm.errors import BackendError, DTypeError, ShapeError
from pylstm.hookspecs import hookimpl

__all__ = ["OnnxRuntimeBackend", "register_backends", "DEFAULT_PROVIDERS"]

DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
"""Providers tried by default, best first (those onnxruntime does not list are dropped)."""

_LSTM_CACHE_SIZE = 64
_lock = threading.RLock()
_fn_sessions: OrderedDict[tuple, Any] = OrderedDict()
_module_sessions: weakref.WeakKeyDictionary[Any, dict] = weakref.WeakKeyDictionary()
_module_sessions_by_id: dict[int, tuple[Any, dict]] = {}
_warned: set[tuple] = set()
_instances: dict[tuple[str, ...] | None, OnnxRuntimeBackend] = {}


def _err(message: str) -> RuntimeError:
    return BackendError(message)


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise _err(
            "backend 'onnxruntime': the onnxruntime package is not installed "
            "(pip install 'pylstm[onnx]' or 'pylstm[gpu]')"
        ) from exc
    return onnxruntime


def _reset_for_tests() -> None:
    """Forget cached sessions and the warnings already issued (tests use this)."""
    with _lock:
        _fn_sessions.clear()
        _module_sessions.clear()
        _module_sessions_by_id.clear()
        _warned.clear()


class OnnxRuntimeBackend:
    """Backend ``"onnxruntime"``: ONNX Runtime sessions, built once and cached."""

    name = "onnxruntime"

    def __init__(self, providers: list[str] | tuple[str, ...] | None = None) -> None:
        self.providers: tuple[str, ...] | None = tuple(providers) if providers else None
        self.last_providers: list[str] = []
        """Providers of the session that ran last (``session.get_providers()``)."""

    # ----------------------------------------------------------------- registry protocol
    def with_providers(self, providers: list[str] | tuple[str, ...] | None) -> OnnxRuntimeBackend:
        """This backend bound to ``providers`` (best first); instances are shared."""
        key = tuple(providers) if providers else None
        with _lock:
            inst = _instances.get(key)
            if inst is None:
                inst = _instances[key] = OnnxRuntimeBackend(key)
            return inst

    def available(self) -> bool:
        """True when the ``onnxruntime`` package is installed (checked without importing it)."""
        import importlib.util

        return importlib.util.find_spec("onnxruntime") is not None

    def unavailable_reason(self) -> str:
        """Why :meth:`available` is False."""
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return f"onnxruntime does not import ({exc}); pip install 'pylstm[onnx]'"
        return ""

    def devices(self) -> list[str]:
        """Execution providers this backend would ask for, best first."""
        return list(self._resolve_providers(warn=False))

    # ----------------------------------------------------------------- providers
    def _resolve_providers(self, warn: bool = True) -> tuple[str, ...]:
        ort = _ort()
        avail = list(ort.get_available_providers())
        wanted = self.providers or DEFAULT_PROVIDERS
        chosen = tuple(p for p in wanted if p in avail)
        missing = [p for p in wanted if p not in avail]
        if self.providers and missing and warn:
            self._warn_once(
                ("missing", tuple(wanted)),
                f"onnxruntime: execution provider(s) {', '.join(missing)} requested but not "
                f"available (onnxruntime lists {', '.join(avail)}); "
                f"running on {', '.join(chosen) or 'CPUExecutionProvider'}",
            )
        if "CPUExecutionProvider" not in chosen:
            chosen = chosen + ("CPUExecutionProvider",)
        return chosen

    @staticmethod
    def _warn_once(key: tuple, message: str) -> None:
        with _lock:
            if key in _warned:
                return
            _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)

    def _session(self, model: Any) -> Any:
        """An ``InferenceSession`` for ``model`` on the resolved providers."""
        ort = _ort()
        providers = self._resolve_providers()
        so = ort.SessionOptions()
        so.log_severity_level = 3  # errors such as "CUDA not found" become our one warning
        data = model.SerializeToString() if hasattr(model, "SerializeToString") else model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # onnxruntime's own provider UserWarning
            sess = ort.InferenceSession(data, sess_options=so, providers=list(providers))
        got = list(sess.get_providers())
        if providers[0] not in got:
            self._warn_once(
                ("fallback", providers),
                f"onnxruntime: {providers[0]} did not start (no usable device or driver); "
                f"falling back to {', '.join(got)}. session.get_providers() = {got}",
            )
        return sess

    def _run(self, sess: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = sess.run(None, feeds)
        self.last_providers = list(sess.get_providers())
        return out

    # ----------------------------------------------------------------- functional
    def lstm(self, **args: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run ``functional.lstm`` (ONNX ``LSTM``) through onnxruntime.

        Takes ``functional.lstm``'s arguments (``X, W, R, B, sequence_lens, initial_h,
        initial_c, P``, ``hidden_size, direction, activations, activation_alpha,
        activation_beta, clip, input_forget, layout``). ``requires_grad=True`` raises
        ``BackendError``: training needs the ``rust`` backend.
        """
        args = dict(args)
        args.pop("backend", None)
        if args.pop("requires_grad", False):
            raise _training_error("functional.lstm(requires_grad=True)")
        X = np.asarray(args.pop("X"))
        W = np.asarray(args.pop("W"))
        R = np.asarray(args.pop("R"))
        opt = {k: args.pop(k, None) for k in ("B", "sequence_lens", "initial_h", "initial_c",
                                                "P")}
        # ``layout`` describes the inputs; ``layout_out`` (set by ``functional.lstm``, which
        # normalises the inputs to layout 0) the outputs. onnxruntime rejects layout=1, so both
        # are handled by transposing in numpy.
        layout = int(args.pop("layout", 0) or 0)
        layout_out = args.pop("layout_out", None)
        layout_out = layout if layout_out is None else int(layout_out)
        attrs = {
            "hidden_size": args.pop("hidden_size", None),
            "direction": args.pop("direction", None) or "forward",
            "activations": args.pop("activations", None),
            "activation_alpha": args.pop("activation_alpha", None),
            "activation_beta": args.pop("activation_beta", None),
            "clip": args.pop("clip", None),
            "input_forget": int(args.pop("input_forget", 0) or 0),
        }
        if args:
            raise TypeError(f"lstm: unexpected arguments {sorted(args)}")
        dt = X.dtype
        if dt not in (np.float32, np.float16):
            raise _err(
                f"backend 'onnxruntime': X dtype {dt} is not supported by onnxruntime's LSTM "
                "kernel (float32 and float16 only); use backend='rust' for float64"
            )
        if attrs["hidden_size"] is None:
            attrs["hidden_size"] = int(R.shape[-1])
        if layout == 1:  # onnxruntime rejects layout=1: transpose to layout 0 and back
            X = X.transpose(1, 0, 2)
            for k in ("initial_h", "initial_c"):
                if opt[k] is not None:
                    opt[k] = np.asarray(opt[k]).transpose(1, 0, 2)
        feeds = {"X": np.ascontiguousarray(X), "W": np.ascontiguousarray(W, dtype=dt),
                 "R": np.ascontiguousarray(R, dtype=dt)}
        for k, v in opt.items():
            if v is not None:
                want = np.int32 if k == "sequence_lens" else dt
                feeds[k] = np.ascontiguousarray(v, dtype=want)
        sess = self._fn_session(dt, attrs, tuple(sorted(feeds)))
        Y, Y_h, Y_c = self._run(sess, feeds)
        if layout_out == 1:
            Y = np.ascontiguousarray(Y.transpose(2, 0, 1, 3))
            Y_h = np.ascontiguousarray(Y_h.transpose(1, 0, 2))
            Y_c = np.ascontiguousarray(Y_c.transpose(1, 0, 2))
        return Y, Y_h, Y_c

    def _fn_session(self, dt: np.dtype, attrs: dict, present: tuple[str, ...]) -> Any:
        providers = self._resolve_providers(warn=False)
        frozen = tuple(
            (k, tuple(v) if isinstance(v, (list, tuple, np.ndarray)) else v)
            for k, v in sorted(attrs.items())
        )
        key = (np.dtype(dt).str, frozen, present, providers)
        with _lock:
            sess = _fn_sessions.get(key)
            if sess is not None:
                _fn_sessions.move_to_end(key)
                return sess
        sess = self._session(_lstm_node_model(dt, attrs, present))
        with _lock:
            _fn_sessions[key] = sess
            while len(_fn_sessions) > _LSTM_CACHE_SIZE:
                _fn_sessions.popitem(last=False)
        return sess

    # ----------------------------------------------------------------- modules
    def run_module(
        self, module: Any, x: np.ndarray, hx: Any = None, lengths: Any = None, *,
        requires_grad: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Inference of ``module`` (``LSTM`` or ``LSTMCell``): ``(y, (h_n, c_n))``.

        For a cell ``y`` is ``h`` (the result is ``(h, (h, c))``). Unbatched inputs (``[T, I]``
        for ``LSTM``, ``[I]`` for a cell) give unbatched outputs, as in PyTorch.
        """
        from pylstm.interop import _graph

        if requires_grad:
            raise _training_error(f"{type(module).__name__}.forward(requires_grad=True)")
        spec = _graph.spec_of(module)
        if (
            spec.kind == "lstm"
            and getattr(module, "training", False)
            and float(getattr(module, "dropout", 0.0) or 0.0) > 0
            and spec.num_layers > 1
        ):
            raise _training_error(
                f"{type(module).__name__} in training mode with dropout={module.dropout}"
                " (call module.eval() for inference)"
            )
        dt = np.dtype(spec.dtype)
        prepare = getattr(module, "_prepare", None)
        if spec.kind == "lstm" and callable(prepare):
            # the engine's own validation (same errors as the rust path); it returns the input
            # time-major, so the session graph is built time-major too
            prep = prepare(x, hx, lengths)
            spec = dataclasses.replace(spec, batch_first=False)
            feeds = {"input": prep["x"]}
            if prep["h0"] is not None:
                feeds.update(h0=np.ascontiguousarray(prep["h0"]),
                             c0=np.ascontiguousarray(prep["c0"]))
            if prep["lens"] is not None:
                feeds["lengths"] = np.asarray(prep["lens"], dtype=np.int64)
            sess = self._module_session(module, spec, "h0" in feeds, "lengths" in feeds)
            y, h_n, c_n = self._run(sess, feeds)
            if prep["unbatched"]:
                return (np.ascontiguousarray(y[:, 0]),
                        (np.ascontiguousarray(h_n[:, 0]), np.ascontiguousarray(c_n[:, 0])))
            if module.batch_first:
                y = np.ascontiguousarray(y.transpose(1, 0, 2))
            return y, (h_n, c_n)
        x = np.asarray(x)
        if x.dtype != dt:
            raise _dtype_error(f"x: expected dtype {dt.name}, got {x.dtype.name}")
        want = (1, 2) if spec.kind == "cell" else (2, 3)
        if x.ndim not in want or x.shape[-1] != spec.input_size:
            raise _shape_error(
                f"x: expected {want[1]} (or {want[0]}) dimensions with input_size "
                f"{spec.input_size} last, got shape {list(x.shape)}"
            )
        x = np.ascontiguousarray(x)
        h0 = c0 = None
        if hx is not None:
            h0, c0 = hx
            h0 = np.ascontiguousarray(np.asarray(h0, dtype=dt))
            c0 = np.ascontiguousarray(np.asarray(c0, dtype=dt))
        if spec.kind == "cell":
            unbatched = x.ndim == 1
            if unbatched:
                x = x[None]
                if h0 is not None:
                    assert c0 is not None  # set together with h0
                    h0, c0 = h0[None], c0[None]
            feeds = {"input": x}
            if h0 is not None:
                feeds.update(h0=h0, c0=c0)
            sess = self._module_session(module, spec, h0 is not None, False)
            h, c = self._run(sess, feeds)
            if unbatched:
                h, c = h[0], c[0]
            return h, (h, c)
        unbatched = x.ndim == 2
        if unbatched:
            x = x[:, None] if not spec.batch_first else x[None]
            if h0 is not None:
                assert c0 is not None  # set together with h0
                h0, c0 = h0[:, None], c0[:, None]
        feeds = {"input": x}
        if h0 is not None:
            feeds.update(h0=h0, c0=c0)
        if lengths is not None:
            feeds["lengths"] = np.ascontiguousarray(np.asarray(lengths).reshape(-1),
                                                    dtype=np.int64)
        sess = self._module_session(module, spec, h0 is not None, lengths is not None)
        y, h_n, c_n = self._run(sess, feeds)
        if unbatched:
            y = y[:, 0] if not spec.batch_first else y[0]
            h_n, c_n = h_n[:, 0], c_n[:, 0]
        return y, (h_n, c_n)

    def _module_session(self, module: Any, spec: Any, has_state: bool, has_lengths: bool) -> Any:
        from pylstm.interop import _graph

        providers = self._resolve_providers(warn=False)
        version = _params_key(module, spec.params)
        key = (has_state, has_lengths, providers)
        with _lock:
            entry = _entry_for(module)
            if entry.get("version") != version:
                entry.clear()
                entry["version"] = version
            sess = entry.get(key)
        if sess is not None:
            return sess
        model = _graph.build_module_model(spec, initial_state=has_state, lengths=has_lengths)
        sess = self._session(model)
        with _lock:
            entry = _entry_for(module)
            if entry.get("version") == version:
                entry[key] = sess
        return sess

    def __repr__(self) -> str:
        provs = list(self.providers) if self.providers else "auto"
        return f"OnnxRuntimeBackend(providers={provs})"


def _entry_for(module: Any) -> dict:
    try:
        entry = _module_sessions.get(module)
        if entry is None:
            entry = _module_sessions[module] = {}
        return entry
    except TypeError:  # not weak-referenceable or unhashable: fall back to id()
        mid = id(module)
        held = _module_sessions_by_id.get(mid)
        if held is None or held[0] is not module:
            held = _module_sessions_by_id[mid] = (module, {})
        return held[1]


def _params_key(module: Any, params: dict[str, np.ndarray]) -> tuple:
    ident = tuple(
        (k, id(v), v.__array_interface__["data"][0] if isinstance(v, np.ndarray) else 0)
        for k, v in sorted(params.items())
    )
    version = getattr(module, "_params_version", None)
    if version is None:
        crc = 0
        for _k, v in sorted(params.items()):
            crc = zlib.crc32(np.ascontiguousarray(v).view(np.uint8).reshape(-1).data, crc)
        version = ("crc32", crc)
    return (version, ident)


def _training_error(what: str) -> RuntimeError:
    return _err(
        f"backend 'onnxruntime' is inference-only: {what} needs the 'rust' backend "
        "(backend='rust', use_backend('rust') or set_backend('rust'))"
    )


def _shape_error(message: str) -> Exception:
    return ShapeError(message)


def _dtype_error(message: str) -> Exception:
    return DTypeError(message)


def _lstm_node_model(dt: np.dtype, attrs: dict, present: tuple[str, ...]) -> Any:
    """A model with one ``LSTM`` node whose inputs are graph inputs (dynamic shapes)."""
    import onnx
    from onnx import helper

    from pylstm.interop._graph import DEFAULT_OPSET

    et = helper.np_dtype_to_tensor_dtype(np.dtype(dt))
    H = int(attrs["hidden_size"])
    D = 2 if attrs["direction"] == "bidirectional" else 1
    shapes: dict[str, tuple[int, list]] = {
        "X": (et, ["seq", "batch", "input"]),
        "W": (et, [D, 4 * H, "input"]),
        "R": (et, [D, 4 * H, H]),
        "B": (et, [D, 8 * H]),
        "sequence_lens": (onnx.TensorProto.INT32, ["batch"]),
        "initial_h": (et, [D, "batch", H]),
        "initial_c": (et, [D, "batch", H]),
        "P": (et, [D, 3 * H]),
    }
    order = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
    node_inputs = [k if k in present else "" for k in order]
    while node_inputs[-1] == "":
        node_inputs.pop()
    kw: dict[str, Any] = {"hidden_size": H, "direction": attrs["direction"]}
    if attrs["activations"] is not None and len(attrs["activations"]):
        kw["activations"] = [str(a) for a in attrs["activations"]]
    if attrs["activation_alpha"] is not None and len(attrs["activation_alpha"]):
        kw["activation_alpha"] = [float(a) for a in attrs["activation_alpha"]]
    if attrs["activation_beta"] is not None and len(attrs["activation_beta"]):
        kw["activation_beta"] = [float(a) for a in attrs["activation_beta"]]
    if attrs["clip"] is not None:
        kw["clip"] = float(attrs["clip"])
    if attrs["input_forget"]:
        kw["input_forget"] = int(attrs["input_forget"])
    node = helper.make_node("LSTM", node_inputs, ["Y", "Y_h", "Y_c"], **kw)
    graph = helper.make_graph(
        [node], "pylstm_functional_lstm",
        [helper.make_tensor_value_info(k, *shapes[k]) for k in order if k in present],
        [helper.make_tensor_value_info("Y", et, ["seq", D, "batch", H]),
         helper.make_tensor_value_info("Y_h", et, [D, "batch", H]),
         helper.make_tensor_value_info("Y_c", et, [D, "batch", H])],
    )
    opsets = [helper.make_opsetid("", DEFAULT_OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="pylstm")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model


_BACKEND = OnnxRuntimeBackend()
_instances[None] = _BACKEND


@hookimpl
def register_backends(register: Any) -> None:
    """Register the ``onnxruntime`` backend."""
    register(_BACKEND)
