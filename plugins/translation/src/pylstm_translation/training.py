"""Training a :class:`~pylstm_translation.model.Seq2Seq` with :class:`pylstm.train.Trainer`.

Batches by padded token count (length-bucketed, reshuffled per epoch from ``(seed, epoch)``),
label-smoothed cross-entropy over the real target tokens, Adam with linear warm-up then
cosine decay to a twentieth over the planned steps (stepped per optimiser step), gradient-norm
clipping, and the epoch with the lowest validation loss kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pylstm import nn
from pylstm.data import PAD_ID, batches_by_tokens, pad
from pylstm.runs import Run
from pylstm.train import Trainer, TrainOptions

from .model import Seq2Seq

__all__ = ["Batch", "FitOptions", "fit", "make_batch"]

Pair = tuple[Sequence[int], Sequence[int]]


@dataclass
class Batch:
    """A padded training batch: source ids/lengths, decoder input (BOS + target) and output
    (target + EOS) with its mask."""

    src: np.ndarray
    src_len: np.ndarray
    tgt_in: np.ndarray
    tgt_out: np.ndarray
    tgt_mask: np.ndarray

    @property
    def num_tokens(self) -> int:
        """Real target tokens (what tokens per second counts)."""
        return int(self.tgt_mask.sum())


def make_batch(pairs: Sequence[Pair]) -> Batch:
    """Pad a list of ``(source ids, target ids)``; the source gets EOS appended."""
    src = pad([list(s) for s, _ in pairs], PAD_ID, add_eos=True)
    tin = pad([list(t) for _, t in pairs], PAD_ID, add_bos=True)
    tout = pad([list(t) for _, t in pairs], PAD_ID, add_eos=True)
    return Batch(src.ids, src.lengths, tin.ids, tout.ids, tout.mask)


@dataclass
class FitOptions:
    """How :func:`fit` trains (the task maps its CLI options onto these)."""

    epochs: int = 20
    batch_tokens: int = 3000
    lr: float = 2e-3
    warmup: int = 300
    clip: float = 1.0
    label_smoothing: float = 0.1
    time_budget: float | None = None
    patience: int | None = None


def fit(net: Seq2Seq, train: Sequence[Pair], valid: Sequence[Pair], options: FitOptions, *,
        run: Run | None = None, seed: int = 0, resume: bool = False,
        progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """Train ``net`` in place (it ends with the best epoch's weights); the trainer's summary."""
    loss_fn = nn.CrossEntropyLoss(label_smoothing=options.label_smoothing)
    plain_loss = nn.CrossEntropyLoss()
    lengths = np.array([max(len(s), len(t)) + 1 for s, t in train])
    valid_batches = [make_batch([valid[i] for i in b]) for b in batches_by_tokens(
        [max(len(s), len(t)) + 1 for s, t in valid], options.batch_tokens,
        shuffle=False)] if valid else []
    optimizer = nn.Adam(net.parameters(), lr=options.lr, betas=(0.9, 0.98))
    steps_per_epoch = len(batches_by_tokens(lengths, options.batch_tokens, shuffle=False))
    total = max(options.epochs * steps_per_epoch, 2)
    schedule = nn.CosineWarmupLR(optimizer, total_steps=total,
                                 warmup_steps=min(options.warmup, total - 1),
                                 min_lr=options.lr / 20)
    trainer = Trainer(net, optimizer, scheduler=schedule, run=run, progress=progress, seed=seed,
                      options=TrainOptions(
                          epochs=options.epochs, clip=options.clip or None,
                          time_budget=options.time_budget, patience=options.patience,
                          metric="val_loss" if valid else "train_loss", mode="min"))

    def batches(epoch: int) -> list[Batch]:
        return [make_batch([train[i] for i in b]) for b in batches_by_tokens(
            lengths, options.batch_tokens, shuffle=True, seed=seed, epoch=epoch)]

    def loss(batch: Batch) -> Any:
        logits = net.teacher_forced(batch.src, batch.src_len, batch.tgt_in)
        return loss_fn(logits, batch.tgt_out, batch.tgt_mask)

    def validate() -> dict[str, float]:
        total = count = 0.0
        for batch in valid_batches:
            logits = net.teacher_forced(batch.src, batch.src_len, batch.tgt_in)
            n = batch.num_tokens
            total += float(plain_loss(np.asarray(logits), batch.tgt_out, batch.tgt_mask)) * n
            count += n
        return {"val_loss": total / max(count, 1.0)}

    summary = (trainer.resume if resume else trainer.fit)(
        batches, loss, validate if valid else None)
    net.eval()
    return summary
