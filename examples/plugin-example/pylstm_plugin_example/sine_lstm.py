"""The ``sine-lstm`` task: a small LSTM learns the next value of a noisy sine wave.

The same problem as ``ar-sine``, trained the toolkit's way: a :class:`pylstm.nn.Module`, the
loss as a recorded :class:`pylstm.Tensor`, :class:`pylstm.train.Trainer` for the loop (best
epoch, clipping, a per-epoch checkpoint in the run folder), so ``pylstm train sine-lstm
--resume RUN`` continues an interrupted run to the result an uninterrupted one gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pylstm import nn
from pylstm.errors import CheckpointError
from pylstm.plugins import RunContext, TaskError, run_options
from pylstm.runs import Run
from pylstm.train import Trainer, TrainOptions

from . import series

WINDOW = 20  # values the LSTM reads before predicting the next one


@dataclass
class SineLSTMOptions:
    """``pylstm train sine-lstm`` options."""

    hidden: int = field(default=8, metadata={"help": "LSTM hidden size", "group": "model"})
    epochs: int = field(default=5, metadata={"help": "epochs", "group": "training"})
    lr: float = field(default=0.02, metadata={"help": "Adam learning rate", "group": "training"})
    batch_size: int = field(default=16, metadata={
        "help": "windows per batch (per rank under mpirun)", "group": "training"})
    length: int = field(default=200, metadata={"help": "series length", "group": "data"})
    noise: float = field(default=0.05, metadata={"help": "noise std", "group": "data"})

    def __post_init__(self) -> None:
        for name in ("hidden", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise TaskError(f"--{name.replace('_', '-')}: expected an integer >= 1, got "
                                f"{getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise TaskError(f"--lr: expected a positive number, got {self.lr}")
        if self.length < 4 * WINDOW:
            raise TaskError(f"--length: expected an integer >= {4 * WINDOW}, got {self.length}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise TaskError(f"--noise: expected a finite number >= 0, got {self.noise}")


@dataclass
class SineLSTMRequest:
    """``pylstm predict RUN`` options."""

    steps: int = field(default=5, metadata={"help": "values to forecast"})

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise TaskError(f"--steps: expected an integer >= 1, got {self.steps}")


class NextValue(nn.Module):
    """LSTM over a window ``[N, WINDOW, 1]``, a linear head on its last hidden state."""

    def __init__(self, hidden: int, seed: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True, seed=seed)
        self.head = nn.Linear(hidden, 1, seed=seed + 1)

    def forward(self, x: Any) -> Any:
        y, _ = self.lstm(x)
        return self.head(y[:, -1, :]).reshape(-1)


def _windows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(WINDOW)[None, :] + np.arange(len(x) - WINDOW)[:, None]
    return x[idx][:, :, None].astype(np.float32), x[WINDOW:].astype(np.float32)


class SineLSTMPredictor:
    """What ``pylstm.load(run)`` returns for a ``sine-lstm`` run (inference only, so several
    threads may call it at once)."""

    def __init__(self, model: NextValue, history: np.ndarray) -> None:
        self.model = model.eval()
        self.history = np.asarray(history, np.float64)

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """The next value ``[N]`` after each window ``[N, WINDOW]``."""
        w = np.asarray(windows, np.float32)
        if w.ndim != 2 or w.shape[1] != WINDOW:
            raise TaskError(f"windows: expected shape [N, {WINDOW}], got {list(w.shape)}")
        return np.asarray(self.model(w[:, :, None]), np.float64)

    def forecast(self, steps: int) -> list[float]:
        """``steps`` values past the end of the run's series, each fed back in."""
        hist = list(self.history)
        for _ in range(steps):
            hist.append(float(self.predict(np.asarray(hist[-WINDOW:])[None])[0]))
        return hist[len(self.history):]


class SineLSTMTask:
    """A small LSTM trained with :class:`pylstm.train.Trainer` on a noisy sine."""

    name = "sine-lstm"
    description = "example task: a small LSTM predicts a noisy sine (Trainer, checkpoints)"
    Options = SineLSTMOptions
    PredictOptions = SineLSTMRequest

    def train(self, options: SineLSTMOptions, run: Run, ctx: RunContext) -> dict[str, Any]:
        """Fit on the first 80% of the windows, keep the epoch with the best held-out MSE."""
        x_all, y_all = _windows(series(options.length, options.noise, run.seed))
        split = int(0.8 * len(x_all))
        x, y, xv, yv = x_all[:split], y_all[:split], x_all[split:], y_all[split:]
        model = NextValue(options.hidden, run.seed)
        optimizer = nn.Adam(model.parameters(), lr=options.lr)
        mse = nn.MSELoss()

        def batches(epoch: int) -> list[np.ndarray]:  # a pure function of (seed, epoch)
            order = np.random.default_rng([run.seed, epoch]).permutation(len(x))
            size = options.batch_size
            return [order[i:i + size] for i in range(0, len(order), size)]

        def validate() -> dict[str, float]:
            return {"val_mse": float(np.mean((model(xv) - yv) ** 2))}

        with ctx.progress(options.epochs, self.name) as progress:
            trainer = Trainer(model, optimizer, run=run, progress=progress, seed=run.seed,
                              options=TrainOptions(epochs=options.epochs, metric="val_mse"))
            fit = trainer.resume if ctx.resume else trainer.fit
            fit(batches, lambda idx: mse(model(x[idx]), y[idx]), validate)
        run.save_tensors("model", model.state_dict(), config={"hidden": options.hidden})
        return {"lstm": validate(), "naive": {"val_mse": float(np.mean((xv[:, -1, 0] - yv) ** 2))}}

    def load(self, run: Run) -> SineLSTMPredictor:
        """Rebuild the model from ``model.safetensors`` and ``model.json``."""
        options = run_options(self.Options, run)
        tensors, config = run.load_tensors("model")
        hidden = (config or {}).get("hidden")
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            raise CheckpointError(f"{run.file('model.json')}: hidden: expected an integer >= 1, "
                                  f"got {hidden!r}")
        model = NextValue(hidden, 0)
        model.load_state_dict(tensors)
        return SineLSTMPredictor(model, series(options.length, options.noise, run.seed))

    def evaluate(self, predictor: SineLSTMPredictor, options: SineLSTMOptions,
                 ctx: RunContext) -> dict[str, Any]:
        """Held-out MSE (the last 20% of the windows) of the model and of the last value."""
        x_all, y_all = _windows(series(options.length, options.noise, ctx.seed))
        xv, yv = x_all[int(0.8 * len(x_all)):], y_all[int(0.8 * len(x_all)):]
        return {"lstm": {"val_mse": float(np.mean((predictor.predict(xv[:, :, 0]) - yv) ** 2))},
                "naive": {"val_mse": float(np.mean((xv[:, -1, 0] - yv) ** 2))}}

    def predict(self, predictor: SineLSTMPredictor, request: SineLSTMRequest,
                ctx: RunContext) -> dict[str, list]:
        """Forecast ``--steps`` values past the end of the series."""
        return {"step": list(range(1, request.steps + 1)),
                "value": predictor.forecast(request.steps)}

    def export_onnx(self, predictor: SineLSTMPredictor, path: Path, ctx: RunContext) -> Path:
        """Not offered by this example (see the forecasting plugin for an end-to-end export)."""
        raise TaskError(f"export: the {self.name!r} example has no ONNX export")
