"""A small model built from the toolkit's layers, shared by checkpoint/determinism tests."""

from __future__ import annotations

import numpy as np

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

    def forward(self, ids, mask=None, requires_grad=False):
        rg = requires_grad
        e, t1 = self.embed.forward(ids, requires_grad=rg)
        e, t2 = self.drop.forward(e, requires_grad=rg)
        (ctx, _), t3 = self.attn.forward(e, e, mask=mask, requires_grad=rg)
        h, t4 = self.norm.forward(ctx + e, requires_grad=rg)
        y, t5 = self.out.forward(h, requires_grad=rg)
        return y, ((t1, t2, t3, t4, t5) if rg else None)

    def backward(self, tape, dy):
        t1, t2, t3, t4, t5 = tape
        dh = self.norm.backward(t4, self.out.backward(t5, dy))
        dq, dk, _ = self.attn.backward(t3, dh)
        de = self.drop.backward(t2, dh + dq + dk)
        self.embed.backward(t1, de)


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
        logits, tape = model.forward(ids, mask, requires_grad=True)
        value, ltape = loss_fn.forward(logits, target, requires_grad=True)
        model.backward(tape, loss_fn.backward(ltape))
        nn.clip_grad_norm_(model, clip)
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(value)
    return losses
