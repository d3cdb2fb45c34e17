"""ONNX export of a trained :class:`~pylstm_captioning.predictor.ImageCaptioner`: the image
encoder, the decoder's initial state and one decoder step as three graphs, and
:class:`OnnxCaptioner`, the small runner that captions images with them on onnxruntime (the
same :mod:`pylstm.decode` search as the Rust path).

``encoder.onnx``: the EfficientNet-Lite0 graph the plugin runs anyway: ``image`` float32
``[N, 3, 224, 224]`` (preprocessed) -> ``grid`` ``[N, 49, 1280]``, ``mean``, ``logits``.
``decoder_init.onnx``: ``grid``, ``mean`` (the encoder's) -> ``annot`` ``[N, 49, D]`` and
``annot_mean`` ``[N, D]`` (through the frozen principal-component projection), ``h0``/``c0``
``[N, H]``, ``keys`` ``[N, 49, A]`` (the attention's key projection; ``[N, 49, 1]`` zeros
without attention).
``decoder_step.onnx``: ``token`` int64 ``[N]``, ``h``, ``c``, ``annot``, ``annot_mean``,
``keys`` ->
``log_probs`` ``[N, V]``, ``h_out``, ``c_out``, ``weights`` ``[N, 49]``.
The folder also holds ``vocab.json`` and ``captioner.json`` (the decoder config).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pylstm.interop.graph_builder import GraphBuilder
from pylstm.plugins import TaskError

from .encoder import ImageLike, preprocess
from .encoder.images import as_batch
from .model import CaptionerConfig
from .predictor import VOCAB, ImageCaptioner
from .search import search
from .vocab import Vocabulary

__all__ = ["OnnxCaptioner", "check_export", "export_captioner"]

F32 = np.float32


def _init_graph(cap: ImageCaptioner) -> Any:
    net, cfg = cap.net, cap.config
    g = GraphBuilder()
    T, info = g.onnx.TensorProto, g.h.make_tensor_value_info
    if cfg.reduce:
        g.op("Identity", [g.linear("grid", net.reduce_proj)], out="annot")
        g.op("Identity", [g.linear("mean", net.reduce_proj)], out="annot_mean")
    else:
        g.op("Identity", ["grid"], out="annot")
        g.op("Identity", ["mean"], out="annot_mean")
    g.op("Tanh", [g.linear("annot_mean", net.init_h)], out="h0")
    g.op("Identity", [g.linear("annot_mean", net.init_c)], out="c0")
    if cfg.attention:
        g.op("Identity", [g.linear("annot", net.key_proj)], out="keys")
        a = cfg.attn_dim
    else:
        zero = g.op("ReduceSum", ["annot", g.const(np.array([2], np.int64))], keepdims=1)
        g.op("Mul", [zero, g.const(np.array(0, F32))], out="keys")
        a = 1
    f, d, cells, hid = cfg.features, cfg.dim, cfg.cells, cfg.hidden
    return g.model([info("grid", T.FLOAT, ["N", cells, f]), info("mean", T.FLOAT, ["N", f])],
                   [info("annot", T.FLOAT, ["N", cells, d]),
                    info("annot_mean", T.FLOAT, ["N", d]),
                    info("h0", T.FLOAT, ["N", hid]), info("c0", T.FLOAT, ["N", hid]),
                    info("keys", T.FLOAT, ["N", cells, a])], "captioning_decoder_init")


def _step_graph(cap: ImageCaptioner) -> Any:
    net, cfg = cap.net, cap.config
    g = GraphBuilder()
    T, info = g.onnx.TensorProto, g.h.make_tensor_value_info
    hid, f, cells = cfg.hidden, cfg.dim, cfg.cells
    one = g.const(np.array([1], np.int64))
    emb = g.op("Gather", [g.const(net.embed.weight.data.astype(F32)), "token"])
    if cfg.attention:
        q = g.op("Unsqueeze", [g.linear("h", net.query_proj), one])
        e = g.op("Tanh", [g.op("Add", ["keys", q])])
        s = g.op("Squeeze", [g.linear(e, net.score), g.const(np.array([2], np.int64))])
        weights = g.op("Softmax", [s], axis=-1)
        ctx = g.op("MatMul", [g.op("Unsqueeze", [weights, one]), "annot"])
        context = g.op("Squeeze", [ctx, one])
    else:
        zero = g.op("ReduceSum", ["keys", g.const(np.array([2], np.int64))], keepdims=0)
        weights = g.op("Add", [g.op("Mul", [zero, g.const(np.array(0, F32))]),
                               g.const(np.array(1.0 / cells, F32))])
        context = "annot_mean"
    gated = g.op("Mul", [g.op("Sigmoid", [g.linear("h", net.gate)]), context])
    x = g.op("Concat", [emb, gated], axis=1)
    cell = net.cell
    z = g.op("Add", [g.op("MatMul", [x, g.const(cell.weight_ih.data.T.astype(F32))]),
                     g.op("MatMul", ["h", g.const(cell.weight_hh.data.T.astype(F32))])])
    if cell.bias:
        z = g.op("Add", [z, g.const((cell.bias_ih.data + cell.bias_hh.data).astype(F32))])
    parts = [f"gate_{k}" for k in "ifgo"]  # PyTorch's gate order
    g.nodes.append(g.h.make_node("Split", [z, g.const(np.array([hid] * 4, np.int64))], parts,
                                 axis=1, name="split_gates"))
    i, fg, gg, o = (g.op("Sigmoid", [parts[0]]), g.op("Sigmoid", [parts[1]]),
                    g.op("Tanh", [parts[2]]), g.op("Sigmoid", [parts[3]]))
    c_new = g.op("Add", [g.op("Mul", [fg, "c"]), g.op("Mul", [i, gg])], out="c_out")
    h_new = g.op("Mul", [o, g.op("Tanh", [c_new])], out="h_out")
    pre = g.op("Add", [g.op("Add", [emb, g.linear(h_new, net.out_h)]),
                       g.linear(gated, net.out_z)])
    g.op("LogSoftmax", [g.linear(g.op("Tanh", [pre]), net.out)], out="log_probs", axis=-1)
    g.op("Identity", [weights], out="weights")
    a = cfg.attn_dim if cfg.attention else 1
    fl = T.FLOAT
    return g.model(
        [info("token", T.INT64, ["N"]), info("h", fl, ["N", hid]), info("c", fl, ["N", hid]),
         info("annot", fl, ["N", cells, f]), info("annot_mean", fl, ["N", f]),
         info("keys", fl, ["N", cells, a])],
        [info("log_probs", fl, ["N", cfg.vocab]), info("h_out", fl, ["N", hid]),
         info("c_out", fl, ["N", hid]), info("weights", fl, ["N", cells])],
        "captioning_decoder_step", "pylstm-captioning")


def export_captioner(cap: ImageCaptioner, path: str | Path) -> Path:
    """Write the folder (``path`` without its ``.onnx`` suffix); returns it."""
    import onnx

    folder = Path(path)
    folder = folder.with_suffix("") if folder.suffix == ".onnx" else folder
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(cap.encoder.model, str(folder / "encoder.onnx"))
    onnx.save(_init_graph(cap), str(folder / "decoder_init.onnx"))
    onnx.save(_step_graph(cap), str(folder / "decoder_step.onnx"))
    cap.vocab.save(folder / VOCAB)
    (folder / "captioner.json").write_text(json.dumps(cap.config.to_json(), indent=2) + "\n")
    return folder


class OnnxCaptioner:
    """Caption images with an exported folder on onnxruntime (``providers``: its execution
    providers, default CPU); the same search as :meth:`ImageCaptioner.caption`."""

    FILES = ("encoder.onnx", "decoder_init.onnx", "decoder_step.onnx", "captioner.json", VOCAB)

    def __init__(self, folder: str | Path, providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        for name in self.FILES:
            if not (folder / name).is_file():
                raise TaskError(f"{folder}: expected an exported captioner folder, {name} is "
                                "missing")
        prov = list(providers or ["CPUExecutionProvider"])
        self.encoder = ort.InferenceSession(str(folder / "encoder.onnx"), providers=prov)
        self.init = ort.InferenceSession(str(folder / "decoder_init.onnx"), providers=prov)
        self.step = ort.InferenceSession(str(folder / "decoder_step.onnx"), providers=prov)
        self.config = CaptionerConfig.from_json(
            json.loads((folder / "captioner.json").read_text()), str(folder / "captioner.json"))
        self.vocab = Vocabulary.load(folder / VOCAB)

    def features(self, images: ImageLike | Sequence[ImageLike]) -> tuple[np.ndarray, np.ndarray]:
        """``(grid, mean)`` of the images through ``encoder.onnx``."""
        items = as_batch(images)
        grids, means = [], []
        for s in range(0, len(items), 32):
            x = np.stack([preprocess(im) for im in items[s:s + 32]])
            grid, mean = self.encoder.run(["grid", "mean"], {"image": x})
            grids.append(grid)
            means.append(mean)
        return np.concatenate(grids), np.concatenate(means)

    def caption_features(self, grid: np.ndarray, mean: np.ndarray, *, beam: int = 3,
                         length_penalty: float = 0.0) -> list[str]:
        """Captions of encoder features (batches of 64)."""
        out: list[str] = []
        for s in range(0, grid.shape[0], 64):
            g, m = grid[s:s + 64].astype(F32), mean[s:s + 64].astype(F32)
            annot, annot_mean, h, c, keys = self.init.run(None, {"grid": g, "mean": m})
            state = {"h": h, "c": c, "annot": annot, "annot_mean": annot_mean, "keys": keys}

            def step(tokens: np.ndarray, st: dict[str, Any]) -> tuple:
                logp, h2, c2, w = self.step.run(None, {
                    "token": tokens.astype(np.int64), "h": st["h"], "c": st["c"],
                    "annot": st["annot"], "annot_mean": st["annot_mean"], "keys": st["keys"]})
                return logp.astype(np.float64), dict(st, h=h2, c=c2), w

            hyps = search(step, state, g.shape[0], self.config.max_len, beam, length_penalty)
            out.extend(self.vocab.decode(hy.tokens) for hy in hyps)
        return out

    def caption(self, images: ImageLike | Sequence[ImageLike], *, beam: int = 3,
                length_penalty: float = 0.0) -> list[str]:
        """The caption of each image."""
        grid, mean = self.features(images)
        return self.caption_features(grid, mean, beam=beam, length_penalty=length_penalty)


def check_export(cap: ImageCaptioner, folder: Path,
                 images: Sequence[ImageLike] | None = None) -> dict[str, float]:
    """Share of images onnxruntime captions exactly as pylstm, greedy and beam 3 (on random
    images when none are given)."""
    runner = OnnxCaptioner(folder)
    if images is None:
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(8)]
    grid, mean = runner.features(list(images))
    ref_grid, _ = cap.encoder.features(list(images))
    result: dict[str, float] = {"features_max_abs_diff": float(np.abs(grid - ref_grid).max())}
    for beam in (1, 3):
        ours = [c for c, _ in cap.caption_features(grid, mean, beam=beam)]
        theirs = runner.caption_features(grid, mean, beam=beam)
        result[f"beam{beam}"] = float(np.mean([a == b for a, b in zip(ours, theirs,
                                                                        strict=True)]))
    return result
