"""ONNX export of trained DMN+ models, and :class:`OnnxDMN`, the runner that answers with them
on onnxruntime.

One graph per model (``dmn-qa1.onnx``, ... or ``dmn-joint.onnx``) with inputs ``facts`` int64
``[B, F, W]`` (0: padding), ``n_facts`` int64 ``[B]``, ``question`` int64 ``[B, Q]``, ``q_len``
int64 ``[B]`` and outputs ``logits`` ``[B, L, V]`` and ``gates`` ``[passes, B, F]``. The
positional encoding is computed in the graph from the word mask; the input-fusion and question
LSTMs are pylstm's own export of the modules (ONNX ``LSTM`` with ``sequence_lens``); each pass's
attention LSTM is a ``Scan`` over the facts whose body is one LSTM-cell step with the gated
update. Each model's vocabulary and settings are written beside it (``dmn-qa1.json``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pylstm.interop.graph_builder import GraphBuilder, require_onnx
from pylstm.plugins import TaskError
from pylstm_dmn.babi import TaskData

from .predictor import DMNPredictor, TrainedModel
from .training import batches_for
from .vocab import Encoded, Vocab, make_batch

__all__ = ["OnnxDMN", "check_export", "export_model", "export_predictor"]

F32 = np.float32


def _cell_body(g: GraphBuilder, cell: Any, k: int) -> Any:
    """The Scan body of pass ``k``: one LSTM-cell step on fact ``f`` with the update scaled by
    the gate ``g``: ``h' = h + g (h~ - h)``, ``c' = c + g (c~ - c)``."""
    h = g.h
    p = f"p{k}_"
    d = cell.hidden_size
    w = g.const(cell.weight_ih.data.T.astype(F32), f"{p}cell_w")
    r = g.const(cell.weight_hh.data.T.astype(F32), f"{p}cell_r")
    b = g.const((cell.bias_ih.data + cell.bias_hh.data).astype(F32), f"{p}cell_b")
    nodes = []

    def op(kind: str, inputs: list[str], out: str, **attrs: Any) -> str:
        nodes.append(h.make_node(kind, inputs, [p + out], name=f"{p}{out}", **attrs))
        return p + out

    z = op("Add", [op("Add", [op("MatMul", [p + "f", w], "xw"), op("MatMul", [p + "h", r],
                                                                     "hr")], "zz"), b], "z")
    i, f, c_in, o = (p + n for n in ("gi", "gf", "gc", "go"))
    nodes.append(h.make_node("Split", [z, g.const(np.array([d] * 4, np.int64), f"{p}split")],
                             [i, f, c_in, o], name=f"{p}split_node", axis=1))
    cn = op("Add", [op("Mul", [op("Sigmoid", [f], "sf"), p + "c"], "fc"),
                    op("Mul", [op("Sigmoid", [i], "si"), op("Tanh", [c_in], "tc")], "ic")], "cn")
    hn = op("Mul", [op("Sigmoid", [o], "so"), op("Tanh", [cn], "tcn")], "hn")
    h_out = op("Add", [p + "h", op("Mul", [p + "g", op("Sub", [hn, p + "h"], "dh")], "gdh")],
               "h_out")
    c_out = op("Add", [p + "c", op("Mul", [p + "g", op("Sub", [cn, p + "c"], "dc")], "gdc")],
               "c_out")
    nodes.append(h.make_node("Identity", [h_out], [p + "h_scan"], name=f"{p}h_scan"))
    T, info = g.onnx.TensorProto.FLOAT, h.make_tensor_value_info
    return h.make_graph(
        nodes, f"attention_lstm_pass{k}",
        [info(p + "h", T, ["B", d]), info(p + "c", T, ["B", d]), info(p + "f", T, ["B", d]),
         info(p + "g", T, ["B", 1])],
        [info(h_out, T, ["B", d]), info(c_out, T, ["B", d]), info(p + "h_scan", T, ["B", d])])


def export_model(model: TrainedModel) -> Any:
    """The ``onnx.ModelProto`` of one trained DMN+ (see the module docstring)."""
    net, cfg = model.net, model.net.cfg
    d = cfg.dim
    g = GraphBuilder()
    T, info = g.onnx.TensorProto, g.h.make_tensor_value_info
    # positional encoding from the word mask
    mask = g.op("Cast", [g.op("Not", [g.op("Equal", ["facts", g.i64(0)])])], to=T.FLOAT)
    m = g.op("Max", [g.op("ReduceSum", [mask, g.i64(2)], keepdims=1),
                     g.const(np.array(1, F32))])
    j = g.op("CumSum", [g.op("Add", [g.op("Mul", [mask, g.const(np.array(0, F32))]),
                                     g.const(np.array(1, F32))]), g.i64(2)])
    j_m = g.op("Unsqueeze", [g.op("Div", [j, m]), g.i64(3)])  # [B, F, W, 1]
    dd = g.const((np.arange(1, d + 1, dtype=np.float64) / d).astype(F32))
    one = g.const(np.array(1, F32))
    w = g.op("Sub", [g.op("Sub", [one, j_m]),
                     g.op("Mul", [dd, g.op("Sub", [one, g.op("Mul", [g.const(
                         np.array(2, F32)), j_m])])])])
    w = g.op("Mul", [w, g.op("Unsqueeze", [mask, g.i64(3)])])
    emb_w = g.const(net.embed.weight.data.astype(F32), "embed")
    sent = g.op("ReduceSum", [g.op("Mul", [g.op("Gather", [emb_w, "facts"]), w]), g.i64(2)],
                keepdims=0)
    y, _, _ = g.lstm(net.fusion, "fusion/", sent, lengths="n_facts")
    f = g.op("Add", [g.op("Slice", [y, g.i64(0), g.i64(d), g.i64(2)]),
                     g.op("Slice", [y, g.i64(d), g.i64(2 * d), g.i64(2)])])
    _, qh, _ = g.lstm(net.question, "question/", g.op("Gather", [emb_w, "question"]),
                       lengths="q_len")
    q = g.op("Squeeze", [qh, g.i64(0)])
    # fact mask [B, F]
    n_f = g.op("Gather", [g.op("Shape", ["facts"]), g.i64(1)])
    rng = g.op("Range", [g.op("Squeeze", [g.i64(0)]), g.op("Squeeze", [n_f]),
                         g.op("Squeeze", [g.i64(1)])])
    fmask = g.op("Less", [g.op("Unsqueeze", [rng, g.i64(0)]),
                          g.op("Unsqueeze", ["n_facts", g.i64(1)])])
    b_dim = g.op("Gather", [g.op("Shape", ["facts"]), g.i64(0)])
    zeros = g.op("Expand", [g.const(np.zeros((1, d), F32)),
                            g.op("Concat", [b_dim, g.i64(d)], axis=0)])
    q1 = g.op("Unsqueeze", [q, g.i64(1)])
    mem = q
    gates = []
    for k in range(cfg.passes):
        m1 = g.op("Unsqueeze", [mem, g.i64(1)])
        z = g.op("Concat", [g.op("Mul", [f, q1]), g.op("Mul", [f, m1]),
                            g.op("Abs", [g.op("Sub", [f, q1])]),
                            g.op("Abs", [g.op("Sub", [f, m1])])], axis=2)
        s = g.linear(g.op("Tanh", [g.linear(z, net.gate1)]), net.gate2)
        s = g.op("Squeeze", [s, g.i64(2)])
        s = g.op("Where", [fmask, s, g.const(np.array(-np.inf, F32))])
        gate = g.op("Softmax", [s], axis=-1)
        gates.append(g.op("Unsqueeze", [gate, g.i64(0)]))
        body = _cell_body(g, net.episode, k)
        outs = [f"p{k}_episode", f"p{k}_c_final", f"p{k}_h_all"]
        g.nodes.append(g.h.make_node(
            "Scan", [zeros, zeros, f, g.op("Unsqueeze", [gate, g.i64(2)])], outs,
            name=f"scan{k}", body=body, num_scan_inputs=2, scan_input_axes=[1, 1]))
        upd = getattr(net, f"update{k}")
        mem = g.op("Relu", [g.linear(g.op("Concat", [mem, outs[0], q], axis=1), upd)])
    read = g.op("Concat", [mem, q, g.op("Mul", [mem, q]), g.op("Abs", [g.op("Sub", [mem, q])])],
                axis=1)
    logits = g.linear(read, net.answer)
    g.op("Reshape", [logits, g.i64(0, cfg.answer_len, cfg.vocab)], out="logits")
    g.op("Concat", gates, out="gates", axis=0)
    i64 = T.INT64
    return g.model(
        [info("facts", i64, ["B", "F", "W"]), info("n_facts", i64, ["B"]),
         info("question", i64, ["B", "Q"]), info("q_len", i64, ["B"])],
        [info("logits", T.FLOAT, ["B", cfg.answer_len, cfg.vocab]),
         info("gates", T.FLOAT, [cfg.passes, "B", "F"])], f"dmn_{model.key}", "pylstm-dmn")


def export_predictor(predictor: DMNPredictor, path: Path) -> Path:
    """Write every model into the folder ``path`` names (its ``.onnx`` suffix dropped)."""
    onnx = require_onnx()
    folder = Path(path)
    folder = folder.with_suffix("") if folder.suffix == ".onnx" else folder
    folder.mkdir(parents=True, exist_ok=True)
    for key, model in predictor.models.items():
        onnx.save(export_model(model), str(folder / f"dmn-{key}.onnx"))
        meta = {"vocab": model.vocab.to_json(), "tasks": list(model.tasks),
                "max_facts": model.max_facts, "answer_len": model.answer_len,
                "passes": model.net.cfg.passes}
        (folder / f"dmn-{key}.json").write_text(json.dumps(meta) + "\n", encoding="utf-8")
    return folder


class OnnxDMN:
    """One exported model on onnxruntime (``providers``: default CPU)."""

    def __init__(self, folder: str | Path, key: str,
                 providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        for name in (f"dmn-{key}.onnx", f"dmn-{key}.json"):
            if not (folder / name).is_file():
                raise TaskError(f"{folder}: expected an exported dmn folder, {name} is missing")
        self.session = ort.InferenceSession(str(folder / f"dmn-{key}.onnx"),
                                            providers=list(providers or ["CPUExecutionProvider"]))
        meta = json.loads((folder / f"dmn-{key}.json").read_text(encoding="utf-8"))
        self.vocab = Vocab.from_json(meta["vocab"], str(folder / f"dmn-{key}.json"))
        self.meta = meta

    def run(self, samples: Sequence[Encoded], batch_size: int = 128
            ) -> tuple[np.ndarray, list[list[np.ndarray]]]:
        """``(answer ids [N, L], gates per sample per pass)``, as
        :meth:`DMNPredictor.predict_encoded`."""
        ids = np.zeros((len(samples), int(self.meta["answer_len"])), np.int64)
        gates: list[list[np.ndarray]] = [[] for _ in samples]
        for idx in batches_for(samples, batch_size, shuffle=False):
            b = make_batch([samples[i] for i in idx])
            logits, g = self.session.run(None, {"facts": b.facts, "n_facts": b.n_facts,
                                                "question": b.question, "q_len": b.q_len})
            ids[idx] = logits.argmax(axis=-1)
            for j, i in enumerate(idx):
                gates[i] = [g[k, j, :b.n_facts[j]] for k in range(g.shape[0])]
        return ids, gates


def check_export(predictor: DMNPredictor, folder: Path,
                 data: Mapping[int, TaskData]) -> dict[str, Any]:
    """Per model: the share of test questions onnxruntime answers as pylstm does, and the
    largest difference of their attention gates."""
    out: dict[str, Any] = {}
    for key, model in predictor.models.items():
        samples = [s for t in model.tasks if t in data for s in data[t].test]
        if not samples:
            continue
        enc = model.encode(samples, f"{key} test data")
        ours, our_gates = predictor.predict_encoded(model, enc)
        theirs, their_gates = OnnxDMN(folder, key).run(enc)
        diff = max(float(np.max(np.abs(a - b))) for x, y in zip(our_gates, their_gates,
                                                                 strict=True)
                   for a, b in zip(x, y, strict=True))
        out[key] = {"same_answer": float((ours == theirs).all(axis=1).mean()),
                    "max_gate_diff": diff, "questions": len(enc)}
    return out
