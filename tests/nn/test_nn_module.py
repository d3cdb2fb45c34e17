"""Module base class and Sequential: naming, zero_grad, train/eval, state dicts, composition."""

from __future__ import annotations

import numpy as np
import pytest
from _nn_gradcheck import check_recorded

import pylstm
from pylstm import nn

F64 = np.float64


def _grads(module):
    """``(name, grad)`` of every parameter."""
    return [(n, p.grad) for n, p in module.named_parameters()]


class Block(nn.Module):
    def __init__(self, seed):
        super().__init__()
        self.proj = nn.Linear(3, 4, dtype=F64, seed=seed)
        self.norm = nn.LayerNorm(4, dtype=F64)
        self.drop = nn.Dropout(0.5, seed=seed)
        self.register_parameter("scale", np.array([1.5]))

    def forward(self, x):
        return self.drop(self.norm(self.proj(x))) * self.scale


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Block(1)
        self.head = nn.Sequential(nn.Linear(4, 2, dtype=F64, seed=2), nn.Linear(2, 1, dtype=F64))

    def forward(self, x):
        return self.head(self.encoder(x))


def test_dotted_names_and_counts():
    m = Model()
    names = [n for n, _ in m.named_parameters()]
    assert names == [
        "encoder.scale", "encoder.proj.weight", "encoder.proj.bias", "encoder.norm.weight",
        "encoder.norm.bias", "head.0.weight", "head.0.bias", "head.1.weight", "head.1.bias",
    ]
    assert [n for n, _ in _grads(m)] == names
    assert m.num_parameters() == 1 + 12 + 4 + 4 + 4 + 8 + 2 + 2 + 1
    assert dict(m.named_parameters())["head.0.weight"] is m.head[0].weight
    assert [n for n, _ in m.named_modules()] == [
        "", "encoder", "encoder.proj", "encoder.norm", "encoder.drop", "head", "head.0", "head.1"
    ]
    assert "Linear(4, 2" in repr(m)


def test_composed_model_finite_differences():
    m = Model()
    m.eval()  # deterministic dropout for finite differences
    x = np.random.default_rng(0).standard_normal((5, 3))

    check_recorded(m, [x], module=m)


def test_zero_grad_train_eval_recursive():
    m = Model()
    x = np.ones((2, 3))
    with pylstm.record():
        y = m(x)
    y.sum().backward()
    grads = dict(_grads(m))
    assert any(g.any() for g in grads.values())
    m.zero_grad()
    assert not any(g.any() for g in dict(_grads(m)).values())
    assert all(g is grads[n] for n, g in _grads(m))  # zeroed in place
    assert m.eval() is m
    assert not any(mod.training for _, mod in m.named_modules())
    m.train()
    assert all(mod.training for _, mod in m.named_modules())
    with pytest.raises(TypeError, match="mode: expected a bool"):
        m.train("no")


def test_state_dict_round_trip_in_place():
    a, b = Model(), Model()
    for _, p in b.named_parameters():
        p.data += 1.0
    live = dict(a.named_parameters())
    a.load_state_dict(b.state_dict())
    for name, p in a.named_parameters():
        assert p is live[name]  # same arrays, updated in place
        np.testing.assert_array_equal(p.data, dict(b.named_parameters())[name].data)
    sd = a.state_dict()
    sd["encoder.scale"][0] = 99.0
    assert a.encoder.scale.data[0] != 99.0  # state_dict holds copies


def test_load_state_dict_errors():
    m = Model()
    sd = m.state_dict()
    with pytest.raises(pylstm.ShapeError, match=r"missing keys \['head.1.bias'\]"):
        m.load_state_dict({k: v for k, v in sd.items() if k != "head.1.bias"})
    m.load_state_dict({"head.1.bias": np.array([3.0])}, strict=False)
    assert m.head[1].bias.data[0] == 3.0
    bad = dict(sd, **{"head.1.bias": np.zeros(2)})
    with pytest.raises(nn.ShapeError, match=r"head.1.bias: expected shape \[1\], got \[2\]"):
        m.load_state_dict(bad)
    bad = dict(sd, **{"head.1.bias": np.array(["x"]), "head.0.bias": np.zeros(7)})
    every = "head.0.bias: expected shape.*head.1.bias: expected a numeric array"
    with pytest.raises(nn.ShapeError, match=every):
        m.load_state_dict(bad)  # every problem in one message
    # a failed load changes nothing
    np.testing.assert_array_equal(m.head[1].bias.data, [3.0])


def test_sequential_gradients_and_errors():
    seq = nn.Sequential(
        nn.Linear(3, 4, dtype=F64, seed=0), nn.LayerNorm(4, dtype=F64),
        nn.Linear(4, 2, dtype=F64, seed=1),
    )
    assert len(seq) == 3 and isinstance(seq[1], nn.LayerNorm)
    x = np.random.default_rng(1).standard_normal((2, 3))

    check_recorded(seq, [x], module=seq)
    with pytest.raises(NotImplementedError, match="not a layer"):
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
