"""Gradients of composite models from one backward call, checked by finite differences in
float64: sequence-to-sequence with attention, a memory loop, a captioning decoder."""

from __future__ import annotations

import numpy as np
import pytest

import pylstm
from pylstm import autograd as A
from pylstm import nn

F64 = np.float64


class Seq2Seq(nn.Module):
    """Bidirectional encoder, LSTMCell decoder with input feeding, attention, tied embeddings."""

    def __init__(self, vocab: int, emb: int, hid: int, score: str) -> None:
        super().__init__()
        self.src_embed = nn.Embedding(vocab, emb, dtype=F64, seed=1)
        self.tgt_embed = nn.Embedding(vocab, emb, dtype=F64, seed=2)
        self.encoder = pylstm.LSTM(emb, hid, bidirectional=True, batch_first=True, dtype=F64,
                                   seed=3)
        self.bridge = nn.Linear(2 * hid, hid, dtype=F64, seed=4)
        self.decoder = pylstm.LSTMCell(emb + hid, hid, dtype=F64, seed=5)
        self.attn = nn.Attention(hid, 2 * hid, score=score, attn_dim=5, dtype=F64, seed=6)
        self.combine = nn.Linear(3 * hid, hid, dtype=F64, seed=7)  # [h, context(2h)]
        self.pre_out = nn.Linear(hid, emb, dtype=F64, seed=8)
        self.out = nn.Linear(emb, vocab, dtype=F64, seed=9)
        self.out.weight = self.tgt_embed.weight  # tied target embeddings
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
        self.hid = hid

    def forward(self, src, src_len, tgt_in, tgt_out, tgt_mask):
        b, t = tgt_in.shape
        src_mask = np.arange(src.shape[1])[None, :] < src_len[:, None]
        keys, (h_n, _) = self.encoder(self.src_embed(src), lengths=src_len)
        h = A.tanh(self.bridge(A.concat([h_n[0], h_n[1]], axis=1)))
        c = A.tensor(np.zeros((b, self.hid)))
        feed = A.tensor(np.zeros((b, self.hid)))
        emb = self.tgt_embed(tgt_in)
        logits = []
        for step in range(t):
            h, c = self.decoder(A.concat([emb[:, step], feed], axis=1), (h, c))
            context, _ = self.attn(h, keys, mask=src_mask)
            feed = A.tanh(self.combine(A.concat([h, context], axis=1)))
            logits.append(self.out(self.pre_out(feed)))
        return self.loss_fn(A.stack(logits, axis=1), tgt_out, tgt_mask)


class MemoryLoop(nn.Module):
    """Episodic memory: several passes of attention gates over facts updating a memory."""

    def __init__(self, dim: int, passes: int) -> None:
        super().__init__()
        self.fusion = pylstm.LSTM(dim, dim // 2, bidirectional=True, batch_first=True,
                                  dtype=F64, seed=11)
        self.gate1 = nn.Linear(4 * dim, dim, dtype=F64, seed=12)
        self.gate2 = nn.Linear(dim, 1, dtype=F64, seed=13)
        self.episode = pylstm.LSTMCell(dim, dim, dtype=F64, seed=14)
        self.update = nn.Linear(3 * dim, dim, dtype=F64, seed=15)
        self.answer = nn.Linear(2 * dim, 4, dtype=F64, seed=16)
        self.passes = passes

    def forward(self, facts, fact_mask, question, answer):
        f, _ = self.fusion(facts)
        q = A.tensor(question)
        m = q
        b, n, _ = f.shape
        for _ in range(self.passes):
            qe, me = A.stack([q] * n, axis=1), A.stack([m] * n, axis=1)
            z = A.concat([f * qe, f * me, A.abs(f - qe), A.abs(f - me)], axis=2)
            scores = self.gate2(A.tanh(self.gate1(z))).reshape(b, n)
            gates = A.masked_softmax(scores, fact_mask)
            h = A.tensor(np.zeros(question.shape))
            c = A.tensor(np.zeros(question.shape))
            for i in range(n):  # attention-based recurrent update: the gate mixes each step
                hn, c = self.episode(f[:, i], (h, c))
                g = gates[:, i].reshape(b, 1)
                h = g * hn + (1 - g) * h
            m = A.relu(self.update(A.concat([m, h, q], axis=1)))
        logits = self.answer(A.concat([m, q], axis=1))
        return nn.CrossEntropyLoss()(logits, answer)


