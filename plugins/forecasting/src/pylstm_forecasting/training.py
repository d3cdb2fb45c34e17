"""Training the forecaster with :class:`pylstm.train.Trainer`.

Pinball loss (:class:`pylstm.nn.QuantileLoss`) over every quantile, Adam, gradient-norm
clipping, a cosine schedule with warm-up stepped per epoch, and the epoch with the lowest
validation MAE of the median in MASE units (``val_mase``) kept. The trainer checkpoints each
epoch into the run folder, so an interrupted run resumes to the same result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pylstm import nn
from pylstm.runs import Run
from pylstm.train import Trainer, TrainOptions

from . import data, metrics
from .model import ForecasterConfig, ForecastNet
from .options import ForecastingOptions

__all__ = ["Prepared", "config_for", "fit"]


class Prepared:
    """A loaded series with its split: what training, evaluation and prediction share."""

    def __init__(self, series: data.Series, split: data.Split) -> None:
        self.series = series
        self.split = split
        self.values = series.values()


def config_for(options: ForecastingOptions, prep: Prepared) -> ForecasterConfig:
    """The network's config: sizes from the options, scaling from the data before the
    validation part (nothing of the validation or held-out data leaks into it)."""
    s, sp, v = prep.series, prep.split, prep.values
    fit_part = v[: sp.val_start]
    std = fit_part.std(axis=0)
    return ForecasterConfig(
        window=sp.window, horizon=sp.horizon, n_covariates=v.shape[1] - 1,
        hidden=options.hidden, layers=options.layers, dropout=options.dropout,
        quantiles=options.learned_quantiles(), season=s.season,
        scale=metrics.mase_scale(s.target[: sp.val_start], s.season),
        mean=fit_part.mean(axis=0).tolist(), std=np.where(std > 0, std, 1.0).tolist(),
    )


def fit(options: ForecastingOptions, prep: Prepared, run: Run, *, resume: bool,
        progress: Callable[..., None] | None) -> tuple[ForecastNet, dict[str, Any]]:
    """Train on the windows before the validation part; ``(network with the best epoch's
    weights, the trainer's summary)``. With ``resume`` the run's checkpoint is continued."""
    sp, v = prep.split, prep.values
    h, w = sp.horizon, sp.window
    train_origins = np.arange(w, sp.val_start - h + 1)[:: options.train_stride]
    val_origins = np.arange(sp.val_start, sp.test_start - h + 1)
    x_tr, y_tr = data.windows(v, train_origins, w, h)
    x_va, y_va = data.windows(v, val_origins, w, h)
    assert y_tr is not None and y_va is not None
    net = ForecastNet(config_for(options, prep), seed=run.seed)
    feats, target = net.features(x_tr), net.target(x_tr, y_tr)
    vfeats, vtarget = net.features(x_va), net.target(x_va, y_va)
    loss_fn = nn.QuantileLoss(net.cfg.quantiles)
    med = net.cfg.median_index
    optimizer = nn.Adam(net.parameters(), lr=options.lr)
    epochs = options.epochs
    schedule = nn.CosineWarmupLR(optimizer, total_steps=epochs,
                                 warmup_steps=min(2, epochs - 1), min_lr=options.lr / 20,
                                 warmup_start_factor=0.2)
    train_options = TrainOptions(
        epochs=epochs, clip=options.clip or None, time_budget=options.time_budget or None,
        metric="val_mase", mode="min", schedule_every="epoch")
    trainer = Trainer(net, optimizer, options=train_options, scheduler=schedule, run=run,
                      progress=progress, seed=run.seed)

    def batches(epoch: int) -> list[np.ndarray]:  # a pure function of (seed, epoch)
        order = np.random.default_rng([run.seed, epoch]).permutation(len(feats))
        return [order[i: i + options.batch_size]
                for i in range(0, len(order), options.batch_size)]

    def loss(idx: np.ndarray) -> Any:
        return loss_fn(net(feats[idx]), target[idx])

    def validate() -> dict[str, float]:
        out = np.concatenate([net(vfeats[i: i + 1024]) for i in range(0, len(vfeats), 1024)])
        return {"val_mase": float(np.mean(np.abs(out[:, :, med] - vtarget)))}

    summary = (trainer.resume if resume else trainer.fit)(batches, loss, validate)
    net.eval()
    return net, summary
