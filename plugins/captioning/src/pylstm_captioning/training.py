"""Training a :class:`~pylstm_captioning.model.ShowAttendTell` with
:class:`pylstm.train.Trainer`.

An *example* is one (image row, caption ids) pair; an image with several training captions
gives several examples. Batches of ``batch_size`` examples, reshuffled per epoch from
``(seed, epoch)``; the loss is the cross-entropy over the real words plus ``λ`` times the
doubly-stochastic attention penalty; Adam with a short linear warm-up then cosine decay to a
twentieth, gradient-norm clipping, and the epoch with the lowest validation cross-entropy kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import pylstm
from pylstm import nn
from pylstm.data import PAD_ID, batches_by_count, pad
from pylstm.runs import Run
from pylstm.train import Trainer, TrainOptions

from .features import Features
from .model import ShowAttendTell
from .vocab import Vocabulary

__all__ = ["Batch", "Example", "FitOptions", "fit", "make_batch", "make_examples",
           "project_features"]

Example = tuple[int, list[int]]
"""``(row of the image in its Features, caption word ids without BOS/EOS)``."""


def make_examples(vocab: Vocabulary, captions: Sequence[Sequence[str]],
                  max_len: int | None = None) -> list[Example]:
    """One example per caption of each image (``captions[i]`` are image ``i``'s), captions cut
    to ``max_len - 1`` words so that EOS fits the decoding cap."""
    out: list[Example] = []
    for row, caps in enumerate(captions):
        for cap in caps:
            ids = vocab.encode(cap)
            if max_len is not None:
                ids = ids[:max_len - 1]
            if ids:
                out.append((row, ids))
    return out


@dataclass
class Batch:
    """A padded training batch: image rows, decoder input (BOS + words), output (words + EOS)
    and its mask."""

    rows: np.ndarray
    words_in: np.ndarray
    words_out: np.ndarray
    mask: np.ndarray

    @property
    def num_tokens(self) -> int:
        """Real target tokens (what tokens per second counts)."""
        return int(self.mask.sum())


def make_batch(examples: Sequence[Example]) -> Batch:
    """Pad a list of examples."""
    tin = pad([ids for _, ids in examples], PAD_ID, add_bos=True)
    tout = pad([ids for _, ids in examples], PAD_ID, add_eos=True)
    return Batch(np.array([r for r, _ in examples], np.int64), tin.ids, tout.ids, tout.mask)


def project_features(net: ShowAttendTell, features: Features,
                     batch: int = 256) -> Features:
    """``features`` through the decoder's frozen projection (float32, in memory)."""
    grids, means = [], []
    for s in range(0, len(features), batch):
        g, m = net.project(*features.take(range(s, min(s + batch, len(features)))))
        grids.append(g.astype(np.float32))
        means.append(m.astype(np.float32))
    return Features(features.ids, np.concatenate(grids), np.concatenate(means))


@dataclass
class FitOptions:
    """How :func:`fit` trains (the task maps its CLI options onto these)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100
    clip: float = 5.0
    penalty: float = 1.0
    time_budget: float | None = None
    patience: int | None = None


def fit(net: ShowAttendTell, train_features: Features, train: Sequence[Example],
        valid_features: Features | None, valid: Sequence[Example], options: FitOptions, *,
        run: Run | None = None, seed: int = 0, resume: bool = False,
        progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """Train ``net`` in place (it ends with the best epoch's weights); the trainer's summary.

    The features are the encoder's; the frozen projection is fitted on training cells first
    (a seeded sample of 20,000) and the features projected once."""
    rng = np.random.default_rng(seed)
    n, cells = train_features.grid.shape[:2]
    pick = np.sort(rng.choice(n * cells, size=min(20000, n * cells), replace=False))
    sample = np.asarray(train_features.grid.reshape(n * cells, -1)[pick], np.float32)
    net.fit_reduction(sample)  # deterministic: a resumed run refits the same projection
    train_features = project_features(net, train_features)
    if valid_features is not None:
        valid_features = project_features(net, valid_features)
    valid_batches = [make_batch([valid[i] for i in b]) for b in batches_by_count(
        len(valid), options.batch_size, shuffle=False)] if valid else []
    optimizer = nn.Adam(net.trainable_parameters(), lr=options.lr)
    steps_per_epoch = max(len(batches_by_count(len(train), options.batch_size,
                                               shuffle=False)), 1)
    total = max(options.epochs * steps_per_epoch, 2)
    schedule = nn.CosineWarmupLR(optimizer, total_steps=total,
                                 warmup_steps=min(options.warmup, total - 1),
                                 min_lr=options.lr / 20)
    has_valid = bool(valid) and valid_features is not None
    trainer = Trainer(net, optimizer, scheduler=schedule, run=run, progress=progress, seed=seed,
                      options=TrainOptions(
                          epochs=options.epochs, clip=options.clip or None,
                          time_budget=options.time_budget, patience=options.patience,
                          metric="val_loss" if has_valid else "train_loss", mode="min"))

    def batches(epoch: int) -> list[Batch]:
        return [make_batch([train[i] for i in b]) for b in batches_by_count(
            len(train), options.batch_size, shuffle=True, seed=seed, epoch=epoch)]

    def loss(batch: Batch) -> Any:
        grid, mean = train_features.take(batch.rows)
        xent, pen = net.losses(grid, mean, batch.words_in, batch.words_out, batch.mask)
        # the weight as the model's dtype: a float64 0-d constant would promote the gradient
        return xent + pen * net.dtype.type(options.penalty) if net.cfg.attention else xent

    def validate() -> dict[str, float]:
        assert valid_features is not None
        total_loss = count = 0.0
        for batch in valid_batches:
            grid, mean = valid_features.take(batch.rows)
            xent, _ = net.losses(grid, mean, batch.words_in, batch.words_out, batch.mask)
            total_loss += float(xent) * batch.num_tokens
            count += batch.num_tokens
        return {"val_loss": total_loss / max(count, 1.0)}

    with pylstm.blas_threads(1):  # many small per-step products
        summary = (trainer.resume if resume else trainer.fit)(
            batches, loss, validate if has_valid else None)
    net.eval()
    return summary
