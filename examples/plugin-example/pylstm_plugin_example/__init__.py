"""Example third-party pylstm plugin: the ``ar-sine`` task and the ``hello`` command.

The task fits a linear autoregression ``x[t] = w . x[t-p:t] + b`` to a noisy sine wave by least
squares: small enough to read in one sitting, complete enough to show every part of the task
protocol (:class:`pylstm.plugins.Task`): typed options, the run folder, a predictor that
``pylstm.load`` returns, evaluation, prediction and ONNX export. :mod:`.sine_lstm` is the same
idea with an LSTM trained by :class:`pylstm.train.Trainer` (checkpoints, resume).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pylstm.hookspecs import hookimpl
from pylstm.plugins import RunContext, TaskError, run_options
from pylstm.runs import Run

__version__ = "0.2.0"


def series(length: int, noise: float, seed: int) -> np.ndarray:
    """The noisy sine wave (period 25) the task learns; the same for the same seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)
    return np.sin(2 * np.pi * t / 25.0) + noise * rng.standard_normal(length)


def _windows(x: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(order)[None, :] + np.arange(len(x) - order)[:, None]
    return x[idx], x[order:]


@dataclass
class ARSineOptions:
    """``pylstm train ar-sine`` options (saved in run.json)."""

    order: int = field(default=8, metadata={"help": "autoregression order"})
    length: int = field(default=400, metadata={"help": "series length"})
    noise: float = field(default=0.05, metadata={"help": "noise standard deviation"})

    def __post_init__(self) -> None:
        if self.length < 20:
            raise TaskError(f"--length: expected an integer >= 20, got {self.length}")
        if not 1 <= self.order <= self.length // 4:
            raise TaskError(f"--order: expected an integer in [1, {self.length // 4}], "
                            f"got {self.order}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise TaskError(f"--noise: expected a finite number >= 0, got {self.noise}")


@dataclass
class ARSineRequest:
    """``pylstm predict RUN`` options."""

    steps: int = field(default=10, metadata={"help": "values to forecast"})

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise TaskError(f"--steps: expected an integer >= 1, got {self.steps}")


class ARSinePredictor:
    """A trained autoregression: what ``pylstm.load(run)`` returns for an ``ar-sine`` run."""

    def __init__(self, coef: np.ndarray, history: np.ndarray) -> None:
        self.coef = np.asarray(coef, np.float64)
        self.history = np.asarray(history, np.float64)  # the training run's series
        self.order = len(self.coef) - 1

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """One-step forecasts ``[N]`` for ``windows`` ``[N, order]`` (oldest value first)."""
        w = np.asarray(windows, np.float64)
        if w.ndim != 2 or w.shape[1] != self.order:
            raise TaskError(f"windows: expected shape [N, {self.order}], got {list(w.shape)}")
        return w @ self.coef[:-1] + self.coef[-1]

    def forecast(self, steps: int, history: np.ndarray | None = None) -> list[float]:
        """``steps`` values past the end of ``history`` (default the run's series), feeding
        each forecast back in."""
        hist = list(self.history if history is None else np.asarray(history, np.float64))
        if len(hist) < self.order:
            raise TaskError(f"history: expected at least {self.order} values, got {len(hist)}")
        out: list[float] = []
        for _ in range(steps):
            out.append(float(self.predict(np.asarray(hist[-self.order:])[None])[0]))
            hist.append(out[-1])
        return out


class ARSineTask:
    """Linear autoregression on a synthetic noisy sine wave."""

    name = "ar-sine"
    description = "example task: least-squares autoregression on a noisy sine (instant)"
    Options = ARSineOptions
    PredictOptions = ARSineRequest

    @staticmethod
    def _metrics(options: ARSineOptions, seed: int, model: ARSinePredictor) -> dict[str, Any]:
        x = series(options.length, options.noise, seed)
        split = int(0.8 * len(x))
        xw, y = _windows(x[split - model.order:], model.order)
        return {"ar": {"mse": float(np.mean((model.predict(xw) - y) ** 2))},
                "naive": {"mse": float(np.mean((xw[:, -1] - y) ** 2))}}

    def train(self, options: ARSineOptions, run: Run, ctx: RunContext) -> dict[str, Any]:
        """Fit on the first 80% of the series; metrics on the last 20%."""
        x = series(options.length, options.noise, run.seed)
        xw, y = _windows(x[: int(0.8 * len(x))], options.order)
        a = np.hstack([xw, np.ones((len(xw), 1))])
        with ctx.progress(1, "least squares") as progress:
            coef = np.linalg.lstsq(a, y, rcond=None)[0]
            progress(1, 1, loss=float(np.mean((a @ coef - y) ** 2)))
        run.save_tensors("model", {"coef": coef}, config={"order": options.order})
        return self._metrics(options, run.seed, ARSinePredictor(coef, x))

    def load(self, run: Run) -> ARSinePredictor:
        """Rebuild the predictor from ``model.safetensors`` (digest checked by the run)."""
        tensors, config = run.load_tensors("model")
        order = (config or {}).get("order")
        coef = tensors.get("coef")
        if not isinstance(order, int) or coef is None or coef.shape != (order + 1,):
            raise TaskError(f"{run.file('model.safetensors')}: expected 'coef' of shape "
                            f"[order + 1] and an integer 'order' in model.json, got order "
                            f"{order!r} and coef {None if coef is None else list(coef.shape)}")
        opts = run_options(self.Options, run)
        return ARSinePredictor(coef, series(opts.length, opts.noise, run.seed))

    def evaluate(self, predictor: ARSinePredictor, options: ARSineOptions,
                 ctx: RunContext) -> dict[str, Any]:
        """Held-out one-step MSE of the model and of the naive last-value forecast."""
        return self._metrics(options, ctx.seed, predictor)

    def predict(self, predictor: ARSinePredictor, request: ARSineRequest,
                ctx: RunContext) -> dict[str, list]:
        """Forecast ``--steps`` values past the end of the series."""
        return {"step": list(range(1, request.steps + 1)),
                "value": predictor.forecast(request.steps)}

    def export_onnx(self, predictor: ARSinePredictor, path: Path, ctx: RunContext) -> Path:
        """One-step model: input ``window`` [N, order] float32, output ``next`` [N, 1]."""
        try:
            from onnx import TensorProto, helper, numpy_helper, save
        except ImportError:
            raise TaskError("export: needs onnx (pip install 'pylstm-plugin-example[onnx]')") \
                from None
        coef = predictor.coef.astype(np.float32)
        w = numpy_helper.from_array(coef[:-1].reshape(-1, 1), "w")
        b = numpy_helper.from_array(coef[-1:].reshape(1, 1), "b")
        graph = helper.make_graph(
            [helper.make_node("Gemm", ["window", "w", "b"], ["next"])],
            "ar_sine",
            [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["N", predictor.order])],
            [helper.make_tensor_value_info("next", TensorProto.FLOAT, ["N", 1])],
            [w, b],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
        model.ir_version = 8  # onnx >= 1.23 writes an IR newer than onnxruntime reads
        save(model, str(path))
        return path


@hookimpl
def register_tasks(register: Any) -> None:
    """Register the ``ar-sine`` and ``sine-lstm`` tasks."""
    from .sine_lstm import SineLSTMTask  # imports the training toolkit: only when registering

    register(ARSineTask())
    register(SineLSTMTask())


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``pylstm hello [--name NAME]``."""
    p = cli.add_parser("hello", help="say hello (from pylstm-plugin-example)")
    p.add_argument("--name", default="world")
    p.set_defaults(func=lambda args: print(f"hello, {args.name}!"))
