"""Build ONNX graphs equivalent to ``pylstm.LSTM`` / ``pylstm.LSTMCell`` (private).

Shared by :mod:`pylstm.interop.onnx_export` (files for other runtimes) and the onnxruntime
backend (sessions for module inference). ``onnx`` is imported lazily by the callers.

Two ways to build a layer:

* the ONNX ``LSTM`` operator (fast in every runtime) with PyTorch's gates ``i, f, g, o``
  permuted to ONNX's ``i, o, f, c`` and the biases stored as ``[b_ih, b_hh]``;
* a ``Scan`` over time whose body implements the LSTM step, used for ``proj_size > 0`` (the
  ONNX operator has no projection) and for float64 (onnxruntime's LSTM kernel supports only
  float32/float16). Its weights are stored under PyTorch's own names and shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pylstm.errors import LstmValueError

DEFAULT_OPSET = 17
MIN_OPSET = 14

# PyTorch gate blocks (i, f, g, o) -> ONNX (i, o, f, c)
TORCH_TO_ONNX_GATES = (0, 3, 1, 2)
# ONNX gate blocks (i, o, f, c) -> PyTorch (i, f, g, o)
ONNX_TO_TORCH_GATES = (0, 2, 3, 1)

METADATA_KEY = "pylstm.module"


@dataclass
class ModuleSpec:
    """What the graph builder needs to know about a module (duck-typed from the module)."""

    kind: str  # "lstm" or "cell"
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    bidirectional: bool = False
    proj_size: int = 0
    dtype: Any = np.float32
    params: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def out_size(self) -> int:
        """Size of ``h`` (``proj_size`` when projecting, else ``hidden_size``)."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "bidirectional": self.bidirectional,
            "proj_size": self.proj_size,
            "dtype": np.dtype(self.dtype).name,
        }


def module_params(module: Any) -> dict[str, np.ndarray]:
    """The module's parameters as ``{pytorch_name: array}`` (the live arrays)."""
    return {name: p.data for name, p in module.named_parameters()}


def spec_of(module: Any) -> ModuleSpec:
    """Read a :class:`ModuleSpec` from an ``LSTM`` / ``LSTMCell`` module."""
    params = module_params(module)
    is_cell = "weight_ih" in params
    dtype = np.dtype(getattr(module, "dtype", None) or next(iter(params.values())).dtype)
    if is_cell:
        return ModuleSpec(
            kind="cell",
            input_size=int(module.input_size),
            hidden_size=int(module.hidden_size),
            bias=bool(getattr(module, "bias", "bias_ih" in params)),
            dtype=dtype,
            params=params,
        )
    return ModuleSpec(
        kind="lstm",
        input_size=int(module.input_size),
        hidden_size=int(module.hidden_size),
        num_layers=int(getattr(module, "num_layers", 1)),
        bias=bool(getattr(module, "bias", True)),
        batch_first=bool(getattr(module, "batch_first", False)),
        bidirectional=bool(getattr(module, "bidirectional", False)),
        proj_size=int(getattr(module, "proj_size", 0) or 0),
        dtype=dtype,
        params=params,
    )


def permute_gates(a: np.ndarray, order: tuple[int, ...], axis: int = 0) -> np.ndarray:
    """Reorder the four gate blocks of ``a`` along ``axis``."""
    blocks = np.split(a, 4, axis=axis)
    return np.concatenate([blocks[k] for k in order], axis=axis)


def _suffix(layer: int, direction: int, kind: str) -> str:
    if kind == "cell":
        return ""
    return f"_l{layer}" + ("_reverse" if direction == 1 else "")


