"""The benchmark cases. Each case builds its inputs, checks that ours and each anchor compute the
same thing (max abs difference), times them interleaved and returns one row (a dict, JSON-ready).

Groups:

* ``inference``: ``functional.lstm`` forward vs onnxruntime's CPU LSTM (same ``W``, ``R``, ``B``),
  DeepBench inference shapes (input = hidden).
* ``packed``: the opt-in float32 weights packed once per module (``LSTM(...,
  packed_weights=True)``) on the inference shapes, vs onnxruntime and the module packing per
  call; outside the targets.
* ``bf16c``: the opt-in bfloat16 compute path on AMX tiles (``LSTM(...,
  compute_dtype="bfloat16")``) vs PyTorch's bfloat16 LSTM, where the CPU has AMX
  (:mod:`pylstm.bench.bf16_compute`).
* ``bf16``: the opt-in bfloat16 recurrent weights (``LSTM(..., bf16_weights=True)``) on the
  inference shapes where they engage, vs onnxruntime and our float32; outside the targets.
* ``training``: ``LSTM.forward(requires_grad=True)`` + ``LSTM.backward`` vs ``torch.nn.LSTM``
  forward + ``y.backward(dy)``; tape memory vs PyTorch's saved tensors.
* ``varlen``: a batch with lengths spread over 1..T, forward+backward, vs PyTorch's packed path
  (``pack_padded_sequence(enforce_sorted=False)``) and PyTorch on the padded batch.
* ``bidir``: 2-layer bidirectional (hidden 256, batch 32, 200 steps), forward and
  forward+backward, vs PyTorch (and onnxruntime for forward).
* ``latency``: batch 1, one step with carried state (``LSTMCell``) vs ``torch.nn.LSTMCell`` and
  onnxruntime (an LSTM with ``T=1`` and ``initial_h``/``initial_c``); also one step of a batch
  of 16 streams (``latency/h512-b16``, outside the targets).
* ``threads``: the engine on N threads vs 1 thread, forward, large-batch shapes.
* ``recorder``: the autograd recorder's cost per recorded layer call (``overhead_us_per_call``)
  against the layers' explicit tape API, and torch autograd.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import pylstm
from pylstm import functional as F

from . import anchors
from .timing import TimingConfig, lstm_flops, measure, median_ms

__all__ = ["Case", "Context", "all_cases"]

Row = dict[str, Any]

INFERENCE_SHAPES = [(512, 1, 25), (512, 4, 25), (1024, 1, 25), (1024, 4, 25), (2048, 1, 25),
                    (1536, 4, 50), (256, 1, 150), (256, 4, 150)]
LARGE_BATCH_SHAPES = [(512, 16, 25), (1024, 32, 25), (2048, 16, 25), (256, 32, 150),
                      (1536, 8, 50)]
# Where the bfloat16 weights engage: batch <= 4 and float32 R of 2 MiB or more.
BF16_SHAPES = [(h, b, t) for h, b, t in INFERENCE_SHAPES + LARGE_BATCH_SHAPES
               if b <= 4 and 16 * h * h >= 2 << 20]
TRAINING_SHAPES = LARGE_BATCH_SHAPES
VARLEN_SHAPES = [(256, 32, 150), (512, 16, 100)]
BIDIR_SHAPE = (256, 32, 200)
LATENCY_HIDDEN = [256, 1024]
LATENCY_BATCHED = [(512, 16)]  # (hidden, batch): one step of several streams at once

# ``--quick``: one small shape per group, so the whole suite runs end to end in seconds (every
# case still checked against its anchors); its timings only show that nothing is broken.
QUICK_SHAPES: dict[str, list[Any]] = {
    "inference": [(128, 4, 10)], "packed": [(128, 4, 10)],
    "bf16": [(384, 1, 5)],  # the smallest R (2.25 MiB) where the bf16 path engages
    "training": [(128, 8, 10)], "varlen": [(64, 8, 20)], "bidir": [(64, 8, 20)],
    "latency": [(128, 1)], "threads": [(128, 16, 10)], "recorder": [(8, 64)],
}

LATENCY_BLOCK = 20  # steps timed together per latency sample
RECORDER_SHAPES = [(8, 64), (64, 256)]  # (batch, features) of the recorder-overhead rows


@dataclass
class Context:
    """Settings shared by every case."""

    threads: int
    timing: TimingConfig
    latency_timing: TimingConfig
    peak_gflops: float
    seed: int = 0
    quick: bool = False


@dataclass
class Case:
    """One benchmark row: an id (``group/shape``), its group and how to run it."""

    id: str
    group: str
    run: Callable[[Context], Row]
    quick: bool = field(default=False)


# ---------------------------------------------------------------------------------------------
# helpers


def _onnx_weights(rng: np.random.Generator, hidden: int, inp: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bound = 1.0 / np.sqrt(hidden)
    w = rng.uniform(-bound, bound, (1, 4 * hidden, inp)).astype(np.float32)
    r = rng.uniform(-bound, bound, (1, 4 * hidden, hidden)).astype(np.float32)
    b = rng.uniform(-bound, bound, (1, 8 * hidden)).astype(np.float32)
    return w, r, b


def _module_onnx_layers(m: pylstm.LSTM) -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    layers = []
    for layer in range(m.num_layers):
        dirs = []
        for d in range(m.num_directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            p = {k: v.data for k, v in m.named_parameters()}
            dirs.append(anchors.torch_to_onnx_weights(p["weight_ih" + sfx], p["weight_hh" + sfx],
                                                      p.get("bias_ih" + sfx),
                                                      p.get("bias_hh" + sfx)))
        layers.append(dirs)
    return layers


def _maxdiff(a: Any, b: Any) -> float:
    if hasattr(b, "detach"):
        b = b.detach().numpy()
    if hasattr(a, "detach"):
        a = a.detach().numpy()
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _row(ctx: Context, case_id: str, group: str, passname: str, flops: float,
         times: dict[str, list[float]], anchor_notes: dict[str, str | None], *,
         hidden: int, input_size: int, batch: int, steps: int, layers: int = 1,
         directions: int = 1, per_call: int = 1, ours: str = "ours",
         threads: int | None = None, **extra: Any) -> Row:
    ms = median_ms(times[ours], per_call)
    gflops = flops / (ms * 1e-3) / 1e9
    row: Row = {
        "id": case_id, "group": group, "pass": passname,
        "hidden": hidden, "input": input_size, "batch": batch, "steps": steps,
        "layers": layers, "directions": directions,
        "threads": threads if threads is not None else ctx.threads,
        "flops": flops, "ms": ms, "gflops": gflops,
        "peak_fraction": gflops / ctx.peak_gflops if ctx.peak_gflops > 0 else None,
        "samples": len(times[ours]),
        "spread_ms": [min(times[ours]) * 1e3 / per_call, max(times[ours]) * 1e3 / per_call],
        "anchors": {},
    }
    for name, note in anchor_notes.items():
        if name in times and times[name]:
            ams = median_ms(times[name], per_call)
            row["anchors"][name] = {"ms": ams, "gflops": flops / (ams * 1e-3) / 1e9,
                                    "speedup": ams / ms, "samples": len(times[name]),
                                    "speedup_best": min(times[name]) / min(times[ours]),
                                    "note": note}
        else:
            row["anchors"][name] = {"ms": None, "gflops": None, "speedup": None,
                                    "note": note or "not run"}
    row.update(extra)
    return row


class _Split:
    """Accumulates a sub-phase's durations inside a timed call (forward vs backward)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[float]] = {}

    def add(self, name: str, seconds: float) -> None:
        self.parts.setdefault(name, []).append(seconds)

    def medians_ms(self) -> dict[str, float]:
        return {k: float(np.median(v)) * 1e3 for k, v in self.parts.items()}


