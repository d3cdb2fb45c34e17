"""A small model built from the toolkit's layers, shared by checkpoint/determinism tests."""

from __future__ import annotations

import numpy as np

import pylstm
from pylstm import nn


class Tagger(nn.Module):
    """ids [B, T] -> logits [B, T, C]: Embedding, Dropout, self-attention, LayerNorm, Linear."""

    def __init__(self, vocab=11, dim=6, classes=4, dtype=np.float32, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.embed = nn.Embedding(vocab, dim, padding_idx=0, dtype=dtype, seed=rng)
        self.drop = nn.Dropout(0.3, seed=rng)
        self.attn = nn.Attention(dim, score="additive", attn_dim=5, dtype=dtype, seed=rng)
        self.norm = nn.LayerNorm(dim, dtype=dtype)
        self.out = nn.Linear(dim, classes, dtype=dtype, seed=rng)

    def forward(self, ids, mask=None):
        e = self.drop(self.embed(ids))
        ctx, _ = self.attn(e, e, mask=mask)
        return self.out(self.norm(ctx + e))


def batch(seed=0, b=3, t=5, vocab=11, classes=4):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (b, t))
    lengths = np.array([t, t - 2, 2])[:b]
    mask = np.arange(t)[None, :] < lengths[:, None]
    ids[~mask] = 0
    target = np.where(mask, rng.integers(0, classes, (b, t)), -100)
    return ids, mask, target


def train(model, opt, steps, sched=None, seed=0, clip=1.0):
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    losses = []
    for s in range(steps):
        ids, mask, target = batch(seed + s)
        model.zero_grad()
        with pylstm.record():
            value = loss_fn(model(ids, mask), target)
        value.backward()
        nn.clip_grad_norm_(model, clip)
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(value.item())
    return losses