def onnx_lstm_weights(
    spec: ModuleSpec, layer: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """ONNX ``W [D,4H,I]``, ``R [D,4H,H]``, ``B [D,8H]`` (or None) for one layer."""
    ws, rs, bs = [], [], []
    for d in range(spec.num_directions):
        sfx = _suffix(layer, d, spec.kind)
        p = spec.params
        ws.append(permute_gates(np.asarray(p["weight_ih" + sfx]), TORCH_TO_ONNX_GATES))
        rs.append(permute_gates(np.asarray(p["weight_hh" + sfx]), TORCH_TO_ONNX_GATES))
        if spec.bias:
            bs.append(
                np.concatenate(
                    [
                        permute_gates(np.asarray(p["bias_ih" + sfx]), TORCH_TO_ONNX_GATES),
                        permute_gates(np.asarray(p["bias_hh" + sfx]), TORCH_TO_ONNX_GATES),
                    ]
                )
            )
    dt = np.dtype(spec.dtype)
    w = np.ascontiguousarray(np.stack(ws), dtype=dt)
    r = np.ascontiguousarray(np.stack(rs), dtype=dt)
    b = np.ascontiguousarray(np.stack(bs), dtype=dt) if bs else None
    return w, r, b


class GraphBuilder:
    """A small helper to emit ONNX nodes with unique names."""

    def __init__(self, onnx_mod: Any, opset: int) -> None:
        self.onnx = onnx_mod
        self.h = onnx_mod.helper
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._n = 0

    def fresh(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def node(self, op: str, inputs: list[str], n_out: int = 1, name: str | None = None,
             outputs: list[str] | None = None, **attrs: Any) -> Any:
        base = name or op.lower()
        outs = outputs or [self.fresh(base) for _ in range(n_out)]
        self.nodes.append(
            self.h.make_node(op, inputs, outs, name=self.fresh(op), **attrs)
        )
        return outs[0] if len(outs) == 1 else outs

    def const(self, value: np.ndarray, base: str = "const", name: str | None = None) -> str:
        nm = name or self.fresh(base)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), nm))
        return nm

    def ints(self, values: list[int], base: str = "ints") -> str:
        return self.const(np.asarray(values, dtype=np.int64), base)


def _np_to_onnx_type(onnx_mod: Any, dtype: Any) -> int:
    return onnx_mod.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def use_lstm_op(spec: ModuleSpec) -> bool:
    """Whether the ``LSTM`` operator can express ``spec`` for onnxruntime."""
    return spec.proj_size == 0 and np.dtype(spec.dtype) != np.float64


