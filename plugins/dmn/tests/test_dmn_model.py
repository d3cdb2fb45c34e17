"""DMN+ and the LSTM baseline: gradients by central differences in float64 (answer loss and
the supporting-fact loss), the positional encoding, the gated memory update, and a task-1
training that beats the majority answer on held-out stories."""

from __future__ import annotations

import numpy as np
import pytest
from pylstm_dmn.babi import generate
from pylstm_dmn.model import (
    BaselineConfig,
    DMNConfig,
    DMNPlus,
    LSTMBaseline,
    position_weights,
    story_sequence,
)
from pylstm_dmn.training import FitOptions, accuracy, batches_for, fit, support_targets
from pylstm_dmn.vocab import Encoded, Vocab, encode, make_batch

import pylstm
from pylstm import autograd as A
from pylstm import nn

F64 = np.float64


def _batch() -> object:
    rng = np.random.default_rng(0)
    samples = []
    for n_facts, sup in ((4, (2, 0)), (2, (1,)), (3, ())):
        facts = [rng.integers(4, 12, rng.integers(1, 5)).tolist() for _ in range(n_facts)]
        samples.append(Encoded(facts, rng.integers(4, 12, 3).tolist(),
                               [int(rng.integers(4, 12)), 3], sup, 1))
    return make_batch(samples)


def _check_fd(model: nn.Module, loss_of, n_entries: int = 4) -> None:
    """Every parameter: backward's gradient equals central differences at a few entries."""
    model.zero_grad()
    with pylstm.record():
        loss = loss_of()
    loss.backward()
    rng = np.random.default_rng(1)
    eps = 1e-6
    for name, p in model.named_parameters():
        flat = p.data.reshape(-1)
        grad = p.grad.reshape(-1)
        nonzero = np.flatnonzero(grad)
        pool = nonzero if nonzero.size else np.arange(flat.size)
        for i in rng.choice(pool, size=min(n_entries, pool.size), replace=False):
            old = flat[i]
            flat[i] = old + eps
            model.mark_updated()
            up = float(A.as_array(loss_of()))
            flat[i] = old - eps
            model.mark_updated()
            down = float(A.as_array(loss_of()))
            flat[i] = old
            model.mark_updated()
            assert grad[i] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8), \
                f"{name}[{i}]"


def test_dmn_gradients_match_finite_differences_with_the_fact_loss() -> None:
    batch = _batch()
    net = DMNPlus(DMNConfig(vocab=12, answer_len=2, dim=5, passes=2, dropout=0.0), seed=3,
                  dtype=F64)
    ce, fact_ce = nn.CrossEntropyLoss(), nn.CrossEntropyLoss(ignore_index=-100)
    targets = support_targets(batch, 2)
    mask = batch.fact_mask

    def loss_of():
        logits, _, scores = net(batch)
        value = ce(logits, batch.answer)
        for k, s in enumerate(scores):
            value = value + fact_ce(A.where(mask, s, np.full(mask.shape, -1e9)), targets[k])
        return value

    _check_fd(net, loss_of)


def test_baseline_gradients_match_finite_differences() -> None:
    batch = _batch()
    net = LSTMBaseline(BaselineConfig(vocab=12, answer_len=2, emb=4, hidden=5, dropout=0.0),
                       seed=2, dtype=F64)
    ce = nn.CrossEntropyLoss()
    _check_fd(net, lambda: ce(net(batch)[0], batch.answer))


def test_position_weights_follow_the_formula_and_skip_padding() -> None:
    facts = np.array([[[5, 6, 7, 0], [9, 0, 0, 0]]])
    w = position_weights(facts, 2, F64)
    m, dim = 3, 2
    for j in range(1, 4):
        for d in range(1, 3):
            want = (1 - j / m) - (d / dim) * (1 - 2 * j / m)
            assert w[0, 0, j - 1, d - 1] == pytest.approx(want)
    assert np.all(w[0, 0, 3] == 0) and np.all(w[0, 1, 1:] == 0)
    assert w[0, 1, 0].tolist() == pytest.approx([(1 - 1) - 0.5 * (1 - 2), 0 - 1 * (1 - 2)])


def test_a_gate_of_zero_leaves_the_episode_unchanged() -> None:
    net = DMNPlus(DMNConfig(vocab=8, dim=4), seed=0, dtype=F64)
    f = np.random.default_rng(0).standard_normal((2, 3, 4))
    g = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    e = np.asarray(A.as_array(net.attention_episode(A.tensor(f), A.tensor(g))))
    one = np.ones((1, 1))
    assert np.allclose(e[0], net.episode(f[0:1, 0:1], one)[0])  # only fact 1 counted
    assert np.allclose(e[1], net.episode(f[1:2, 2:3], one)[0])  # only fact 3