class Captioner(nn.Module):
    """Soft attention over a grid of image features, gated context, doubly-stochastic penalty."""

    def __init__(self, feat: int, vocab: int, hid: int) -> None:
        super().__init__()
        self.init_h = nn.Linear(feat, hid, dtype=F64, seed=21)
        self.init_c = nn.Linear(feat, hid, dtype=F64, seed=22)
        self.embed = nn.Embedding(vocab, 4, dtype=F64, seed=23)
        self.attn = nn.Attention(hid, feat, score="additive", attn_dim=6, dtype=F64, seed=24)
        self.gate = nn.Linear(hid, feat, dtype=F64, seed=25)
        self.cell = pylstm.LSTMCell(4 + feat, hid, dtype=F64, seed=26)
        self.out = nn.Linear(hid, vocab, dtype=F64, seed=27)
        self.penalty = 0.7

    def forward(self, grid, words_in, words_out, mask):
        mean = grid.mean(axis=1)
        h, c = A.tanh(self.init_h(mean)), A.tanh(self.init_c(mean))
        emb = self.embed(words_in)
        logits, alphas = [], []
        for t in range(words_in.shape[1]):
            context, alpha = self.attn(h, grid)
            context = A.sigmoid(self.gate(h)) * context
            h, c = self.cell(A.concat([emb[:, t], context], axis=1), (h, c))
            logits.append(self.out(h))
            alphas.append(alpha)
        loss = nn.CrossEntropyLoss()(A.stack(logits, axis=1), words_out, mask)
        coverage = A.stack(alphas, axis=1).sum(axis=1)  # [B, regions]
        return loss + self.penalty * ((1 - coverage) ** 2).mean()


def _check_fd(model: nn.Module, loss_of, n_entries: int = 6, seed: int = 0) -> None:
    """Every parameter: backward's gradient equals central differences at a few entries."""
    model.zero_grad()
    with pylstm.record():
        loss = loss_of()
    loss.backward()
    rng = np.random.default_rng(seed)
    eps = 1e-6
    checked = 0
    for name, p in model.named_parameters():
        flat = p.data.reshape(-1)
        for i in rng.choice(flat.size, size=min(n_entries, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + eps
            model.mark_updated()
            up = float(loss_of())
            flat[i] = old - eps
            model.mark_updated()
            down = float(loss_of())
            flat[i] = old
            model.mark_updated()
            fd = (up - down) / (2 * eps)
            got = p.grad.reshape(-1)[i]
            assert got == pytest.approx(fd, rel=1e-5, abs=1e-8), f"{name}[{i}]"
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("score", ["general", "additive"])
def test_seq2seq_with_attention_matches_finite_differences(score: str) -> None:
    rng = np.random.default_rng(1)
    vocab, b = 9, 3
    model = Seq2Seq(vocab, 5, 4, score)
    src = rng.integers(0, vocab, (b, 6))
    src_len = np.array([6, 3, 4])
    tgt_in = rng.integers(0, vocab, (b, 4))
    tgt_out = rng.integers(0, vocab, (b, 4))
    tgt_mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], bool)
    model.train()
    _check_fd(model, lambda: model(src, src_len, tgt_in, tgt_out, tgt_mask))
    # the tied weight is one parameter, accumulating both uses
    names = [n for n, _ in model.named_parameters()]
    assert "out.weight" not in names and "tgt_embed.weight" in names
    assert "out.weight" in model.state_dict()