def build_module_model(
    spec: ModuleSpec,
    *,
    opset: int | None = None,
    initial_state: bool = False,
    lengths: bool = False,
    lstm_op: bool | None = None,
    graph_name: str = "pylstm_lstm",
) -> Any:
    """An ``onnx.ModelProto`` computing ``module(x, hx, lengths)``.

    Inputs: ``input`` (``[seq, batch, input_size]``, or batch first), then ``h0``, ``c0``
    (``[num_layers*D, batch, H_out]`` / ``[..., hidden_size]``) when ``initial_state``, then
    ``lengths`` (int64 ``[batch]``) when ``lengths``. Outputs: ``output``, ``h_n``, ``c_n``.
    For a cell: inputs ``input [batch, input_size]`` (+ ``h0``, ``c0`` ``[batch, H]``), outputs
    ``h``, ``c``. ``seq`` and ``batch`` are dynamic axes.
    """
    import onnx

    opset = DEFAULT_OPSET if opset is None else int(opset)
    max_opset = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= max_opset:
        raise LstmValueError(f"opset: expected {MIN_OPSET}..{max_opset}, got {opset}")
    if lstm_op is None:
        lstm_op = use_lstm_op(spec)
    if lstm_op and spec.proj_size > 0:
        raise LstmValueError(
            "lstm_op=True: the ONNX LSTM operator has no projection (proj_size > 0); "
            "the projected LSTM is exported as a Scan graph instead"
        )
    g = GraphBuilder(onnx, opset)
    h = onnx.helper
    et = _np_to_onnx_type(onnx, spec.dtype)
    D, H, P = spec.num_directions, spec.hidden_size, spec.out_size
    L = spec.num_layers

    graph_inputs = []
    graph_outputs = []
    if spec.kind == "cell":
        graph_inputs.append(h.make_tensor_value_info("input", et, ["batch", spec.input_size]))
        x = g.node("Unsqueeze", ["input", g.ints([0], "axes")], name="x_seq")
        h0 = c0 = None
        if initial_state:
            graph_inputs.append(h.make_tensor_value_info("h0", et, ["batch", H]))
            graph_inputs.append(h.make_tensor_value_info("c0", et, ["batch", H]))
            h0 = g.node("Unsqueeze", ["h0", g.ints([0], "axes")])
            c0 = g.node("Unsqueeze", ["c0", g.ints([0], "axes")])
        _y, yh, yc = _layer(g, spec, 0, x, h0, c0, None, None, lstm_op, et)
        g.node("Squeeze", [yh, g.ints([0], "axes")], outputs=["h"])
        g.node("Squeeze", [yc, g.ints([0], "axes")], outputs=["c"])
        graph_outputs.append(h.make_tensor_value_info("h", et, ["batch", H]))
        graph_outputs.append(h.make_tensor_value_info("c", et, ["batch", H]))
    else:
        in_shape: list[str | int] = ["batch", "seq", spec.input_size] if spec.batch_first else [
            "seq", "batch", spec.input_size]
        graph_inputs.append(h.make_tensor_value_info("input", et, in_shape))
        x = "input"
        if spec.batch_first:
            x = g.node("Transpose", [x], perm=[1, 0, 2], name="x_time_major")
        if initial_state:
            graph_inputs.append(h.make_tensor_value_info("h0", et, [L * D, "batch", P]))
            graph_inputs.append(h.make_tensor_value_info("c0", et, [L * D, "batch", H]))
        seq_i32 = seq_i64 = None
        if lengths:
            graph_inputs.append(h.make_tensor_value_info("lengths", onnx.TensorProto.INT64,
                                                         ["batch"]))
            seq_i64 = "lengths"
            seq_i32 = g.node("Cast", ["lengths"], to=onnx.TensorProto.INT32, name="seq_lens")
        yhs, ycs = [], []
        for layer in range(L):
            h0 = c0 = None
            if initial_state:
                st, en = g.ints([layer * D], "start"), g.ints([(layer + 1) * D], "end")
                ax = g.ints([0], "axes")
                h0 = g.node("Slice", ["h0", st, en, ax], name=f"h0_l{layer}")
                c0 = g.node("Slice", ["c0", st, en, ax], name=f"c0_l{layer}")
            x, yh, yc = _layer(g, spec, layer, x, h0, c0, seq_i32, seq_i64, lstm_op, et)
            yhs.append(yh)
            ycs.append(yc)
        if spec.batch_first:
            g.node("Transpose", [x], perm=[1, 0, 2], outputs=["output"])
        else:
            g.node("Identity", [x], outputs=["output"])
        g.node("Concat", yhs, outputs=["h_n"], axis=0)
        g.node("Concat", ycs, outputs=["c_n"], axis=0)
        out_shape: list[str | int] = (
            ["batch", "seq", D * P] if spec.batch_first else ["seq", "batch", D * P])
        graph_outputs.append(h.make_tensor_value_info("output", et, out_shape))
        graph_outputs.append(h.make_tensor_value_info("h_n", et, [L * D, "batch", P]))
        graph_outputs.append(h.make_tensor_value_info("c_n", et, [L * D, "batch", H]))

    graph = h.make_graph(g.nodes, graph_name, graph_inputs, graph_outputs, g.initializers)
    opsets = [h.make_opsetid("", opset)]
    model = h.make_model(graph, opset_imports=opsets, producer_name="pylstm")
    model.ir_version = h.find_min_ir_version_for(opsets)
    cfg = spec.config()
    cfg["graph"] = "lstm_op" if lstm_op else "scan"
    h.set_model_props(model, {METADATA_KEY: json.dumps(cfg, sort_keys=True)})
    return model