def _torch(threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    return torch


# ---------------------------------------------------------------------------------------------
# cases


def _inference(hidden: int, batch: int, steps: int) -> Callable[[Context], Row]:
    def run(ctx: Context) -> Row:
        rng = np.random.default_rng(ctx.seed)
        w, r, b = _onnx_weights(rng, hidden, hidden)
        x = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
        fns: dict[str, Callable[[], Any]] = {"ours": lambda: F.lstm(x, w, r, b)}
        notes: dict[str, str | None] = {}
        check: dict[str, float] = {}
        missing = anchors.ort_missing()
        if missing:
            notes["onnxruntime"] = f"missing: {missing}"
        else:
            sess = anchors.ort_session(anchors.onnx_lstm_model([[(w[0], r[0], b[0])]], hidden,
                                                               hidden), ctx.threads)
            feeds = {"X": x}
            fns["onnxruntime"] = lambda: sess.run(None, feeds)
            notes["onnxruntime"] = None
            check["onnxruntime"] = _maxdiff(F.lstm(x, w, r, b)[0], sess.run(None, feeds)[0])
        times = measure(fns, ctx.timing)
        return _row(ctx, f"inference/h{hidden}-b{batch}-t{steps}", "inference", "forward",
                    lstm_flops(hidden, hidden, batch, steps), times, notes, hidden=hidden,
                    input_size=hidden, batch=batch, steps=steps, max_abs_diff=check)
    return run


def _module_variant(group: str, option: str, label: str, plain: str, hidden: int, batch: int,
                    steps: int) -> Callable[[Context], Row]:
    """An opt-in module option (``LSTM(..., <option>=True)``) vs onnxruntime and vs the same
    module without it (anchor ``plain``); reported apart from the targets, with the difference
    it makes to the output."""
    def run(ctx: Context) -> Row:
        rng = np.random.default_rng(ctx.seed)
        m = pylstm.LSTM(hidden, hidden, seed=ctx.seed, **{option: True})
        m32 = pylstm.LSTM(hidden, hidden, seed=ctx.seed)
        x = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
        y16, y32 = m(x)[0], m32(x)[0]
        fns: dict[str, Callable[[], Any]] = {"ours": lambda: m(x), plain: lambda: m32(x)}
        notes: dict[str, str | None] = {plain: None}
        err = _maxdiff(y16, y32)
        check: dict[str, float] = {plain: err, f"{plain}_rel": err / float(np.abs(y32).max())}
        missing = anchors.ort_missing()
        if missing:
            notes["onnxruntime"] = f"missing: {missing}"
        else:
            model = anchors.onnx_lstm_model(_module_onnx_layers(m), hidden, hidden)
            sess = anchors.ort_session(model, ctx.threads)
            feeds = {"X": x}
            fns["onnxruntime"] = lambda: sess.run(None, feeds)
            notes["onnxruntime"] = None
            check["onnxruntime"] = _maxdiff(y16, sess.run(None, feeds)[0][:, 0])
        times = measure(fns, ctx.timing)
        return _row(ctx, f"{group}/h{hidden}-b{batch}-t{steps}", group, label,
                    lstm_flops(hidden, hidden, batch, steps), times, notes, hidden=hidden,
                    input_size=hidden, batch=batch, steps=steps, max_abs_diff=check)
    return run


def _bf16(hidden: int, batch: int, steps: int) -> Callable[[Context], Row]:
    """The opt-in bfloat16 recurrent weights (``LSTM(..., bf16_weights=True)``, packed once per
    module) vs onnxruntime and vs the same module in float32, with the error it costs."""
    return _module_variant("bf16", "bf16_weights", "forward, bf16 R", "ours_float32", hidden,
                           batch, steps)


def _packed(hidden: int, batch: int, steps: int) -> Callable[[Context], Row]:
    """The opt-in float32 weights packed once per module (``LSTM(..., packed_weights=True)``,
    as onnxruntime packs a model's constant weights) vs onnxruntime and vs the same module
    packing per call."""
    return _module_variant("packed", "packed_weights", "forward, W/R packed once",
                           "ours_per_call", hidden, batch, steps)


def _training(hidden: int, batch: int, steps: int) -> Callable[[Context], Row]:
    def run(ctx: Context) -> Row:
        rng = np.random.default_rng(ctx.seed)
        m = pylstm.LSTM(hidden, hidden, seed=ctx.seed)
        x = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
        dy = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
        split = _Split()

        def ours() -> None:
            t0 = time.perf_counter()
            _, tape = m.forward(x, requires_grad=True)
            t1 = time.perf_counter()
            m.backward(tape, dy)
            split.add("ours_forward_tape", t1 - t0)
            split.add("ours_backward", time.perf_counter() - t1)

        fns: dict[str, Callable[[], Any]] = {"ours": ours}
        notes: dict[str, str | None] = {}
        check: dict[str, float] = {}
        (y0, _), tape0 = m.forward(x, requires_grad=True)
        memory: dict[str, Any] = {"ours_tape_bytes": int(tape0.nbytes)}
        dx0, _ = m.backward(tape0, dy)
        del tape0
        missing = anchors.torch_missing()
        if missing:
            notes["torch"] = f"missing: {missing}"
        else:
            torch = _torch(ctx.threads)
            tm = anchors.torch_lstm_from(m)
            xt = torch.from_numpy(x.copy()).requires_grad_(True)
            dyt = torch.from_numpy(dy)

            def theirs() -> None:
                t0 = time.perf_counter()
                y, _ = tm(xt)
                t1 = time.perf_counter()
                y.backward(dyt)
                split.add("torch_forward", t1 - t0)
                split.add("torch_backward", time.perf_counter() - t1)

            fns["torch"] = theirs
            notes["torch"] = None
            yt, _ = tm(xt)
            yt.backward(dyt)
            check["torch_y"] = _maxdiff(y0, yt)
            check["torch_dx"] = _maxdiff(dx0, xt.grad)
            saved = anchors.torch_saved_bytes(lambda: tm(xt)[0], dict(tm.named_parameters()))
            memory["torch_saved_bytes"] = saved["activations"]
            memory["torch_saved_bytes_with_params"] = saved["total"]
            memory["ratio"] = saved["activations"] / max(1, memory["ours_tape_bytes"])
        split.parts.clear()
        times = measure(fns, ctx.timing)
        return _row(ctx, f"training/h{hidden}-b{batch}-t{steps}", "training",
                    "forward+backward", lstm_flops(hidden, hidden, batch, steps, backward=True),
                    times, notes, hidden=hidden, input_size=hidden, batch=batch, steps=steps,
                    memory=memory, max_abs_diff=check, breakdown_ms=split.medians_ms())
    return run


def _varlen(hidden: int, batch: int, steps: int) -> Callable[[Context], Row]:
    def run(ctx: Context) -> Row:
        rng = np.random.default_rng(ctx.seed)
        m = pylstm.LSTM(hidden, hidden, seed=ctx.seed)
        lengths = np.linspace(1, steps, batch).round().astype(np.int64)
        rng.shuffle(lengths)
        x = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
        mask = (np.arange(steps)[:, None] < lengths[None, :]).astype(np.float32)
        dy = rng.standard_normal((steps, batch, hidden)).astype(np.float32) * mask[:, :, None]
        tokens = int(lengths.sum())

        def ours() -> None:
            _, tape = m.forward(x, lengths=lengths, requires_grad=True)
            m.backward(tape, dy)

        fns: dict[str, Callable[[], Any]] = {"ours": ours}
        notes: dict[str, str | None] = {}
        check: dict[str, float] = {}
        (y0, _), tape0 = m.forward(x, lengths=lengths, requires_grad=True)
        memory: dict[str, Any] = {"ours_tape_bytes": int(tape0.nbytes)}
        dx0, _ = m.backward(tape0, dy)
        del tape0
        missing = anchors.torch_missing()
        if missing:
            notes["torch_packed"] = notes["torch_padded"] = f"missing: {missing}"
        else:
            torch = _torch(ctx.threads)
            from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

            tm = anchors.torch_lstm_from(m)
            xt = torch.from_numpy(x.copy()).requires_grad_(True)
            dyt = torch.from_numpy(dy)
            lt = torch.from_numpy(lengths)

            def packed_forward() -> Any:
                packed = pack_padded_sequence(xt, lt, enforce_sorted=False)
                out, _ = tm(packed)
                return pad_packed_sequence(out, total_length=steps)[0]

            def packed() -> None:
                packed_forward().backward(dyt)

            def padded() -> None:
                y, _ = tm(xt)
                y.backward(dyt)

            fns["torch_packed"] = packed
            notes["torch_packed"] = None
            if not ctx.quick:
                fns["torch_padded"] = padded
                notes["torch_padded"] = "padded batch, all T steps (ignores lengths)"
            yt = packed_forward()
            yt.backward(dyt)
            check["torch_packed_y"] = _maxdiff(y0, yt)
            check["torch_packed_dx"] = _maxdiff(dx0, xt.grad)
            saved = anchors.torch_saved_bytes(packed_forward, dict(tm.named_parameters()))
            memory["torch_saved_bytes"] = saved["activations"]
            memory["torch_saved_bytes_with_params"] = saved["total"]
            memory["ratio"] = saved["activations"] / max(1, memory["ours_tape_bytes"])
        times = measure(fns, ctx.timing)
        return _row(ctx, f"varlen/h{hidden}-b{batch}-t{steps}", "varlen", "forward+backward",
                    lstm_flops(hidden, hidden, batch, steps, backward=True, tokens=tokens),
                    times, notes, hidden=hidden, input_size=hidden, batch=batch, steps=steps,
                    tokens=tokens, memory=memory, max_abs_diff=check)
    return run


def _bidir(hidden: int, batch: int, steps: int, train: bool) -> Callable[[Context], Row]:
    def run(ctx: Context) -> Row:
        rng = np.random.default_rng(ctx.seed)
        m = pylstm.LSTM(hidden, hidden, num_layers=2, bidirectional=True, seed=ctx.seed)
        m.eval()
        x = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
        dy = rng.standard_normal((steps, batch, 2 * hidden)).astype(np.float32)
        notes: dict[str, str | None] = {}
        check: dict[str, float] = {}
        extra: dict[str, Any] = {}
        if train:
            def ours() -> None:
                _, tape = m.forward(x, requires_grad=True)
                m.backward(tape, dy)
            (y0, _), tape0 = m.forward(x, requires_grad=True)
            extra["memory"] = {"ours_tape_bytes": int(tape0.nbytes)}
            dx0, _ = m.backward(tape0, dy)
            del tape0
        else:
            def ours() -> None:
                m(x)
            y0 = m(x)[0]
        fns: dict[str, Callable[[], Any]] = {"ours": ours}
        missing = anchors.torch_missing()
        if missing:
            notes["torch"] = f"missing: {missing}"
        else:
            torch = _torch(ctx.threads)
            tm = anchors.torch_lstm_from(m)
            xt = torch.from_numpy(x.copy()).requires_grad_(train)
            dyt = torch.from_numpy(dy)
            notes["torch"] = None
            if train:
                def theirs() -> None:
                    y, _ = tm(xt)
                    y.backward(dyt)
                yt, _ = tm(xt)
                yt.backward(dyt)
                check["torch_y"] = _maxdiff(y0, yt)
                check["torch_dx"] = _maxdiff(dx0, xt.grad)
                saved = anchors.torch_saved_bytes(lambda: tm(xt)[0], dict(tm.named_parameters()))
                mem = extra["memory"]
                mem["torch_saved_bytes"] = saved["activations"]
                mem["torch_saved_bytes_with_params"] = saved["total"]
                mem["ratio"] = saved["activations"] / max(1, mem["ours_tape_bytes"])
            else:
                def theirs() -> None:
                    with torch.no_grad():
                        tm(xt)
                with torch.no_grad():
                    check["torch_y"] = _maxdiff(y0, tm(xt)[0])
            fns["torch"] = theirs
        if not train:
            missing = anchors.ort_missing()
            if missing:
                notes["onnxruntime"] = f"missing: {missing}"
            else:
                model = anchors.onnx_lstm_model(_module_onnx_layers(m), hidden, hidden)
                sess = anchors.ort_session(model, ctx.threads)
                feeds = {"X": x}
                fns["onnxruntime"] = lambda: sess.run(None, feeds)
                notes["onnxruntime"] = None
                check["onnxruntime_y"] = _maxdiff(y0, sess.run(None, feeds)[0])
        times = measure(fns, ctx.timing)
        suffix = "fwdbwd" if train else "fwd"
        return _row(ctx, f"bidir/h{hidden}-b{batch}-t{steps}-{suffix}", "bidir",
                    "forward+backward" if train else "forward",
                    lstm_flops(hidden, hidden, batch, steps, layers=2, directions=2,
                               backward=train),
                    times, notes, hidden=hidden, input_size=hidden, batch=batch, steps=steps,
                    layers=2, directions=2, max_abs_diff=check, **extra)
    return run


def _latency(hidden: int, batch: int = 1) -> Callable[[Context], Row]:
    def run(ctx: Context) -> Row:
        rng = np.random.default_rng(ctx.seed)
        k = LATENCY_BLOCK
        cell = pylstm.LSTMCell(hidden, hidden, seed=ctx.seed)
        x = rng.standard_normal((batch, hidden)).astype(np.float32)
        h0 = np.zeros((batch, hidden), np.float32)
        state = [h0, h0.copy()]

        def ours() -> None:
            h, c = state
            for _ in range(k):
                h, c = cell(x, (h, c))
            state[0], state[1] = h, c

        fns: dict[str, Callable[[], Any]] = {"ours": ours}
        notes: dict[str, str | None] = {}
        check: dict[str, float] = {}
        ref_h, ref_c = cell(x, (h0, h0))
        missing = anchors.torch_missing()
        if missing:
            notes["torch_cell"] = f"missing: {missing}"
        else:
            torch = _torch(ctx.threads)
            tcell = anchors.torch_lstm_from(cell, cell=True)
            xt = torch.from_numpy(x)
            tstate = [torch.zeros(batch, hidden), torch.zeros(batch, hidden)]

            def theirs() -> None:
                with torch.no_grad():
                    h, c = tstate
                    for _ in range(k):
                        h, c = tcell(xt, (h, c))
                    tstate[0], tstate[1] = h, c

            with torch.no_grad():
                th, _ = tcell(xt, (torch.zeros(batch, hidden), torch.zeros(batch, hidden)))
            check["torch_cell_h"] = _maxdiff(ref_h, th)
            fns["torch_cell"] = theirs
            notes["torch_cell"] = None
        missing = anchors.ort_missing()
        if missing:
            notes["onnxruntime"] = f"missing: {missing}"
        else:
            cp = {k: v.data for k, v in cell.named_parameters()}
            w, r, b = anchors.torch_to_onnx_weights(cp["weight_ih"], cp["weight_hh"],
                                                    cp["bias_ih"], cp["bias_hh"])
            sess = anchors.ort_session(anchors.onnx_lstm_model([[(w, r, b)]], hidden, hidden,
                                                               with_state=True), ctx.threads)
            x3 = x[None]
            ostate = [np.zeros((1, batch, hidden), np.float32),
                      np.zeros((1, batch, hidden), np.float32)]

            def ort_run() -> None:
                h, c = ostate
                for _ in range(k):
                    h, c = sess.run(["Y_h", "Y_c"], {"X": x3, "initial_h": h, "initial_c": c})
                ostate[0], ostate[1] = h, c

            oh, _ = sess.run(["Y_h", "Y_c"], {"X": x3, "initial_h": ostate[0],
                                              "initial_c": ostate[1]})
            check["onnxruntime_h"] = _maxdiff(ref_h, oh[0])
            fns["onnxruntime"] = ort_run
            notes["onnxruntime"] = None
        times = measure(fns, ctx.latency_timing)
        name = f"latency/h{hidden}" + (f"-b{batch}" if batch > 1 else "")
        row = _row(ctx, name, "latency", "step", lstm_flops(hidden, hidden, batch, 1),
                   times, notes, hidden=hidden, input_size=hidden, batch=batch, steps=1,
                   per_call=k, max_abs_diff=check)
        row["us"] = row["ms"] * 1e3
        return row
    return run


def _threads(hidden: int, batch: int, steps: int) -> Callable[[Context], Row]:
    def run(ctx: Context) -> Row:
        many = ctx.threads if ctx.threads > 1 else 2
        rng = np.random.default_rng(ctx.seed)
        w, r, b = _onnx_weights(rng, hidden, hidden)
        x = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
        tiny = (w[:, :32, :8].copy(), r[:, :32, :8].copy(), b[:, :64].copy())
        tiny_x = x[:1, :1, :8].copy()

        def switch(n: int) -> Callable[[], None]:
            def go() -> None:
                if pylstm.get_num_threads() != n:
                    pylstm.set_num_threads(n)
                    F.lstm(tiny_x, *tiny)  # builds the pool outside the timed call
            return go

        def fwd() -> None:
            F.lstm(x, w, r, b)

        name_many, name_one = "ours", "1 thread"
        try:
            times = measure({name_many: fwd, name_one: fwd}, ctx.timing,
                            before={name_many: switch(many), name_one: switch(1)})
        finally:
            pylstm.set_num_threads(ctx.threads)
        return _row(ctx, f"threads/h{hidden}-b{batch}-t{steps}", "threads",
                    f"forward, {many} vs 1 threads", lstm_flops(hidden, hidden, batch, steps),
                    times, {name_one: None}, hidden=hidden, input_size=hidden, batch=batch,
                    steps=steps, threads=many)
    return run


def _recorder(batch: int, dim: int) -> Callable[[Context], Row]:
    """What recording costs per layer call: ``k`` chained ``Linear`` calls inside
    ``pylstm.record()`` and one ``backward()``, against the same calls through the layer's
    explicit ``forward(requires_grad=True)`` / ``backward(tape, dout)`` (no recorder), and
    torch autograd; a small layer, so the bookkeeping shows."""
    def run(ctx: Context) -> Row:
        rng = np.random.default_rng(ctx.seed)
        k = LATENCY_BLOCK
        lin = pylstm.nn.Linear(dim, dim, seed=ctx.seed)
        x = rng.standard_normal((batch, dim)).astype(np.float32)

        def recorded() -> None:
            with pylstm.record():
                y = x
                for _ in range(k):
                    y = lin(y)
                loss = y.sum()
            loss.backward()

        def explicit() -> None:
            y, tapes = x, []
            for _ in range(k):
                y, tape = lin.forward(y, requires_grad=True)
                tapes.append(tape)
            d = np.ones_like(y)
            for tape in reversed(tapes):
                d = lin.backward(tape, d)

        fns: dict[str, Callable[[], Any]] = {"ours": recorded, "explicit_tape": explicit}
        notes: dict[str, str | None] = {"explicit_tape": "the layer API without the recorder"}
        missing = anchors.torch_missing()
        if missing:
            notes["torch"] = f"missing: {missing}"
        else:
            torch = _torch(ctx.threads)
            tl = torch.nn.Linear(dim, dim)
            xt = torch.from_numpy(x)

            def torch_run() -> None:
                y = xt
                for _ in range(k):
                    y = tl(y)
                y.sum().backward()

            fns["torch"] = torch_run
            notes["torch"] = None
        times = measure(fns, ctx.latency_timing)
        row = _row(ctx, f"recorder/linear-b{batch}-d{dim}", "recorder", "fwdbwd",
                   6.0 * batch * dim * dim, times, notes, hidden=dim, input_size=dim,
                   batch=batch, steps=1, per_call=k)
        row["us"] = row["ms"] * 1e3
        row["overhead_us_per_call"] = (row["ms"] - row["anchors"]["explicit_tape"]["ms"]) * 1e3
        return row
    return run


def all_cases(quick: bool = False) -> list[Case]:
    """Every case, in running order; with ``quick`` the small shapes of :data:`QUICK_SHAPES`."""
    cases: list[Case] = []

    def shapes(group: str, full: list[Any]) -> list[Any]:
        return list(QUICK_SHAPES[group]) if quick else full

    def add(case_id: str, group: str, fn: Callable[[Context], Row]) -> None:
        cases.append(Case(case_id, group, fn, quick))

    for h, b, t in shapes("inference", INFERENCE_SHAPES + LARGE_BATCH_SHAPES):
        add(f"inference/h{h}-b{b}-t{t}", "inference", _inference(h, b, t))
    for h, b, t in shapes("packed", INFERENCE_SHAPES + LARGE_BATCH_SHAPES):
        add(f"packed/h{h}-b{b}-t{t}", "packed", _packed(h, b, t))
    for h, b, t in shapes("bf16", BF16_SHAPES):
        add(f"bf16/h{h}-b{b}-t{t}", "bf16", _bf16(h, b, t))
    if pylstm.info()["amx"] == "available":
        from .bf16_compute import BF16C_QUICK, BF16C_SHAPES, bf16c_case

        for h, b, t in BF16C_QUICK if quick else BF16C_SHAPES:
            add(f"bf16c/h{h}-b{b}-t{t}", "bf16c", bf16c_case(h, b, t))
    for h, b, t in shapes("training", TRAINING_SHAPES):
        add(f"training/h{h}-b{b}-t{t}", "training", _training(h, b, t))
    for h, b, t in shapes("varlen", VARLEN_SHAPES):
        add(f"varlen/h{h}-b{b}-t{t}", "varlen", _varlen(h, b, t))
    for h, b, t in shapes("bidir", [BIDIR_SHAPE]):
        add(f"bidir/h{h}-b{b}-t{t}-fwd", "bidir", _bidir(h, b, t, train=False))
        add(f"bidir/h{h}-b{b}-t{t}-fwdbwd", "bidir", _bidir(h, b, t, train=True))
    for h, b in shapes("latency", [(h, 1) for h in LATENCY_HIDDEN] + LATENCY_BATCHED):
        add(f"latency/h{h}" + (f"-b{b}" if b > 1 else ""), "latency", _latency(h, b))
    for h, b, t in shapes("threads", LARGE_BATCH_SHAPES):
        add(f"threads/h{h}-b{b}-t{t}", "threads", _threads(h, b, t))
    for b, d in shapes("recorder", RECORDER_SHAPES):
        add(f"recorder/linear-b{b}-d{d}", "recorder", _recorder(b, d))
    return cases
