"""The LSTM forecaster's network and its configuration (feature scaling included).

Features per time step of an input window ``raw[:, t] = (y_t, c_1t, ..., c_Ct)``:

* ``(y_t - y_last) / scale``: the target relative to the window's last value, so a trend or a
  level shift outside the training range does not push inputs off-distribution;
* ``(y_t - mean_y) / std_y``: the absolute level (matters for bounded series such as sunspots);
* ``(c_it - mean_i) / std_i``: each covariate, standardised.

``scale`` is the in-sample mean absolute seasonal difference (the MASE denominator), so the
network's outputs, ``(y_{t+k} - y_last) / scale`` for ``k = 1..horizon`` and each quantile, are in
"MASE units". The network is a multi-layer :class:`pylstm.nn.LSTM` whose last hidden state feeds a
:class:`pylstm.nn.Linear` head with ``horizon * len(quantiles)`` outputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from pylstm import nn
from pylstm.errors import CheckpointError

__all__ = ["ForecastNet", "ForecasterConfig"]


@dataclass(frozen=True)
class ForecasterConfig:
    """Everything needed to rebuild a trained forecaster (the run's ``model.json``)."""

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

    def to_json(self) -> dict[str, Any]:
        """The config as JSON data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str) -> ForecasterConfig:
        """Check every key's type and range before building (errors name ``source``, the key,
        the expected and the actual value): a config that loads is one the network can use."""
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: expected a JSON object, got "
                                  f"{type(data).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        unknown = sorted(set(data) - set(names))
        if missing or unknown:
            raise CheckpointError(f"{source}: expected the keys {', '.join(names)}; missing "
                                  f"{missing or 'none'}, unknown {unknown or 'none'}")

        def bad(key: str, expected: str) -> CheckpointError:
            value = data[key]
            return CheckpointError(f"{source}: {key}: expected {expected}, got "
                                   f"{type(value).__name__} {value!r}")

        def integer(key: str, minimum: int) -> int:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise bad(key, f"an integer >= {minimum}")
            return v

        def number(key: str, ok: Any, what: str) -> float:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    math.isfinite(v) and ok(v)):
                raise bad(key, what)
            return float(v)

        def numbers(key: str, length: int, ok: Any, what: str) -> list[float]:
            v = data[key]
            if not isinstance(v, list) or len(v) != length or not all(
                    not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)
                    and ok(x) for x in v):
                raise bad(key, f"a list of {length} {what}")
            return [float(x) for x in v]

        n_cov = integer("n_covariates", 0)
        quantiles = data["quantiles"]
        if not isinstance(quantiles, list) or not quantiles or not all(
                not isinstance(q, bool) and isinstance(q, (int, float)) and 0 < q < 1
                for q in quantiles) or sorted(set(quantiles)) != quantiles or 0.5 not in quantiles:
            raise bad("quantiles", "a sorted list of distinct numbers in (0, 1) holding 0.5")
        return cls(
            window=integer("window", 2), horizon=integer("horizon", 1), n_covariates=n_cov,
            hidden=integer("hidden", 1), layers=integer("layers", 1),
            dropout=number("dropout", lambda v: 0 <= v < 1, "a number in [0, 1)"),
            quantiles=[float(q) for q in quantiles], season=integer("season", 1),
            scale=number("scale", lambda v: v > 0, "a positive number"),
            mean=numbers("mean", 1 + n_cov, lambda v: True, "numbers (target, covariates)"),
            std=numbers("std", 1 + n_cov, lambda v: v > 0, "positive numbers"),
        )


class ForecastNet(nn.Module):
    """Multi-layer LSTM encoder over the input window + linear multi-horizon quantile head.

    ``net(features)`` on arrays is inference; inside :func:`pylstm.record` (the trainer's loss)
    it records. The scaling helpers are pure functions of the config.
    """

    def __init__(self, cfg: ForecasterConfig, seed: int = 0) -> None:
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
        for name, p in self.lstm.named_parameters():
            if name.startswith("bias_ih_l"):
                p.data[cfg.hidden: 2 * cfg.hidden] = 1.0
        self.lstm.mark_updated()

    def forward(self, feats: Any) -> Any:
        """``[N, window, F]`` float32 features -> ``[N, horizon, Q]`` (network units)."""
        y, _ = self.lstm(feats)
        out = self.head(y[:, -1, :])
        return out.reshape(-1, self.cfg.horizon, len(self.cfg.quantiles))

    # -------------------------------------------------------------------- scaling
    def features(self, raw: np.ndarray) -> np.ndarray:
        """``raw`` ``[N, window, 1 + C]`` (target first) -> network input ``[N, window, 2 + C]``."""
        cfg = self.cfg
        raw = np.asarray(raw, np.float64)
        rel = (raw[:, :, :1] - raw[:, -1:, :1]) / cfg.scale
        absolute = (raw - np.asarray(cfg.mean)) / np.asarray(cfg.std)
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
