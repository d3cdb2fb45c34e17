"""Import LSTM graphs from ONNX into ``pylstm.LSTM`` (``LSTM.from_onnx``).

Understood graphs:

* ``torch.onnx.export`` of ``torch.nn.LSTM`` (both the dynamo exporter and the legacy
  TorchScript one, ``dynamo=False``): one ``LSTM`` node per layer with ``Squeeze`` /
  ``Transpose`` + ``Reshape`` glue, ``Transpose`` for ``batch_first``, shape arithmetic for the
  zero initial states;
* tf2onnx / Keras style graphs: ``Transpose`` (batch major -> time major) into ``LSTM`` nodes
  with ``Squeeze`` / ``Unsqueeze`` / ``Transpose`` glue;
* our own :func:`pylstm.interop.onnx_export.export_lstm` (including the ``Scan`` graphs used
  for ``proj_size > 0`` and float64, read back through the ``pylstm.module`` metadata).

The mapping is checked, not guessed: every node that touches the data flowing from the graph
input must be an ``LSTM`` node of the chain or layout glue, every ``LSTM`` node must use the
default activations without ``clip``, ``input_forget`` or non-zero peepholes, and a constant
initial state must be zero. Otherwise :class:`OnnxImportError` lists each node it could not map
and why.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from pylstm.errors import DTypeError, PylstmError
from pylstm.interop import _graph

__all__ = ["import_lstm", "OnnxImportError", "read_lstm_graph"]

# ops that only move or relabel data: allowed on the data path between LSTM nodes
_LAYOUT_GLUE = {"Transpose", "Squeeze", "Unsqueeze", "Reshape", "Identity", "Dropout", "Cast",
                "Flatten"}
# ops also allowed on the way from LSTM outputs to graph outputs (stacking h_n / c_n, splitting
# states per layer)
_STATE_GLUE = _LAYOUT_GLUE | {"Concat", "Slice", "Gather", "Split"}
# ops whose output does not depend on the values of their input
_SHAPE_ONLY = {"Shape", "Size"}

_DEFAULT_ACTIVATIONS = ("sigmoid", "tanh", "tanh")


class OnnxImportError(PylstmError, ValueError):
    """The graph cannot be mapped onto ``pylstm.LSTM``; ``nodes`` lists what was not mapped."""

    def __init__(self, message: str, nodes: Iterable[str] = ()) -> None:
        self.nodes = list(nodes)
        if self.nodes:
            message += "\n  could not map:\n" + "\n".join(f"    - {n}" for n in self.nodes)
        super().__init__(message)


@dataclass
class LstmGraphInfo:
    """What :func:`read_lstm_graph` found: the module configuration and a PyTorch state dict."""

    config: dict[str, Any]
    state_dict: dict[str, np.ndarray]
    source: str  # "pylstm-scan", "lstm-nodes"


def _describe(node: Any) -> str:
    return f"{node.op_type} {node.name!r}" if node.name else f"{node.op_type} (unnamed)"


class _Consts:
    """Constant values of a graph: initializers, ``Constant`` nodes, and nodes whose inputs are
    all constant (evaluated with ``onnx.reference``)."""

    def __init__(self, graph: Any, producers: dict[str, Any], opset: int) -> None:
        from onnx import numpy_helper

        self.values: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in graph.initializer
        }
        self.producers = producers
        self.opset = opset
        self._failed: set[str] = set()

    def get(self, name: str, depth: int = 0) -> np.ndarray | None:
        if not name:
            return None
        if name in self.values:
            return self.values[name]
        if name in self._failed or depth > 64:
            return None
        node = self.producers.get(name)
        if node is None or node.op_type in _SHAPE_ONLY:
            self._failed.add(name)
            return None
        inputs = [self.get(i, depth + 1) if i else None for i in node.input]
        if any(v is None and i for v, i in zip(inputs, node.input, strict=True)):
            self._failed.add(name)
            return None
        try:
            outs = _eval_node(node, inputs, self.opset)
        except Exception:
            self._failed.add(name)
            return None
        for o, v in zip(node.output, outs, strict=False):
            if o:
                self.values[o] = np.asarray(v)
        return self.values.get(name)


def _eval_node(node: Any, inputs: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    if node.op_type == "Constant":
        ev = ReferenceEvaluator(
            helper.make_model(
                helper.make_graph(
                    [node], "c", [], [helper.make_value_info(o, helper.TypeProto())
                                      for o in node.output]
                ),
                opset_imports=[helper.make_opsetid("", opset)],
            )
        )
        # run() returns a list unless intermediate=True
        return cast("list[np.ndarray]", ev.run(None, {}))
    in_names = [f"in{k}" if v is not None else "" for k, v in enumerate(inputs)]
    n2 = helper.make_node(node.op_type, in_names, [f"out{k}" for k in range(len(node.output))],
                          domain=node.domain)
    n2.attribute.extend(node.attribute)
    g = helper.make_graph(
        [n2], "c",
        [helper.make_value_info(n, helper.TypeProto()) for n in in_names if n],
        [helper.make_value_info(f"out{k}", helper.TypeProto()) for k in range(len(node.output))],
    )
    ev = ReferenceEvaluator(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]))
    return cast("list[np.ndarray]",
                ev.run(None, {n: v for n, v in zip(in_names, inputs, strict=True) if n}))


def _load(path_or_model: Any) -> Any:
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    if isinstance(path_or_model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(path_or_model))
    if isinstance(path_or_model, (str, os.PathLike)):
        return onnx.load(os.fspath(path_or_model))
    if hasattr(path_or_model, "read"):
        return onnx.load(path_or_model)
    raise DTypeError(
        "path_or_model: expected a path, bytes, a file object or an onnx.ModelProto, "
        f"got {type(path_or_model).__name__}"
    )


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode() for x in v]
        out[a.name] = v
    return out


def read_lstm_graph(path_or_model: Any) -> LstmGraphInfo:
    """Map an ONNX model onto an ``LSTM`` configuration and PyTorch-named weights.

    Raises :class:`OnnxImportError` listing the nodes that could not be mapped.
    """
    model = _load(path_or_model)
    meta = {p.key: p.value for p in model.metadata_props}
    cfg_meta = json.loads(meta[_graph.METADATA_KEY]) if _graph.METADATA_KEY in meta else None
    if cfg_meta is not None and cfg_meta.get("graph") == "scan":
        return _read_pylstm_scan(model, cfg_meta)
    info = _read_lstm_nodes(model)
    if cfg_meta is not None and cfg_meta.get("kind") == "cell":
        sd = {k.replace("_l0", ""): v for k, v in info.state_dict.items()}
        cfg = {k: cfg_meta[k] for k in ("input_size", "hidden_size", "bias")}
        cfg["kind"] = "cell"
        cfg["dtype"] = info.config["dtype"]
        return LstmGraphInfo(cfg, sd, info.source)
    return info


def _read_pylstm_scan(model: Any, cfg: dict[str, Any]) -> LstmGraphInfo:
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    spec = _graph.ModuleSpec(
        kind=cfg["kind"], input_size=cfg["input_size"], hidden_size=cfg["hidden_size"],
        num_layers=cfg.get("num_layers", 1), bias=cfg.get("bias", True),
        batch_first=cfg.get("batch_first", False), bidirectional=cfg.get("bidirectional", False),
        proj_size=cfg.get("proj_size", 0), dtype=np.dtype(cfg.get("dtype", "float32")),
    )
    names = _expected_param_names(spec)
    missing = [n for n in names if n not in inits]
    if missing:
        raise OnnxImportError(
            "pylstm Scan graph: initializers missing for parameters", missing
        )
    sd = {n: np.array(inits[n], dtype=spec.dtype) for n in names}
    return LstmGraphInfo(spec.config(), sd, "pylstm-scan")


def _expected_param_names(spec: _graph.ModuleSpec) -> list[str]:
    if spec.kind == "cell":
        return ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if spec.bias else [])
    names = []
    for layer in range(spec.num_layers):
        for d in range(spec.num_directions):
            s = f"_l{layer}" + ("_reverse" if d else "")
            names += [f"weight_ih{s}", f"weight_hh{s}"]
            if spec.bias:
                names += [f"bias_ih{s}", f"bias_hh{s}"]
            if spec.proj_size:
                names.append(f"weight_hr{s}")
    return names


def _read_lstm_nodes(model: Any) -> LstmGraphInfo:
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    producers: dict[str, Any] = {}
    for n in graph.node:
        for o in n.output:
            if o:
                producers[o] = n
    consts = _Consts(graph, producers, opset)
    init_names = {t.name for t in graph.initializer}
    data_inputs = [i.name for i in graph.input if i.name not in init_names]
    lstms = [n for n in graph.node if n.op_type == "LSTM" and n.domain in ("", "ai.onnx")]
    if not lstms:
        from collections import Counter

        ops = Counter(n.op_type for n in graph.node)
        raise OnnxImportError(
            "no ONNX LSTM node in the graph (found "
            + ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())) + ")",
            [_describe(n) for n in graph.node if n.op_type in ("Scan", "Loop", "GRU", "RNN")],
        )

    problems: list[str] = []

    # -- which tensors carry data from the graph inputs
    data: set[str] = set(data_inputs)
    consumers_of_data: list[Any] = []
    for n in graph.node:
        if any(i in data for i in n.input if i):
            consumers_of_data.append(n)
            if n.op_type not in _SHAPE_ONLY:
                data.update(o for o in n.output if o)

    # -- the chain of LSTM nodes
    lstm_outputs = {}
    for k, n in enumerate(lstms):
        for j, o in enumerate(n.output):
            if o:
                lstm_outputs[o] = (k, j)
    chain_nodes: set[int] = set()
    batch_first = False
    for k, n in enumerate(lstms):
        src, path, ok = _trace_back(n.input[0], producers, _LAYOUT_GLUE)
        chain_nodes.update(id(p) for p in path)
        transposes = sum(
            1 for p in path if p.op_type == "Transpose" and list(_attrs(p).get("perm", []))
            in ([1, 0, 2],)
        )
        layout = int(_attrs(n).get("layout", 0))
        if k == 0:
            if not ok or src not in data_inputs:
                problems.append(
                    f"{_describe(n)}: its input X does not come from a graph input through "
                    f"layout glue (stopped at {src!r})"
                )
            batch_first = bool((transposes % 2) ^ layout)
        else:
            want = lstms[k - 1].output[0]
            if not ok or src != want:
                problems.append(
                    f"{_describe(n)}: its input X is not the Y output of the previous LSTM "
                    f"node {_describe(lstms[k - 1])} through layout glue (stopped at {src!r})"
                )
            elif transposes % 2 or layout:
                problems.append(f"{_describe(n)}: unexpected batch-major layout between layers")

    # -- nodes that touch the data: LSTM chain, glue on the way to the outputs
    lstm_ids = {id(n) for n in lstms}
    for n in consumers_of_data:
        if id(n) in lstm_ids or id(n) in chain_nodes or n.op_type in _SHAPE_ONLY:
            continue
        if n.op_type in _STATE_GLUE:
            continue
        problems.append(f"{_describe(n)}: operator {n.op_type} on the data path is not part of "
                        "an LSTM")
    for out in graph.output:
        if out.name not in data:
            continue
        srcs = _trace_sources(out.name, producers, _STATE_GLUE, data)
        bad = [s for s in srcs if s not in lstm_outputs]
        if bad:
            via = ", ".join(
                _describe(producers[b]) if b in producers else f"input {b!r}" for b in bad
            )
            problems.append(
                f"graph output {out.name!r} is not a re-arrangement of LSTM outputs "
                f"(it comes from {via})"
            )

    # -- each LSTM node
    layers: list[tuple[Any, int, int, np.ndarray, np.ndarray, np.ndarray | None]] = []
    for n in lstms:
        a = _attrs(n)
        reasons = []
        acts = a.get("activations")
        direction = str(a.get("direction", "forward"))
        nd = 2 if direction == "bidirectional" else 1
        if acts is not None and tuple(x.lower() for x in acts) != _DEFAULT_ACTIVATIONS * nd:
            reasons.append(f"activations={list(acts)} (only Sigmoid, Tanh, Tanh map)")
        if a.get("clip") is not None:
            reasons.append(f"clip={a['clip']}")
        if int(a.get("input_forget", 0)):
            reasons.append("input_forget=1")
        if direction == "reverse":
            reasons.append("direction='reverse' (torch.nn.LSTM has no reverse-only layer)")
        ins = list(n.input) + [""] * (8 - len(n.input))
        W, R = consts.get(ins[1]), consts.get(ins[2])
        B = consts.get(ins[3]) if ins[3] else None
        if W is None or R is None:
            reasons.append("W or R is not a constant")
        if ins[3] and B is None:
            reasons.append("B is not a constant")
        if ins[7]:
            P = consts.get(ins[7])
            if P is None or np.any(P != 0):
                reasons.append("peephole weights P are not zero")
        for idx, nm in ((5, "initial_h"), (6, "initial_c")):
            if ins[idx]:
                v = consts.get(ins[idx])
                if v is not None and np.any(v != 0):
                    reasons.append(f"{nm} is a non-zero constant (a learned initial state)")
        if reasons:
            problems.append(f"{_describe(n)}: " + "; ".join(reasons))
            continue
        assert W is not None and R is not None  # otherwise a reason was recorded
        H = int(a.get("hidden_size", int(R.shape[-1])))
        layers.append((n, nd, H, W, R, B))

    if problems:
        raise OnnxImportError("cannot map this ONNX graph onto pylstm.LSTM", problems)

    nds = {nd for _, nd, *_ in layers}
    hs = {H for _, _, H, *_ in layers}
    if len(nds) != 1 or len(hs) != 1:
        raise OnnxImportError(
            "LSTM layers differ in direction or hidden_size, which pylstm.LSTM cannot express",
            [f"{_describe(n)}: directions={nd}, hidden_size={H}" for n, nd, H, *_ in layers],
        )
    nd, H = nds.pop(), hs.pop()
    input_size = int(layers[0][3].shape[2])
    bad = [
        f"{_describe(n)}: input size {W.shape[2]} != {nd}*{H}"
        for n, _, _, W, *_ in layers[1:] if W.shape[2] != nd * H
    ]
    if bad:
        raise OnnxImportError("stacked LSTM layers do not chain", bad)
    wdt = np.dtype(layers[0][3].dtype)
    dtype = np.float64 if wdt == np.float64 else np.float32
    bias = any(B is not None for *_, B in layers)
    sd: dict[str, np.ndarray] = {}
    for layer, (_n, _nd, _H, W, R, B) in enumerate(layers):
        for d in range(nd):
            s = f"_l{layer}" + ("_reverse" if d else "")
            sd["weight_ih" + s] = _graph.permute_gates(W[d], _graph.ONNX_TO_TORCH_GATES)
            sd["weight_hh" + s] = _graph.permute_gates(R[d], _graph.ONNX_TO_TORCH_GATES)
            if bias:
                b = B[d] if B is not None else np.zeros(8 * H, dtype=W.dtype)
                sd["bias_ih" + s] = _graph.permute_gates(b[: 4 * H], _graph.ONNX_TO_TORCH_GATES)
                sd["bias_hh" + s] = _graph.permute_gates(b[4 * H:], _graph.ONNX_TO_TORCH_GATES)
    sd = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in sd.items()}
    cfg = {
        "kind": "lstm", "input_size": input_size, "hidden_size": H, "num_layers": len(layers),
        "bias": bias, "batch_first": batch_first, "bidirectional": nd == 2, "proj_size": 0,
        "dtype": np.dtype(dtype).name,
    }
    return LstmGraphInfo(cfg, sd, "lstm-nodes")


def _trace_back(name: str, producers: dict[str, Any], allowed: set[str]
                ) -> tuple[str, list[Any], bool]:
    """Follow ``name`` back through ``allowed`` ops (first input). Returns (the tensor where it
    stopped, the glue nodes passed, whether it stopped at a graph input or another LSTM)."""
    path: list[Any] = []
    seen = 0
    while seen < 1000:
        seen += 1
        node = producers.get(name)
        if node is None:
            return name, path, True
        if node.op_type == "LSTM":
            return name, path, True
        if node.op_type not in allowed:
            return name, path, False
        path.append(node)
        name = node.input[0]
    return name, path, False


def _trace_sources(name: str, producers: dict[str, Any], allowed: set[str], data: set[str]
                   ) -> set[str]:
    """Data tensors that ``name`` is a re-arrangement of, stopping at LSTM outputs."""
    out: set[str] = set()
    stack = [name]
    seen: set[str] = set()
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        node = producers.get(t)
        if node is None or node.op_type == "LSTM" or node.op_type not in allowed:
            out.add(t)
            continue
        # follow only inputs that carry data (shape/axes operands are not data)
        stack.extend(i for i in node.input if i and i in data)
    return out


def import_lstm(path_or_model: Any, *, dtype: Any = None) -> Any:
    """Build a ``pylstm.LSTM`` (or ``pylstm.LSTMCell`` for an exported cell) from ONNX.

    Args:
        path_or_model: a path, bytes, a file object or an ``onnx.ModelProto``.
        dtype: the module's dtype (default: float64 for float64 weights, else float32).

    Raises:
        OnnxImportError: the graph has nodes that cannot be mapped (they are listed).
    """
    import pylstm

    info = read_lstm_graph(path_or_model)
    cfg = info.config
    dt = np.dtype(dtype) if dtype is not None else np.dtype(cfg["dtype"])
    sd = {k: np.ascontiguousarray(v, dtype=dt) for k, v in info.state_dict.items()}
    module: pylstm.LSTMCell | pylstm.LSTM
    if cfg["kind"] == "cell":
        module = pylstm.LSTMCell(cfg["input_size"], cfg["hidden_size"], bias=cfg["bias"],
                                 dtype=dt)
    else:
        module = pylstm.LSTM(
            cfg["input_size"], cfg["hidden_size"], num_layers=cfg["num_layers"],
            bias=cfg["bias"], batch_first=cfg["batch_first"],
            bidirectional=cfg["bidirectional"], proj_size=cfg["proj_size"], dtype=dt,
        )
    module.load_state_dict(sd)
    if hasattr(module, "eval"):
        module.eval()
    return module