def _layer(
    g: GraphBuilder, spec: ModuleSpec, layer: int, x: str, h0: str | None, c0: str | None,
    seq_i32: str | None, seq_i64: str | None, lstm_op: bool, et: int,
) -> tuple[str, str, str]:
    """One layer, both directions. Returns (``x_next [T,B,D*P]``, ``Yh [D,B,P]``,
    ``Yc [D,B,H]``)."""
    D, H = spec.num_directions, spec.hidden_size
    tag = f"l{layer}" if spec.kind == "lstm" else "cell"
    if lstm_op:
        w, r, b = onnx_lstm_weights(spec, layer)
        ins = [x, g.const(w, name=f"W_{tag}"), g.const(r, name=f"R_{tag}"),
               g.const(b, name=f"B_{tag}") if b is not None else "",
               seq_i32 or "", h0 or "", c0 or ""]
        while ins and ins[-1] == "":
            ins.pop()
        y, yh, yc = g.node(
            "LSTM", ins, n_out=3, name=f"lstm_{tag}", hidden_size=H,
            direction="bidirectional" if D == 2 else "forward",
        )
        if D == 1:
            x_next = g.node("Squeeze", [y, g.ints([1], "axes")], name=f"y_{tag}")
        else:
            t = g.node("Transpose", [y], perm=[0, 2, 1, 3])
            x_next = g.node("Reshape", [t, g.ints([0, 0, -1], "shape")], name=f"y_{tag}")
        return x_next, yh, yc
    # Scan implementation
    outs_y, outs_h, outs_c = [], [], []
    mask = None
    if seq_i64 is not None:
        shape = g.node("Shape", [x])
        t_len = g.node("Gather", [shape, g.const(np.asarray(0, np.int64), "zero")], axis=0)
        rng = g.node("Range", [g.const(np.asarray(0, np.int64), "zero"), t_len,
                               g.const(np.asarray(1, np.int64), "one")])
        rng2 = g.node("Unsqueeze", [rng, g.ints([1], "axes")])
        lens2 = g.node("Unsqueeze", [seq_i64, g.ints([0], "axes")])
        less = g.node("Less", [rng2, lens2])  # [T, B] bool
        mask = g.node("Unsqueeze", [less, g.ints([2], "axes")], name=f"mask_{tag}")
    for d in range(D):
        sfx = _suffix(layer, d, spec.kind)
        yd, hd, cd = _scan_direction(g, spec, x, sfx, d, h0, c0, mask, et)
        outs_y.append(yd)
        outs_h.append(hd)
        outs_c.append(cd)
    if D == 1:
        return outs_y[0], outs_h[0], outs_c[0]
    x_next = g.node("Concat", outs_y, axis=2, name=f"y_{tag}")
    yh = g.node("Concat", outs_h, axis=0)
    yc = g.node("Concat", outs_c, axis=0)
    return x_next, yh, yc


