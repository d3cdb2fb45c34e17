"""Module base class and Sequential: naming, zero_grad, train/eval, state dicts, composition."""

from __future__ import annotations

import numpy as np
import pytest
from _nn_gradcheck import check_grads

from pylstm import nn

F64 = np.float64


class Block(nn.Module):
    def __init__(self, seed):
        super().__init__()
        self.proj = nn.Linear(3, 4, dtype=F64, seed=seed)
        self.norm = nn.LayerNorm(4, dtype=F64)
        self.drop = nn.Dropout(0.5, seed=seed)
        self.register_parameter("scale", np.array([1.5]))

    def forward(self, x, requires_grad=False):
        h, t1 = self.proj.forward(x, requires_grad=requires_grad)
        h, t2 = self.norm.forward(h, requires_grad=requires_grad)
        h, t3 = self.drop.forward(h, requires_grad=requires_grad)
        out = h * self.parameters["scale"]
        return out, ((t1, t2, t3, h) if requires_grad else None)

    def backward(self, tape, dout):
        t1, t2, t3, h = tape
        self.grads["scale"] += np.sum(dout * h, keepdims=True).reshape(1)
        d = dout * self.parameters["scale"]
        return self.proj.backward(t1, self.norm.backward(t2, self.drop.backward(t3, d)))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Block(1)
        self.head = nn.Sequential(nn.Linear(4, 2, dtype=F64, seed=2), nn.Linear(2, 1, dtype=F64))

    def forward(self, x, requires_grad=False):
        h, t1 = self.encoder.forward(x, requires_grad=requires_grad)
        y, t2 = self.head.forward(h, requires_grad=requires_grad)
        return y, ((t1, t2) if requires_grad else None)

    def backward(self, tape, dout):
        return self.encoder.backward(tape[0], self.head.backward(tape[1], dout))


def test_dotted_names_and_counts():
    m = Model()
    names = [n for n, _ in m.named_parameters()]
    assert names == [
        "encoder.scale", "encoder.proj.weight", "encoder.proj.bias", "encoder.norm.weight",
        "encoder.norm.bias", "head.0.weight", "head.0.bias", "head.1.weight", "head.1.bias",
    ]
    assert [n for n, _ in m.named_grads()] == names
    assert m.num_parameters() == 1 + 12 + 4 + 4 + 4 + 8 + 2 + 2 + 1
    assert dict(m.named_parameters())["head.0.weight"] is m.head[0].parameters["weight"]
    assert [n for n, _ in m.named_modules()] == [
        "", "encoder", "encoder.proj", "encoder.norm", "encoder.drop", "head", "head.0", "head.1"
    ]
    assert "Linear(4, 2" in repr(m)


def test_composed_model_finite_differences():
    m = Model()
    m.eval()  # deterministic dropout for finite differences
    x = np.random.default_rng(0).standard_normal((5, 3))

    def run(rg):
        y, t = m.forward(x, requires_grad=rg)
        return [y], t

    check_grads(run, lambda t, d: [m.backward(t, d[0])], [x], module=m)


def test_zero_grad_train_eval_recursive():
    m = Model()
    x = np.ones((2, 3))
    y, tape = m.forward(x, requires_grad=True)
    m.backward(tape, np.ones_like(y))
    grads = dict(m.named_grads())
    assert any(g.any() for g in grads.values())
    m.zero_grad()
    assert not any(g.any() for g in dict(m.named_grads()).values())
    assert all(g is grads[n] for n, g in m.named_grads())  # zeroed in place
    assert m.eval() is m
    assert not any(mod.training for _, mod in m.named_modules())
    m.train()
    assert all(mod.training for _, mod in m.named_modules())
    with pytest.raises(TypeError, match="mode: expected a bool"):
        m.train("no")


def test_state_dict_round_trip_in_place():
    a, b = Model(), Model()
    for _, p in b.named_parameters():
        p += 1.0
    live = dict(a.named_parameters())
    a.load_state_dict(b.state_dict())
    for name, p in a.named_parameters():
        assert p is live[name]  # same arrays, updated in place
        np.testing.assert_array_equal(p, dict(b.named_parameters())[name])
    sd = a.state_dict()
    sd["encoder.scale"][0] = 99.0
    assert a.encoder.parameters["scale"][0] != 99.0  # state_dict holds copies


def test_load_state_dict_errors():
    m = Model()
    sd = m.state_dict()
    with pytest.raises(KeyError, match=r"missing keys \['head.1.bias'\]"):
        m.load_state_dict({k: v for k, v in sd.items() if k != "head.1.bias"})
    m.load_state_dict({"head.1.bias": np.array([3.0])}, strict=False)
    assert m.head[1].parameters["bias"][0] == 3.0
    bad = dict(sd, **{"head.1.bias": np.zeros(2)})
    with pytest.raises(nn.ShapeError, match=r"state\['head.1.bias'\]: expected shape \(1,\)"):
        m.load_state_dict(bad)
    bad = dict(sd, **{"head.1.bias": np.zeros(1, np.float32)})
    with pytest.raises(nn.DTypeError, match="expected dtype float64, got float32"):
        m.load_state_dict(bad)
    # a failed load changes nothing
    np.testing.assert_array_equal(m.head[1].parameters["bias"], [3.0])


def test_sequential_gradients_and_errors():
    seq = nn.Sequential(
        nn.Linear(3, 4, dtype=F64, seed=0), nn.LayerNorm(4, dtype=F64),
        nn.Linear(4, 2, dtype=F64, seed=1),
    )
    assert len(seq) == 3 and isinstance(seq[1], nn.LayerNorm)
    x = np.random.default_rng(1).standard_normal((2, 3))

    def run(rg):
        y, t = seq.forward(x, requires_grad=rg)
        return [y], t

    check_grads(run, lambda t, d: [seq.backward(t, d[0])], [x], module=seq)
    with pytest.raises(ValueError, match="requires_grad=True"):
        seq.backward(None, np.zeros((2, 2)))


def test_module_misuse():
    class NoInit(nn.Module):
        def __init__(self):
            self.x = 1

    with pytest.raises(RuntimeError, match="super\\(\\).__init__"):
        NoInit()
    m = nn.Module()
    with pytest.raises(ValueError, match="without '.'"):
        m.register_parameter("a.b", np.zeros(1))
    with pytest.raises(TypeError, match="expected a pylstm.nn.Module"):
        m.add_module("x", object())
