"""Attention (dot, general, additive) with key masks: finite differences and behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from _nn_gradcheck import check_grads, layer_run

from pylstm import nn

F64 = np.float64
B, TQ, TK, DQ, DK, DV = 2, 3, 4, 5, 5, 3


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def _make(score, scaled=False):
    kd = DK if score == "dot" else 4
    return nn.Attention(DQ, kd, score=score, attn_dim=6, scaled=scaled, dtype=F64, seed=3), kd


MASK = np.array([[True, True, False, True], [False, True, True, False]])


@pytest.mark.parametrize("score", ["dot", "general", "additive"])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("single", [False, True])
def test_attention_gradients(score, use_mask, single):
    attn, kd = _make(score, scaled=(score == "dot"))
    q = _rand((B, DQ) if single else (B, TQ, DQ), 0)
    k = _rand((B, TK, kd), 1)
    v = _rand((B, TK, DV), 2)
    mask = MASK if use_mask else None

    run = layer_run(lambda **kw: attn.forward(q, k, v, mask=mask, **kw))

    def back(t, d):
        return list(attn.backward(t, d[0], d[1]))

    check_grads(run, back, [q, k, v], module=attn if score != "dot" else None)


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_attention_values_default_to_keys(score):
    attn, kd = _make(score)
    q, k = _rand((B, TQ, DQ), 0), _rand((B, TK, kd), 1)

    run = layer_run(lambda **kw: attn.forward(q, k, mask=MASK, **kw))

    def back(t, d):
        dq, dk, dv = attn.backward(t, d[0], d[1])
        assert dv is None
        return [dq, dk]

    check_grads(run, back, [q, k], module=attn if score != "dot" else None)


def test_attention_mask_and_weights():
    attn, _ = _make("dot")
    q, k, v = _rand((B, TQ, DQ), 0), _rand((B, TK, DK), 1), _rand((B, TK, DV), 2)
    ctx, w = attn.forward(q, k, v, mask=MASK)
    np.testing.assert_allclose(w.sum(-1), 1.0)
    assert not w[0, :, 2].any() and not w[1, :, [0, 3]].any()
    # masked keys have no influence at all
    k2, v2 = k.copy(), v.copy()
    k2[0, 2] += 100.0
    v2[1, 0] -= 50.0
    ctx2, w2 = attn.forward(q, k2, v2, mask=MASK)
    np.testing.assert_allclose(ctx2, ctx, rtol=1e-12)
    # reference: plain softmax over the valid keys
    s = q[0] @ k[0, [0, 1, 3]].T
    e = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(w[0][:, [0, 1, 3]], e / e.sum(-1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(ctx[0], w[0] @ v[0], rtol=1e-12)


def test_attention_all_masked_row_is_zero_and_finite():
    attn, _ = _make("additive")
    q, k = _rand((B, DQ), 0), _rand((B, TK, 4), 1)
    mask = np.array([[False] * TK, [True] * TK])
    (ctx, w), tape = attn.forward(q, k, mask=mask, requires_grad=True)
    assert not ctx[0].any() and not w[0].any()
    dq, dk, _ = attn.backward(tape, np.ones_like(ctx), np.ones_like(w))
    assert np.isfinite(dq).all() and not dq[0].any() and not dk[0].any()


def test_attention_matches_torch_sdpa():
    torch = pytest.importorskip("torch")
    attn, _ = _make("dot", scaled=True)
    q, k, v = _rand((B, TQ, DQ), 0), _rand((B, TK, DK), 1), _rand((B, TK, DV), 2)
    ctx, _ = attn(q, k, v, mask=MASK)
    ref = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v),
        attn_mask=torch.from_numpy(MASK)[:, None, :],
    )
    np.testing.assert_allclose(ctx, ref.numpy(), rtol=1e-10, atol=1e-12)


def test_attention_float32():
    attn = nn.Attention(4, score="general", seed=0)
    q = np.ones((2, 4), np.float32)
    k = np.ones((2, 3, 4), np.float32)
    (ctx, w), _ = attn.forward(q, k, requires_grad=True)
    assert ctx.dtype == np.float32 and w.dtype == np.float32 and ctx.shape == (2, 4)


def test_attention_bad_input():
    attn = nn.Attention(4, score="dot", dtype=F64)
    q, k = np.zeros((2, 4)), np.zeros((2, 3, 4))
    with pytest.raises(nn.ShapeError, match=r"keys: expected shape \[B, Tk, 4\], got \(2, 3\)"):
        attn(q, np.zeros((2, 3)))
    with pytest.raises(nn.ShapeError, match=r"query: expected shape \[2, 4\].*got \(3, 4\)"):
        attn(np.zeros((3, 4)), k)
    with pytest.raises(nn.ShapeError, match=r"mask: expected shape \(2, 3\), got \(2, 4\)"):
        attn(q, k, mask=np.ones((2, 4), bool))
    with pytest.raises(TypeError, match="mask: expected a bool"):
        attn(q, k, mask=np.ones((2, 3)))
    with pytest.raises(nn.ShapeError, match=r"values: expected shape \[2, 3, Dv\]"):
        attn(q, k, np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="score: expected 'dot', 'general' or 'additive'"):
        nn.Attention(4, score="cosine")
    with pytest.raises(ValueError, match=r"key_dim: dot attention needs key_dim == query_dim"):
        nn.Attention(4, 3, score="dot")