def test_padding_facts_do_not_change_the_answer() -> None:
    batch = _batch()
    net = DMNPlus(DMNConfig(vocab=12, answer_len=2, dim=6), seed=1, dtype=F64).eval()
    logits, gates, _ = net(batch)
    one = make_batch([Encoded([list(r[r != 0]) for r in batch.facts[1, :2]],
                              list(batch.question[1, :batch.q_len[1]]), [4, 3], (1,), 1)])
    alone, alone_gates, _ = net(one)
    assert np.allclose(A.as_array(logits)[1], A.as_array(alone)[0])
    assert np.allclose(A.as_array(gates[0])[1, :2], A.as_array(alone_gates[0])[0])
    assert np.all(A.as_array(gates[0])[1, 2:] == 0)
    ids, lengths = story_sequence(one)
    assert lengths[0] == int((one.facts != 0).sum()) + int(one.q_len[0])


def test_batches_cover_every_sample_once_and_depend_on_seed_and_epoch() -> None:
    enc = [Encoded([[4]] * (1 + i % 7), [5], [6], (), 1) for i in range(100)]
    a = batches_for(enc, 8, shuffle=True, seed=1, epoch=2)
    assert sorted(np.concatenate(a).tolist()) == list(range(100))
    assert all(np.array_equal(x, y) for x, y in
               zip(a, batches_for(enc, 8, shuffle=True, seed=1, epoch=2), strict=True))
    assert not all(np.array_equal(x, y) for x, y in
                   zip(a, batches_for(enc, 8, shuffle=True, seed=1, epoch=3), strict=True))


def test_task_1_trains_in_seconds_well_above_the_majority_answer() -> None:
    train = generate(1, 1000, "train", seed=0)
    test = generate(1, 200, "test", seed=0)
    vocab = Vocab.build(train)
    enc, held = encode(train, vocab, 1, 20), encode(test, vocab, 1, 20)
    net = DMNPlus(DMNConfig(len(vocab), 1, dim=32, passes=2, dropout=0.0), seed=0)
    # epochs, not a time budget: the same result on a busy machine (one engine thread)
    fit(net, enc[100:], enc[:100], FitOptions(epochs=13, batch_size=16, lr=5e-3,
                                              patience=None))
    answers = [e.answer[0] for e in held]
    majority = max(answers.count(a) for a in set(answers)) / len(answers)
    acc = accuracy(net, held)
    assert acc >= 0.9 and acc > majority + 0.5, (acc, majority)


@pytest.mark.parametrize("lr_patience", [0, 3])
def test_fit_decays_the_learning_rate_on_a_validation_plateau_only_when_asked(
        lr_patience, monkeypatch) -> None:
    import pylstm_dmn.training as training

    made = []

    def recording_trainer(*args, **kwargs):
        made.append(kwargs.get("scheduler"))
        return real(*args, **kwargs)

    real = training.Trainer
    monkeypatch.setattr(training, "Trainer", recording_trainer)
    train = generate(1, 30, "train", seed=1)
    vocab = Vocab.build(train)
    enc = encode(train, vocab, 1, 20)
    net = DMNPlus(DMNConfig(len(vocab), 1, dim=8, passes=1, dropout=0.0), seed=0)
    fit(net, enc[10:], enc[:10], FitOptions(epochs=1, batch_size=32, patience=None,
                                             lr_patience=lr_patience))
    (scheduler,) = made
    if lr_patience:
        # the toolkit's plateau schedule (tested there), on the validation accuracy
        assert isinstance(scheduler, pylstm.nn.ReduceLROnPlateau)
        assert (scheduler.mode, scheduler.factor, scheduler.patience) == ("max", 0.5, 3)
    else:
        assert scheduler is None


def test_restarts_keep_the_best_seed_on_validation_and_stop_at_a_perfect_score() -> None:
    from pylstm_dmn.task import _train_dmn

    train = generate(1, 60, "train", seed=2)
    vocab = Vocab.build(train)
    enc = encode(train, vocab, 1, 20)
    cfg = DMNConfig(len(vocab), 1, dim=8, passes=1, dropout=0.0)
    opts = FitOptions(epochs=1, batch_size=16, patience=None, lr_patience=0)
    net, summary = _train_dmn(cfg, enc[20:], enc[:20], opts, restarts=3, seed=5,
                              progress=None)
    assert len(summary["attempts"]) == 3  # one epoch of this tiny model is far from perfect
    assert summary["best"] == max(summary["attempts"])
    assert summary["seed"] == 5 + summary["attempts"].index(summary["best"])
    assert accuracy(net, enc[:20]) == pytest.approx(summary["best"])
    # a validation split the model gets right at once ends the search after one attempt
    easy = [e for e in enc[:20] if e.answer == enc[0].answer][:1]
    tiny = FitOptions(epochs=30, batch_size=16, patience=None, lr_patience=0, lr=3e-2)
    _, summary = _train_dmn(cfg, easy * 8, easy, tiny, restarts=3, seed=0, progress=None)
    assert summary["attempts"] == [1.0]
