"""pylstm.data batching: every index once, token budgets, epoch determinism, bucketing gains."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

import pylstm
from pylstm.data import (
    OverlongSequenceWarning,
    batches_by_count,
    batches_by_tokens,
    padded_cost,
)


def corpus_lengths(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Sentence lengths shaped like a translation corpus: many short, a long tail."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(3.0, 0.6, n).astype(np.int64), 1, 120)


def as_lists(batches: list[np.ndarray]) -> list[list[int]]:
    return [b.tolist() for b in batches]


@pytest.mark.parametrize(
    ("shuffle", "bucket", "pool_size"),
    [(s, b, p) for s, b in itertools.product([True, False], repeat=2) for p in (None, 300)],
)
def test_every_index_once_and_within_budget(shuffle, bucket, pool_size):
    lens = corpus_lengths()
    batches = batches_by_tokens(
        lens, 1500, shuffle=shuffle, seed=3, epoch=1, bucket=bucket, pool_size=pool_size
    )
    flat = np.concatenate(batches)
    assert flat.dtype == np.int64
    np.testing.assert_array_equal(np.sort(flat), np.arange(lens.size))
    for b in batches:
        assert len(b) >= 1
        assert len(b) * lens[b].max() <= 1500


def test_batches_are_greedy_full_when_sorted():
    """Unshuffled and bucketed, each batch is cut only when the next example would not fit."""
    lens = corpus_lengths(500)
    batches = batches_by_tokens(lens, 1000, shuffle=False, bucket=True)
    order = np.concatenate(batches)
    assert np.all(np.diff(lens[order]) >= 0)  # sorted by length
    for b, nxt in zip(batches[:-1], batches[1:], strict=True):
        grown = np.append(b, nxt[0])
        assert len(grown) * lens[grown].max() > 1000


def test_max_sentences_caps_batches():
    lens = np.ones(100, dtype=np.int64)
    batches = batches_by_tokens(lens, 10_000, max_sentences=16, shuffle=True, seed=0, epoch=0)
    assert sorted(len(b) for b in batches) == [4] + [16] * 6
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(100))


def test_overlong_sequences_get_own_batch_with_warning():
    lens = np.array([5, 7, 500, 6, 900, 4] * 3)
    with pytest.warns(OverlongSequenceWarning, match=r"6 sequence\(s\).*max_tokens=100.*900"):
        batches = batches_by_tokens(lens, 100, shuffle=True, seed=1, epoch=0)
    long_idx = set(np.flatnonzero(lens > 100).tolist())
    alone = [b.tolist() for b in batches if len(b) == 1 and int(b[0]) in long_idx]
    assert sorted(i for (i,) in alone) == sorted(long_idx)
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(lens.size))
    for b in batches:
        assert len(b) == 1 or len(b) * lens[b].max() <= 100


def test_no_warning_when_everything_fits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batches_by_tokens([3, 4, 5], 5, shuffle=False)


def test_empty_examples_cost_one_token():
    batches = batches_by_tokens([0] * 10, 4, shuffle=False)
    assert [len(b) for b in batches] == [4, 4, 2]


def test_same_seed_and_epoch_give_same_batches_whatever_ran_before():
    lens = corpus_lengths()
    first = as_lists(batches_by_tokens(lens, 2000, shuffle=True, seed=7, epoch=3))
    # Unrelated randomness and other epochs in between must not matter (a resumed run).
    np.random.seed(123)
    np.random.rand(10)
    batches_by_tokens(lens, 2000, shuffle=True, seed=7, epoch=0)
    batches_by_tokens(lens, 2000, shuffle=True, seed=7, epoch=4)
    again = as_lists(batches_by_tokens(lens, 2000, shuffle=True, seed=7, epoch=3))
    assert first == again


def test_different_epoch_or_seed_gives_different_batches():
    lens = corpus_lengths()
    e0 = as_lists(batches_by_tokens(lens, 2000, shuffle=True, seed=7, epoch=0))
    e1 = as_lists(batches_by_tokens(lens, 2000, shuffle=True, seed=7, epoch=1))
    s8 = as_lists(batches_by_tokens(lens, 2000, shuffle=True, seed=8, epoch=0))
    assert e0 != e1 and e0 != s8
    # Not just the batch order: ties are broken at random, so compositions change too.
    assert {tuple(sorted(b)) for b in e0} != {tuple(sorted(b)) for b in e1}


def test_unshuffled_batches_ignore_seed_and_epoch():
    lens = corpus_lengths(300)
    a = as_lists(batches_by_tokens(lens, 800, shuffle=False, seed=1, epoch=0))
    b = as_lists(batches_by_tokens(lens, 800, shuffle=False, seed=2, epoch=5))
    assert a == b
    plain = batches_by_tokens(lens, 800, shuffle=False, bucket=False)
    np.testing.assert_array_equal(np.concatenate(plain), np.arange(lens.size))


def test_bucketing_wastes_far_less_padding():
    lens = corpus_lengths()
    real = int(lens.sum())
    waste = {}
    for bucket in (True, False):
        batches = batches_by_tokens(lens, 2000, shuffle=True, seed=0, epoch=0, bucket=bucket)
        waste[bucket] = (padded_cost(lens, batches) - real) / real
    assert waste[True] < 0.15
    assert waste[True] < 0.2 * waste[False]
    pooled = batches_by_tokens(lens, 2000, shuffle=True, seed=0, epoch=0, pool_size=400)
    assert (padded_cost(lens, pooled) - real) / real < 0.5 * waste[False]


def test_padded_cost_counts_rectangles():
    lens = np.array([3, 1, 4, 1, 5])
    assert padded_cost(lens, [np.array([0, 1]), np.array([2, 3, 4])]) == 2 * 3 + 3 * 5


def test_batches_by_count():
    batches = batches_by_count(10, 4, shuffle=False)
    assert as_lists(batches) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    shuffled = batches_by_count(103, 10, shuffle=True, seed=5, epoch=2)
    assert [len(b) for b in shuffled] == [10] * 10 + [3]
    np.testing.assert_array_equal(np.sort(np.concatenate(shuffled)), np.arange(103))
    assert as_lists(shuffled) == as_lists(batches_by_count(103, 10, shuffle=True, seed=5, epoch=2))
    assert as_lists(shuffled) != as_lists(batches_by_count(103, 10, shuffle=True, seed=5, epoch=3))


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"max_tokens": 0}, pylstm.LstmValueError, r"max_tokens: expected an int >= 1, got 0"),
        ({"max_tokens": -5}, pylstm.LstmValueError, r"max_tokens.*got -5"),
        ({"max_tokens": 2.5}, pylstm.DTypeError, r"max_tokens: expected an int, got float"),
        ({"max_tokens": True}, pylstm.DTypeError, r"max_tokens: expected an int, got bool"),
        ({"max_sentences": 0}, pylstm.LstmValueError, r"max_sentences.*got 0"),
        ({"seed": -1}, pylstm.LstmValueError, r"seed: expected an int >= 0, got -1"),
        ({"epoch": "1"}, pylstm.DTypeError, r"epoch: expected an int, got str"),
        ({"shuffle": 1}, pylstm.DTypeError, r"shuffle: expected a bool, got int"),
        ({"pool_size": 0}, pylstm.LstmValueError, r"pool_size.*got 0"),
        ({"lengths": [3, 2.0]}, pylstm.DTypeError, r"lengths\[1\]: expected an int length"),
        ({"lengths": [3, -1]}, pylstm.LstmValueError, r"lengths\[1\]: expected length >= 0"),
        ({"lengths": []}, pylstm.LstmValueError, r"lengths: expected at least one length"),
        ({"lengths": np.ones((2, 2), int)}, pylstm.ShapeError, r"lengths: expected a 1-D"),
        ({"lengths": np.ones(3)}, pylstm.DTypeError, r"lengths: expected integer lengths"),
        ({"lengths": "abc"}, pylstm.DTypeError, r"lengths: expected a sequence of int lengths"),
    ],
)
def test_batches_by_tokens_bad_input(kwargs, exc, pattern):
    args = {"lengths": [3, 4, 5], "max_tokens": 10, "shuffle": True, "seed": 0, "epoch": 0}
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        batches_by_tokens(**args)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "pattern"),
    [
        ((0, 4), {}, pylstm.LstmValueError, r"n: expected an int >= 1, got 0"),
        ((10, 0), {}, pylstm.LstmValueError, r"batch_size: expected an int >= 1, got 0"),
        ((10.0, 2), {}, pylstm.DTypeError, r"n: expected an int, got float"),
        ((10, 2), {"epoch": -2}, pylstm.LstmValueError, r"epoch: expected an int >= 0"),
    ],
)
def test_batches_by_count_bad_input(args, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        batches_by_count(*args, shuffle=True, **kwargs)
