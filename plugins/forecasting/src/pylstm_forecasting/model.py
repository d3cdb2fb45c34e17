"""The LSTM forecaster: feature scaling, network, quantile training loop, save/load.

Features per time step of an input window ``raw[:, t] = (y_t, c_1t, ..., c_Ct)``:

* ``(y_t - y_last) / scale``: the target relative to the window's last value, so a trend or a
  level shift outside the training range does not push inputs off-distribution;
* ``(y_t - mean_y) / std_y``: the absolute level (matters for bounded series such as sunspots);
* ``(c_it - mean_i) / std_i``: each covariate, standardised.

``scale`` is the in-sample mean absolute seasonal difference (the MASE denominator), so the
network's outputs, ``(y_{t+k} - y_last) / scale`` for ``k = 1..horizon`` and each quantile, are in
"MASE units". The network is a multi-layer :class:`pylstm.nn.LSTM` whose last hidden state feeds a
:class:`pylstm.nn.Linear` head with ``horizon * len(quantiles)`` outputs, trained with the pinball
(:class:`pylstm.nn.QuantileLoss`) loss, Adam, gradient-norm clipping and a cosine schedule.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pylstm import nn

__all__ = ["ForecasterConfig", "Forecaster", "fit", "save", "load"]

WEIGHTS = "model.safetensors"
CONFIG = "forecaster.json"


@dataclass
class ForecasterConfig:
    """Everything needed to rebuild a trained forecaster (saved as ``forecaster.json``)."""

    window: int
    horizon: int
    n_covariates: int
    hidden: int
    layers: int
    dropout: float
    quantiles: list[float]
    season: int
    scale: float
    mean: list[float]
    std: list[float]

    @property
    def n_features(self) -> int:
        """Network input size: relative target, absolute target, covariates."""
        return 2 + self.n_covariates

    @property
    def median_index(self) -> int:
        """Column of the 0.5 quantile (the point forecast)."""
        return int(np.argmin(np.abs(np.asarray(self.quantiles) - 0.5)))


class Forecaster(nn.Module):
    """Multi-layer LSTM encoder over the input window + linear multi-horizon quantile head."""

    def __init__(self, cfg: ForecasterConfig, seed: int | None = 0) -> None:
        super().__init__()
        self.cfg = cfg
        rng = np.random.default_rng(seed)
        self.lstm = nn.LSTM(cfg.n_features, cfg.hidden, cfg.layers, batch_first=True,
                            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
                            seed=int(rng.integers(2**31)))
        self.head = nn.Linear(cfg.hidden, cfg.horizon * len(cfg.quantiles),
                              seed=int(rng.integers(2**31)))
        # forget-gate bias 1 (Jozefowicz et al. 2015): the state remembers a whole season from
        # the start instead of a few steps, which avoids a long plateau on seasonal series
        for name, value in self.lstm.parameters.items():
            if name.startswith("bias_ih_l"):
                value[cfg.hidden : 2 * cfg.hidden] = 1.0

    # -------------------------------------------------------------------- scaling
    def features(self, raw: np.ndarray) -> np.ndarray:
        """``raw`` ``[N, window, 1 + C]`` (target first) -> network input ``[N, window, 2 + C]``."""
        cfg = self.cfg
        raw = np.asarray(raw, np.float64)
        mean, std = np.asarray(cfg.mean), np.asarray(cfg.std)
        rel = (raw[:, :, :1] - raw[:, -1:, :1]) / cfg.scale
        absolute = (raw - mean) / std
        return np.concatenate([rel, absolute], axis=2).astype(np.float32)

    def to_raw(self, raw: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Network output ``[N, H, Q]`` -> forecasts in data units.

        The quantile outputs are sorted (monotone rearrangement, Chernozhukov et al. 2010): the
        pinball loss trains each one separately, and crossed quantiles would give an interval
        whose lower end lies above its upper end. Sorting never increases the pinball loss."""
        last = np.asarray(raw, np.float64)[:, -1, 0]
        out = np.sort(np.asarray(out, np.float64), axis=-1)
        return last[:, None, None] + self.cfg.scale * out

    def target(self, raw: np.ndarray, future: np.ndarray) -> np.ndarray:
        """Future values ``[N, H]`` -> training targets in network units."""
        last = np.asarray(raw, np.float64)[:, -1, 0]
        return ((future - last[:, None]) / self.cfg.scale).astype(np.float32)

    # -------------------------------------------------------------------- network
    def forward(self, feats: np.ndarray, requires_grad: bool = False) -> tuple[np.ndarray, Any]:
        """``[N, window, F]`` float32 -> ``[N, horizon, Q]`` (network units)."""
        (y, _), lstm_tape = self.lstm.forward(feats, requires_grad=requires_grad)
        last = np.ascontiguousarray(y[:, -1, :])
        out, head_tape = self.head.forward(last, requires_grad=requires_grad)
        out = out.reshape(len(feats), self.cfg.horizon, len(self.cfg.quantiles))
        tape = (lstm_tape, head_tape, y.shape, y.dtype) if requires_grad else None
        return out, tape

    def backward(self, tape: Any, dout: np.ndarray) -> None:  # type: ignore[override]
        """Accumulate parameter gradients for ``dout`` ``[N, horizon, Q]``."""
        lstm_tape, head_tape, y_shape, y_dtype = tape
        dlast = self.head.backward(head_tape, dout.reshape(dout.shape[0], -1))
        dy = np.zeros(y_shape, y_dtype)
        dy[:, -1, :] = dlast
        self.lstm.backward(lstm_tape, dy)

    def predict(self, raw: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Forecasts in data units, ``[N, horizon, Q]``, for raw windows ``[N, window, 1+C]``."""
        was_training = self.training
        self.eval()
        try:
            outs = [self(self.features(raw[i : i + batch_size]))
                    for i in range(0, len(raw), batch_size)]
        finally:
            self.train(was_training)
        out = np.concatenate(outs, axis=0) if outs else np.zeros(
            (0, self.cfg.horizon, len(self.cfg.quantiles)), np.float32)
        return self.to_raw(raw, out)


def fit(
    model: Forecaster,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    clip: float,
    seed: int,
    on_epoch: Callable[..., None] | None = None,
    time_budget: float = 0.0,
) -> dict[str, float]:
    """Train on raw windows ``x_*`` ``[N, window, 1+C]`` and futures ``y_*`` ``[N, horizon]``.

    Keeps the weights of the epoch with the lowest validation MAE of the median (in MASE units,
    ``val_mase``); ``on_epoch(epoch, loss=..., val_mase=...)`` is called after each epoch.
    Stops early after ``time_budget`` seconds when it is positive. Returns a summary.
    """
    rng = np.random.default_rng(seed)
    feats, target = model.features(x_train), model.target(x_train, y_train)
    vfeats, vtarget = model.features(x_val), model.target(x_val, y_val)
    loss_fn = nn.QuantileLoss(model.cfg.quantiles)
    opt = nn.Adam(model, lr=lr)
    sched = nn.CosineWarmupLR(opt, total_steps=max(epochs, 1), warmup_steps=min(2, epochs - 1),
                              min_lr=lr / 20, warmup_start_factor=0.2)
    med = model.cfg.median_index
    best, best_state, best_epoch = math.inf, model.state_dict(), 0
    start = time.perf_counter()
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(feats))
        total, count = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            model.zero_grad()
            out, tape = model.forward(feats[idx], requires_grad=True)
            loss, ltape = loss_fn.forward(out, target[idx], requires_grad=True)
            model.backward(tape, loss_fn.backward(ltape))
            if clip > 0:
                nn.clip_grad_norm_(model, clip)
            opt.step()
            total += loss * len(idx)
            count += len(idx)
        sched.step()
        model.eval()
        vout = np.concatenate([model(vfeats[i : i + 1024]) for i in range(0, len(vfeats), 1024)])
        val = float(np.mean(np.abs(vout[:, :, med] - vtarget)))
        if not math.isfinite(total):
            break
        if val < best:
            best, best_state, best_epoch = val, model.state_dict(), epoch
        if on_epoch is not None:
            on_epoch(epoch, loss=total / max(count, 1), val_mase=val)
        if time_budget > 0 and time.perf_counter() - start > time_budget:
            break
    model.load_state_dict(best_state)
    model.eval()
    return {"best_epoch": best_epoch, "epochs_run": epoch, "best_val_mase": best,
            "train_seconds": time.perf_counter() - start}


def save(model: Forecaster, directory: Path) -> None:
    """Write ``model.safetensors`` (weights) and ``forecaster.json`` (config) to ``directory``."""
    nn.save_weights(directory / WEIGHTS, model.state_dict())
    (directory / CONFIG).write_text(json.dumps(asdict(model.cfg), indent=2) + "\n")


def load(directory: Path) -> Forecaster:
    """Rebuild the forecaster saved by :func:`save`."""
    cfg = ForecasterConfig(**json.loads((directory / CONFIG).read_text()))
    model = Forecaster(cfg, seed=0)
    model.load_state_dict(nn.load_weights(directory / WEIGHTS))
    model.eval()
    return model