def _scan_direction(
    g: GraphBuilder, spec: ModuleSpec, x: str, sfx: str, d: int, h0: str | None,
    c0: str | None, mask: str | None, et: int,
) -> tuple[str, str, str]:
    """One direction of one layer as a ``Scan``; returns ``(Y [T,B,P], Yh [1,B,P],
    Yc [1,B,H])``."""
    onnx = g.onnx
    h = g.h
    H, P = spec.hidden_size, spec.out_size
    dt = np.dtype(spec.dtype)
    p = spec.params
    w_ih = g.const(np.asarray(p["weight_ih" + sfx], dt), name="weight_ih" + sfx)
    w_hh = g.const(np.asarray(p["weight_hh" + sfx], dt), name="weight_hh" + sfx)
    w_ih_t = g.node("Transpose", [w_ih], perm=[1, 0])
    w_hh_t = g.node("Transpose", [w_hh], perm=[1, 0], name="w_hh_t" + sfx)
    xw = g.node("MatMul", [x, w_ih_t])  # [T, B, 4H]
    if spec.bias:
        b_ih = g.const(np.asarray(p["bias_ih" + sfx], dt), name="bias_ih" + sfx)
        b_hh = g.const(np.asarray(p["bias_hh" + sfx], dt), name="bias_hh" + sfx)
        xw = g.node("Add", [xw, g.node("Add", [b_ih, b_hh])])
    w_hr_t = None
    if spec.proj_size > 0:
        w_hr = g.const(np.asarray(p["weight_hr" + sfx], dt), name="weight_hr" + sfx)
        w_hr_t = g.node("Transpose", [w_hr], perm=[1, 0], name="w_hr_t" + sfx)
    # initial states [B, P] / [B, H]
    if h0 is not None:
        assert c0 is not None  # h0 and c0 are always given together
        idx = g.const(np.asarray(d, np.int64), "dir")
        h_init = g.node("Gather", [h0, idx], axis=0)
        c_init = g.node("Gather", [c0, idx], axis=0)
    else:
        shape = g.node("Shape", [x])
        bdim = g.node("Slice", [shape, g.ints([1]), g.ints([2])])
        zero = h.make_tensor("zero", et, [1], [0])
        h_init = g.node("ConstantOfShape", [g.node("Concat", [bdim, g.ints([P])], axis=0)],
                        value=zero)
        c_init = g.node("ConstantOfShape", [g.node("Concat", [bdim, g.ints([H])], axis=0)],
                        value=zero)

    # body
    bn: list[Any] = []
    bi: list[Any] = []

    def bnode(op: str, ins: list[str], n_out: int = 1, **attrs: Any) -> Any:
        outs = [g.fresh(f"s_{op.lower()}") for _ in range(n_out)]
        bn.append(h.make_node(op, ins, outs, name=g.fresh("s_" + op), **attrs))
        return outs[0] if n_out == 1 else outs

    hp, cp, xt = g.fresh("h_prev"), g.fresh("c_prev"), g.fresh("xw_t")
    bi += [h.make_tensor_value_info(hp, et, ["batch", P]),
           h.make_tensor_value_info(cp, et, ["batch", H]),
           h.make_tensor_value_info(xt, et, ["batch", 4 * H])]
    mt = None
    if mask is not None:
        mt = g.fresh("m_t")
        bi.append(h.make_tensor_value_info(mt, onnx.TensorProto.BOOL, ["batch", 1]))
    gates = bnode("Add", [xt, bnode("MatMul", [hp, w_hh_t])])
    split = g.ints([H, H, H, H], "split")
    gi, gf, gg, go = bnode("Split", [gates, split], n_out=4, axis=1)
    i = bnode("Sigmoid", [gi])
    f = bnode("Sigmoid", [gf])
    gt = bnode("Tanh", [gg])
    o = bnode("Sigmoid", [go])
    c_new = bnode("Add", [bnode("Mul", [f, cp]), bnode("Mul", [i, gt])])
    h_new = bnode("Mul", [o, bnode("Tanh", [c_new])])
    if w_hr_t is not None:
        h_new = bnode("MatMul", [h_new, w_hr_t])
    ho, co, yo = g.fresh("h_out"), g.fresh("c_out"), g.fresh("y_out")
    if mt is None:
        bn.append(h.make_node("Identity", [h_new], [ho]))
        bn.append(h.make_node("Identity", [c_new], [co]))
        bn.append(h.make_node("Identity", [h_new], [yo]))
    else:
        zero_c = g.const(np.zeros((), dt), "zero")
        bn.append(h.make_node("Where", [mt, h_new, hp], [ho]))
        bn.append(h.make_node("Where", [mt, c_new, cp], [co]))
        bn.append(h.make_node("Where", [mt, h_new, zero_c], [yo]))
    bo = [h.make_tensor_value_info(ho, et, ["batch", P]),
          h.make_tensor_value_info(co, et, ["batch", H]),
          h.make_tensor_value_info(yo, et, ["batch", P])]
    body = h.make_graph(bn, g.fresh("lstm_step"), bi, bo)
    scan_ins = [h_init, c_init, xw] + ([mask] if mask is not None else [])
    n_scan = 1 if mask is None else 2
    h_last, c_last, ys = g.node(
        "Scan", scan_ins, n_out=3, name="scan" + sfx, body=body, num_scan_inputs=n_scan,
        scan_input_directions=[d] * n_scan, scan_output_directions=[d],
    )
    yh = g.node("Unsqueeze", [h_last, g.ints([0], "axes")])
    yc = g.node("Unsqueeze", [c_last, g.ints([0], "axes")])
    return ys, yh, yc
