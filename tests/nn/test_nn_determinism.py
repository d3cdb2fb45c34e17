"""Determinism: same seed -> identical initialisation, dropout masks and training runs."""

from __future__ import annotations

import numpy as np
import pytest
from _nn_models import Tagger, train

from pylstm import nn


def _params(model):
    return {n: p.data.tobytes() for n, p in model.named_parameters()}


def test_same_seed_same_training_run():
    runs = []
    for _ in range(2):
        model = Tagger(seed=5)
        opt = nn.AdamW(model, lr=0.02)
        losses = train(model, opt, 4, nn.StepLR(opt, 2, 0.5))
        runs.append((losses, _params(model)))
    assert runs[0] == runs[1]
    other = Tagger(seed=6)
    assert _params(other) != _params(Tagger(seed=5))


def test_layers_use_their_own_generators_not_the_global_one():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    layers = [
        nn.Linear(3, 4, seed=1), nn.Embedding(5, 2, seed=1),
        nn.Attention(3, score="additive", seed=1), nn.Dropout(0.5, seed=1),
    ]
    layers[3](np.ones((10, 10), np.float32))
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    a, b = nn.Dropout(0.5, seed=2), nn.Dropout(0.5, seed=2)
    x = np.ones((8, 8))
    m1, m2 = a(x), b(x)
    np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(a(x), m1)  # the stream advances
    np.testing.assert_array_equal(
        nn.Linear(3, 4, seed=1).weight.data, layers[0].weight.data
    )


def test_seed_argument_errors():
    with pytest.raises(TypeError, match="seed: expected an int, a numpy.random.Generator or None"):
        nn.Linear(2, 2, seed=1.5)
