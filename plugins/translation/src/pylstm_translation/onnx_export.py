"""ONNX export of a trained :class:`~pylstm_translation.predictor.Translator`: the encoder and
one decoder step as two graphs, and :class:`OnnxTranslator`, the small runner that searches
with them on onnxruntime (the same :mod:`pylstm.decode` search as the Rust path).

``encoder.onnx``: ``src`` int64 ``[B, S]``, ``src_len`` int64 ``[B]`` -> ``keys`` ``[B, S, H]``,
``h0``/``c0`` ``[layers, B, H]``.
``decoder_step.onnx``: ``token`` int64 ``[N]``, ``h``/``c`` ``[layers, N, H]``, ``feed``
``[N, H]``, ``keys`` ``[N, S, H]``, ``mask`` bool ``[N, S]`` -> ``log_probs`` ``[N, V]``,
``h_out``, ``c_out``, ``feed_out``, ``weights`` ``[N, S]``.
The folder also holds the tokenizers and ``translator.json`` (the model config).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pylstm.data import PAD_ID, Tokenizer, pad
from pylstm.interop.graph_builder import GraphBuilder, require_onnx
from pylstm.plugins import TaskError

from .model import TranslatorConfig
from .predictor import SRC_TOKENIZER, TGT_TOKENIZER, Translator
from .search import max_target_len, search

__all__ = ["OnnxTranslator", "check_export", "export_translator"]

F32 = np.float32


def _encoder(tr: Translator) -> Any:
    net, cfg = tr.net, tr.config
    g = GraphBuilder()
    T, info = g.onnx.TensorProto, g.h.make_tensor_value_info
    emb = g.op("Gather", [g.const(net.src_embed.weight.data.astype(F32), "src_embed"), "src"])
    keys, h_n, c_n = g.lstm(net.encoder, "enc/", emb, None, None, "src_len")
    g.op("Identity", [keys], out="keys")
    lay, half = cfg.layers, cfg.hidden // 2
    for state, out in ((h_n, "h0"), (c_n, "c0")):  # [2L, B, H/2] -> [L, B, H], fwd | bwd
        s = g.op("Reshape", [state, g.const(np.array([lay, 2, -1, half], np.int64))])
        s = g.op("Transpose", [s], perm=[0, 2, 1, 3])
        g.op("Reshape", [s, g.const(np.array([lay, -1, cfg.hidden], np.int64))], out=out)
    hid = cfg.hidden
    return g.model([info("src", T.INT64, ["B", "S"]), info("src_len", T.INT64, ["B"])],
                   [info("keys", T.FLOAT, ["B", "S", hid]),
                    info("h0", T.FLOAT, [lay, "B", hid]), info("c0", T.FLOAT, [lay, "B", hid])],
                   "translation_encoder")


def _attention(g: GraphBuilder, attn: Any, query: str) -> tuple[str, str]:
    """``(context [N, H], weights [N, S])`` of ``query [N, H]`` over ``keys``/``mask``."""
    one = g.const(np.array([1], np.int64))
    if attn.score in ("dot", "general"):
        q = query if attn.score == "dot" else g.op(
            "MatMul", [query, g.const(attn.weight.data.astype(F32))])
        s = g.op("MatMul", ["keys", g.op("Unsqueeze", [q, g.const(np.array([2], np.int64))])])
        s = g.op("Squeeze", [s, g.const(np.array([2], np.int64))])
    else:
        pq = g.op("MatMul", [query, g.const(attn.query_weight.data.T.astype(F32))])
        pk = g.op("MatMul", ["keys", g.const(attn.key_weight.data.T.astype(F32))])
        if attn.use_bias:
            pk = g.op("Add", [pk, g.const(attn.bias.data.astype(F32))])
        hid = g.op("Tanh", [g.op("Add", [pk, g.op("Unsqueeze", [pq, one])])])
        s = g.op("MatMul", [hid, g.const(attn.v.data.astype(F32))])
    if attn._scale() != 1.0:
        s = g.op("Mul", [s, g.const(np.array(attn._scale(), F32))])
    s = g.op("Where", ["mask", s, g.const(np.array(-np.inf, F32))])
    w = g.op("Softmax", [s], axis=-1)
    ctx = g.op("MatMul", [g.op("Unsqueeze", [w, one]), "keys"])
    return g.op("Squeeze", [ctx, one]), w


def _decoder_step(tr: Translator) -> Any:
    net, cfg = tr.net, tr.config
    g = GraphBuilder()
    T, info = g.onnx.TensorProto, g.h.make_tensor_value_info
    hid, lay = cfg.hidden, cfg.layers
    emb = g.op("Gather", [g.const(net.tgt_embed.weight.data.astype(F32), "tgt_embed"), "token"])
    one = g.const(np.array([1], np.int64))
    context = weights = None
    if cfg.attention == "additive":
        top = g.op("Gather", ["h", g.const(np.array(lay - 1, np.int64))], axis=0)
        context, weights = _attention(g, net.attn, top)
        x = g.op("Concat", [emb, context], axis=1)
    elif cfg.input_feeding:
        x = g.op("Concat", [emb, "feed"], axis=1)
    else:
        x = emb
    y, h_n, c_n = g.lstm(net.decoder, "dec/", g.op("Unsqueeze", [x, one]), "h", "c", None)
    query = g.op("Squeeze", [y, one])
    if cfg.attention == "none":
        cat = query
        weights = g.op("ReduceSum", ["keys", g.const(np.array([2], np.int64))],
                       keepdims=0)  # a placeholder [N, S] output: no attention
        weights = g.op("Mul", [weights, g.const(np.array(0, F32))])
    else:
        if cfg.attention != "additive":
            context, weights = _attention(g, net.attn, query)
        cat = g.op("Concat", [query, context], axis=1)
    att = g.op("Tanh", [g.op("MatMul", [cat, g.const(net.combine.weight.data.T.astype(F32))])],
               out="feed_out")
    logits = g.op("Add", [g.op("MatMul", [att, g.const(net.out.weight.data.T.astype(F32))]),
                          g.const(net.out.bias.data.astype(F32))])
    g.op("LogSoftmax", [logits], out="log_probs", axis=-1)
    g.op("Identity", [h_n], out="h_out")
    g.op("Identity", [c_n], out="c_out")
    g.op("Identity", [weights], out="weights")
    f = T.FLOAT
    return g.model(
        [info("token", T.INT64, ["N"]), info("h", f, [lay, "N", hid]),
         info("c", f, [lay, "N", hid]), info("feed", f, ["N", hid]),
         info("keys", f, ["N", "S", hid]), info("mask", T.BOOL, ["N", "S"])],
        [info("log_probs", f, ["N", cfg.tgt_vocab]), info("h_out", f, [lay, "N", hid]),
         info("c_out", f, [lay, "N", hid]), info("feed_out", f, ["N", hid]),
         info("weights", f, ["N", "S"])], "translation_decoder_step", "pylstm-translation")


def export_translator(tr: Translator, path: Path) -> Path:
    """Write the folder (``path`` without its ``.onnx`` suffix); returns it."""
    onnx = require_onnx()
    folder = Path(path)
    folder = folder.with_suffix("") if folder.suffix == ".onnx" else folder
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(_encoder(tr), str(folder / "encoder.onnx"))
    onnx.save(_decoder_step(tr), str(folder / "decoder_step.onnx"))
    tr.src_tokenizer.save(folder / SRC_TOKENIZER)
    tr.tgt_tokenizer.save(folder / TGT_TOKENIZER)
    (folder / "translator.json").write_text(json.dumps(tr.config.to_json(), indent=2) + "\n")
    return folder


class OnnxTranslator:
    """Translate with an exported folder on onnxruntime (``providers``: its execution
    providers, default CPU); the same search as :meth:`Translator.translate`."""

    def __init__(self, folder: str | Path, providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        for name in ("encoder.onnx", "decoder_step.onnx", "translator.json", SRC_TOKENIZER,
                     TGT_TOKENIZER):
            if not (folder / name).is_file():
                raise TaskError(f"{folder}: expected an exported translator folder, "
                                f"{name} is missing")
        prov = list(providers or ["CPUExecutionProvider"])
        self.encoder = ort.InferenceSession(str(folder / "encoder.onnx"), providers=prov)
        self.step = ort.InferenceSession(str(folder / "decoder_step.onnx"), providers=prov)
        self.config = TranslatorConfig.from_json(
            json.loads((folder / "translator.json").read_text()), str(folder / "translator.json"))
        self.src_tokenizer = Tokenizer.load(folder / SRC_TOKENIZER)
        self.tgt_tokenizer = Tokenizer.load(folder / TGT_TOKENIZER)

    def translate_ids(self, sources: Sequence[Sequence[int]], *, beam: int = 5,
                      length_penalty: float = 1.0) -> list[list[int]]:
        """Target ids per source id sequence (no BOS/EOS)."""
        out: list[list[int]] = []
        for start in range(0, len(sources), 64):
            out.extend(self._batch([list(s) for s in sources[start:start + 64]], beam,
                                   length_penalty))
        return out

    def translate(self, sentences: Sequence[str], *, beam: int = 5,
                  length_penalty: float = 1.0) -> list[str]:
        """The translation of each sentence (empty ones stay empty)."""
        texts = [s.strip() for s in sentences]
        todo = [i for i, s in enumerate(texts) if s]
        ids = self.translate_ids(self.src_tokenizer.encode_batch([texts[i] for i in todo]),
                                 beam=beam, length_penalty=length_penalty) if todo else []
        out = [""] * len(texts)
        for i, t in zip(todo, ids, strict=True):
            out[i] = self.tgt_tokenizer.decode(t)
        return out

    def _batch(self, sources: list[list[int]], beam: int, length_penalty: float
               ) -> list[list[int]]:
        p = pad(sources, PAD_ID, add_eos=True)
        keys, h0, c0 = self.encoder.run(None, {"src": p.ids.astype(np.int64),
                                               "src_len": p.lengths.astype(np.int64)})
        b = len(sources)
        state = {"keys": keys, "mask": p.mask, "h": h0.transpose(1, 0, 2),
                 "c": c0.transpose(1, 0, 2), "feed": np.zeros((b, self.config.hidden), F32)}

        def step(tokens: np.ndarray, st: dict[str, Any]) -> tuple:
            logp, h, c, feed, _ = self.step.run(None, {
                "token": tokens.astype(np.int64),
                "h": np.ascontiguousarray(st["h"].transpose(1, 0, 2)),
                "c": np.ascontiguousarray(st["c"].transpose(1, 0, 2)), "feed": st["feed"],
                "keys": st["keys"], "mask": st["mask"]})
            new = {"keys": st["keys"], "mask": st["mask"], "h": h.transpose(1, 0, 2),
                   "c": c.transpose(1, 0, 2), "feed": feed}
            return logp.astype(np.float64), new

        hyps = search(step, state, b, [max_target_len(int(n)) for n in p.lengths], beam,
                      length_penalty)
        return [list(h.tokens) for h in hyps]


def check_export(tr: Translator, folder: Path, sentences: Sequence[str] | None = None
                 ) -> dict[str, float]:
    """Share of sentences onnxruntime translates exactly as pylstm, greedy and beam 5."""
    runner = OnnxTranslator(folder)
    if sentences is None:
        rng = np.random.default_rng(0)  # subword sequences when no text is given
        vocab = tr.config.src_vocab
        ids = [rng.integers(4, vocab, int(n)).tolist() for n in rng.integers(3, 12, 16)]
        sentences = [tr.src_tokenizer.decode(s) for s in ids]
    result = {}
    for beam in (1, 5):
        ours = tr.translate(list(sentences), beam=beam)
        theirs = runner.translate(list(sentences), beam=beam)
        result[f"beam{beam}"] = float(np.mean([a == b for a, b in zip(ours, theirs,
                                                                        strict=True)]))
    return result