def test_seq2seq_with_dot_attention_matches_finite_differences() -> None:
    rng = np.random.default_rng(2)
    model = Seq2Seq(7, 4, 3, "additive")
    model.attn = nn.Attention(3, score="dot", dtype=F64)

    class KeysDown(nn.Module):  # keys projected to the query size, so dot scores apply
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.proj = nn.Linear(6, 3, dtype=F64, seed=30)

        def forward(self, q, keys, mask=None):
            return self.inner(q, self.proj(keys), mask=mask)

    model.attn = KeysDown(model.attn)
    model.combine = nn.Linear(6, 3, dtype=F64, seed=7)
    model.attn_keys_dim = 3
    src = rng.integers(0, 7, (2, 5))
    tgt_in, tgt_out = np.array([[1, 2, 3], [4, 5, 6]]), np.array([[2, 3, 0], [5, 6, 1]])
    _check_fd(model, lambda: model(src, np.array([5, 2]), tgt_in, tgt_out,
                                   np.ones((2, 3), bool)))


def test_memory_loop_matches_finite_differences() -> None:
    rng = np.random.default_rng(3)
    dim, b, n = 4, 2, 5
    model = MemoryLoop(dim, passes=3)
    facts = rng.standard_normal((b, n, dim))
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    question = rng.standard_normal((b, dim))
    answer = np.array([1, 3])
    _check_fd(model, lambda: model(facts, mask, question, answer))


def test_captioning_decoder_matches_finite_differences() -> None:
    rng = np.random.default_rng(4)
    grid = rng.standard_normal((2, 6, 5))
    words_in = rng.integers(0, 8, (2, 4))
    words_out = rng.integers(0, 8, (2, 4))
    mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool)
    model = Captioner(5, 8, 4)
    _check_fd(model, lambda: model(grid, words_in, words_out, mask))


def test_value_used_twice_gets_both_gradients() -> None:
    x = A.tensor(np.array([1.5, -2.0]), requires_grad=True)
    y = (x * x + A.tanh(x)).sum()
    y.backward()
    assert np.allclose(x.grad, 2 * x.data + 1 - np.tanh(x.data) ** 2)


def test_backward_frees_the_graph_and_refuses_a_second_pass() -> None:
    lstm = pylstm.LSTM(3, 4, dtype=F64, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    with pylstm.record():
        y, _ = lstm(x)
        loss = (y * y).sum()
    lstm_node = y.node
    loss.backward()
    # every node walked dropped its backward (and with it the engine tape) and its inputs
    assert lstm_node.backward_fn is None and lstm_node.inputs == ()
    assert loss.node.backward_fn is None
    with pytest.raises(pylstm.TapeError, match="retain_graph"):
        loss.backward()


def test_retain_graph_allows_a_second_backward_that_accumulates() -> None:
    lin = nn.Linear(3, 2, dtype=F64, seed=0)
    x = np.ones((4, 3))
    with pylstm.record():
        loss = (lin(x) ** 2).sum()
    loss.backward(retain_graph=True)
    once = lin.weight.grad.copy()
    loss.backward()
    assert np.allclose(lin.weight.grad, 2 * once)


def test_whole_sequence_lstm_is_one_recorded_node() -> None:
    lstm = pylstm.LSTM(3, 4, dtype=F64, seed=0)
    with pylstm.record():
        y, (h, c) = lstm(np.zeros((50, 2, 3)))
    assert y.node is h.node is c.node
    assert y.node.name == "LSTM"


def test_arrays_outside_record_are_inference_and_no_grad_stops_recording() -> None:
    lin = nn.Linear(3, 2, seed=0)
    out = lin(np.ones((1, 3), np.float32))
    assert isinstance(out, np.ndarray)
    with pylstm.record(), pylstm.no_grad():
        plain = lin(np.ones((1, 3), np.float32))
        t = lin(pylstm.tensor(np.ones((1, 3), np.float32)))
    assert isinstance(plain, np.ndarray)
    assert isinstance(t, pylstm.Tensor) and not t.requires_grad and t.node is None


def test_numpy_ufuncs_refuse_tensors_that_require_grad() -> None:
    x = A.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(TypeError):
        np.tanh(x)
    assert isinstance(np.ones(3) + x, pylstm.Tensor)  # numpy defers to Tensor's operator
