"""Training DMN+ or the baseline with :class:`pylstm.train.Trainer`.

Batches of ``batch_size`` samples, bucketed by their number of facts (the epoch's permutation
from ``(seed, epoch)``, sorted by fact count inside windows of 20 batches, the batches then
shuffled), so little of the memory loop runs on padding. The loss is the cross-entropy of every
answer position; with ``supervise_facts`` the cross-entropy of each pass's attention scores
against the pass's supporting fact (the ``k``-th listed support, the last one for later passes)
is added with weight ``fact_weight``. Adam, gradient-norm clipping, and the epoch with the best
validation accuracy kept (early stopping after ``patience`` epochs without a better one, and a
time budget).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import pylstm
from pylstm import autograd as A
from pylstm import nn
from pylstm.runs import Run
from pylstm.train import Trainer, TrainOptions

from .vocab import Batch, Encoded, make_batch

__all__ = ["FitOptions", "accuracy", "batches_for", "fit", "predict_ids", "support_targets"]

IGNORE = -100


@dataclass
class FitOptions:
    """How :func:`fit` trains."""

    epochs: int = 100
    batch_size: int = 32
    lr: float = 3e-3
    clip: float = 5.0
    patience: int | None = 10
    #: Halve the learning rate after this many epochs without a better validation accuracy
    #: (``ReduceLROnPlateau``); 0 never does.
    lr_patience: int = 4
    time_budget: float | None = None
    supervise_facts: bool = False
    fact_weight: float = 1.0
    engine_threads: int | None = 1


def batches_for(samples: Sequence[Encoded], batch_size: int, *, shuffle: bool, seed: int = 0,
                epoch: int = 0) -> list[np.ndarray]:
    """Index batches bucketed by fact count (a pure function of ``(seed, epoch)``)."""
    n = len(samples)
    counts = np.array([len(s.facts) for s in samples])
    if not shuffle:
        order = np.argsort(counts, kind="stable")
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    window = batch_size * 20
    parts = []
    for start in range(0, n, window):
        chunk = order[start:start + window]
        parts.append(chunk[np.argsort(counts[chunk], kind="stable")])
    order = np.concatenate(parts)
    out = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def support_targets(batch: Batch, passes: int) -> np.ndarray:
    """``[passes, B]`` the supporting fact each pass should attend to (``IGNORE`` without
    support)."""
    out = np.full((passes, len(batch)), IGNORE, np.int64)
    for i, sup in enumerate(batch.support):
        for k in range(passes):
            if sup:
                out[k, i] = sup[min(k, len(sup) - 1)]
    return out


def predict_ids(net: nn.Module, batch: Batch) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(answer ids [B, L], gates per pass [B, F])`` in inference."""
    with pylstm.no_grad():
        logits, gates, _ = net(batch)
    return (np.asarray(A.as_array(logits)).argmax(axis=-1),
            [np.asarray(A.as_array(g)) for g in gates])


def accuracy(net: nn.Module, samples: Sequence[Encoded], batch_size: int = 128) -> float:
    """Share of samples whose whole answer is right."""
    right = 0
    for idx in batches_for(samples, batch_size, shuffle=False):
        batch = make_batch([samples[i] for i in idx])
        ids, _ = predict_ids(net, batch)
        right += int((ids == batch.answer).all(axis=1).sum())
    return right / max(len(samples), 1)


def fit(net: nn.Module, train: Sequence[Encoded], valid: Sequence[Encoded],
        options: FitOptions, *, run: Run | None = None, seed: int = 0, resume: bool = False,
        progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """Train ``net`` in place (ending with the best epoch's weights); the trainer's summary."""
    loss_fn = nn.CrossEntropyLoss()
    fact_loss = nn.CrossEntropyLoss(ignore_index=IGNORE)
    optimizer = nn.Adam(net.parameters(), lr=options.lr)
    metric = "val_accuracy" if valid else "train_loss"
    mode = "max" if valid else "min"
    scheduler = (nn.ReduceLROnPlateau(optimizer, mode=mode, factor=0.5,
                                      patience=options.lr_patience)
                 if options.lr_patience else None)
    trainer = Trainer(net, optimizer, run=run, progress=progress, seed=seed, scheduler=scheduler,
                      options=TrainOptions(epochs=options.epochs, clip=options.clip or None,
                                           time_budget=options.time_budget,
                                           patience=options.patience, metric=metric,
                                           mode=mode))
    supervise = options.supervise_facts and hasattr(net, "gate_scores")

    def batches(epoch: int) -> list[Batch]:
        return [make_batch([train[i] for i in idx]) for idx in batches_for(
            train, options.batch_size, shuffle=True, seed=seed, epoch=epoch)]

    def loss(batch: Batch) -> Any:
        logits, _, scores = net(batch)
        value = loss_fn(logits, batch.answer)
        if supervise:
            targets = support_targets(batch, len(scores))
            mask = batch.fact_mask
            for k, s in enumerate(scores):
                masked = A.where(mask, s, np.full(mask.shape, -1e9, s.dtype))
                value = value + options.fact_weight * fact_loss(masked, targets[k])
        return value

    def validate() -> dict[str, float]:
        return {"val_accuracy": accuracy(net, valid)}

    with pylstm.blas_threads(1, engine=options.engine_threads):
        summary = (trainer.resume if resume else trainer.fit)(
            batches, loss, validate if valid else None)
    net.eval()
    return summary
