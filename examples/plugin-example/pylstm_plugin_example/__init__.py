"""Example third-party pylstm plugin: the ``ar-sine`` task and the ``hello`` command.

The task fits a linear autoregression ``x[t] = w . x[t-p:t] + b`` to a noisy sine wave by least
squares: small enough to read in one sitting, complete enough to show every method of the task
protocol (:class:`pylstm.plugins.Task`), ONNX export included.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from pylstm.hookspecs import hookimpl
from pylstm.plugins import RunContext, TaskError

__version__ = "0.1.0"


def _series(length: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)
    return np.sin(2 * np.pi * t / 25.0) + noise * rng.standard_normal(length)


def _windows(x: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(order)[None, :] + np.arange(len(x) - order)[:, None]
    return x[idx], x[order:]


class ARSineTask:
    """Linear autoregression on a synthetic noisy sine wave."""

    name = "ar-sine"
    description = "example task: least-squares autoregression on a noisy sine (instant)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Options: --order, --length, --noise, --steps."""
        parser.add_argument("--order", type=int, default=8, help="autoregression order")
        parser.add_argument("--length", type=int, default=400, help="series length")
        parser.add_argument("--noise", type=float, default=0.05, help="noise std")
        parser.add_argument("--steps", type=int, default=10, help="steps to predict")

    def _check(self, args: argparse.Namespace) -> None:
        if args.length < 20:
            raise TaskError(f"--length must be at least 20, got {args.length}")
        if not 1 <= args.order <= args.length // 4:
            raise TaskError(f"--order must be in [1, {args.length // 4}], got {args.order}")
        if not np.isfinite(args.noise) or args.noise < 0:
            raise TaskError(f"--noise must be a finite number >= 0, got {args.noise}")
        if args.steps < 1:
            raise TaskError(f"--steps must be at least 1, got {args.steps}")

    def _metrics(self, args: argparse.Namespace, ctx: RunContext, coef: np.ndarray) -> dict:
        x = _series(args.length, args.noise, ctx.seed)
        split = int(0.8 * len(x))
        xw, y = _windows(x[split - args.order :], args.order)
        pred = xw @ coef[:-1] + coef[-1]
        return {
            "ar": {"mse": float(np.mean((pred - y) ** 2))},
            "naive": {"mse": float(np.mean((xw[:, -1] - y) ** 2))},
        }

    def _load(self, ctx: RunContext) -> np.ndarray:
        assert ctx.run_dir is not None
        return np.asarray(json.loads((ctx.run_dir / "ar.json").read_text())["coef"])

    def train(self, args: argparse.Namespace, ctx: RunContext) -> dict[str, Any]:
        """Fit on the first 80% of the series; metrics on the last 20%."""
        self._check(args)
        x = _series(args.length, args.noise, ctx.seed)
        xw, y = _windows(x[: int(0.8 * len(x))], args.order)
        a = np.hstack([xw, np.ones((len(xw), 1))])
        with ctx.progress(1, "least squares") as bar:
            coef = np.linalg.lstsq(a, y, rcond=None)[0]
            bar.update(loss=float(np.mean((a @ coef - y) ** 2)))
        ctx.write_json("ar.json", {"coef": coef.tolist(), "order": args.order})
        return self._metrics(args, ctx, coef)

    def evaluate(self, args: argparse.Namespace, ctx: RunContext) -> dict[str, Any]:
        """Held-out one-step MSE of the saved model and of the naive last-value forecast."""
        self._check(args)
        return self._metrics(args, ctx, self._load(ctx))

    def predict(self, args: argparse.Namespace, ctx: RunContext) -> dict[str, list]:
        """Forecast ``--steps`` values past the end of the series, feeding predictions back."""
        self._check(args)
        coef = self._load(ctx)
        hist = list(_series(args.length, args.noise, ctx.seed)[-len(coef) + 1 :])
        out = []
        for _ in range(args.steps):
            out.append(float(np.dot(hist[-len(coef) + 1 :], coef[:-1]) + coef[-1]))
            hist.append(out[-1])
        return {"step": list(range(1, args.steps + 1)), "value": out}

    def export_onnx(self, args: argparse.Namespace, ctx: RunContext, path: Path) -> Path:
        """One-step model: input ``window`` [N, order] float32, output ``next`` [N, 1]."""
        from onnx import TensorProto, helper, numpy_helper, save

        coef = self._load(ctx).astype(np.float32)
        w = numpy_helper.from_array(coef[:-1].reshape(-1, 1), "w")
        b = numpy_helper.from_array(coef[-1:].reshape(1, 1), "b")
        graph = helper.make_graph(
            [helper.make_node("Gemm", ["window", "w", "b"], ["next"])],
            "ar_sine",
            [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["N", len(coef) - 1])],
            [helper.make_tensor_value_info("next", TensorProto.FLOAT, ["N", 1])],
            [w, b],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
        model.ir_version = 8  # onnx >= 1.23 writes an IR newer than onnxruntime reads
        save(model, str(path))
        return path


@hookimpl
def register_tasks(register: Any) -> None:
    """Register the ``ar-sine`` task."""
    register(ARSineTask())


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``pylstm hello [--name NAME]``."""
    p = cli.add_parser("hello", help="say hello (from pylstm-plugin-example)")
    p.add_argument("--name", default="world")
    p.set_defaults(func=lambda args: print(f"hello, {args.name}!"))
