"""pylstm.data padding: ids, lengths and masks in both layouts, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import pylstm
from pylstm.data import BOS_ID, EOS_ID, PAD_ID, lengths_to_mask, pad


def test_pad_values_lengths_and_mask():
    p = pad([[5, 6, 7], [8], []], PAD_ID)
    np.testing.assert_array_equal(p.ids, [[5, 6, 7], [8, 0, 0], [0, 0, 0]])
    assert p.ids.dtype == np.int64 and p.lengths.dtype == np.int64 and p.mask.dtype == np.bool_
    np.testing.assert_array_equal(p.lengths, [3, 1, 0])
    np.testing.assert_array_equal(
        p.mask, [[True, True, True], [True, False, False], [False, False, False]]
    )
    assert (p.batch_size, p.max_len, p.time_major) == (3, 3, False)


def test_pad_adds_bos_and_eos():
    p = pad([[5, 6, 7], [8], []], 9, add_bos=True, add_eos=True)
    assert (BOS_ID, EOS_ID) == (2, 3)
    np.testing.assert_array_equal(p.ids, [[2, 5, 6, 7, 3], [2, 8, 3, 9, 9], [2, 3, 9, 9, 9]])
    np.testing.assert_array_equal(p.lengths, [5, 3, 2])
    only_eos = pad([[5], [6, 7]], 0, add_eos=True, eos_id=11)
    np.testing.assert_array_equal(only_eos.ids, [[5, 11, 0], [6, 7, 11]])


def test_time_major_is_the_transpose():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(4, 50, size=n).tolist() for n in (7, 1, 4, 0, 7, 3)]
    bm = pad(seqs, 0, add_eos=True)
    tm = pad(seqs, 0, add_eos=True, time_major=True)
    assert tm.ids.shape == (8, 6) and tm.mask.shape == (8, 6) and tm.time_major
    assert tm.ids.flags.c_contiguous and tm.max_len == 8 and tm.batch_size == 6
    np.testing.assert_array_equal(tm.ids, bm.ids.T)
    np.testing.assert_array_equal(tm.mask, bm.mask.T)
    np.testing.assert_array_equal(tm.lengths, bm.lengths)
    for b, s in enumerate(seqs):
        np.testing.assert_array_equal(tm.ids[: len(s), b], s)


def test_mask_marks_exactly_the_real_tokens():
    seqs = [[1, 2, 3, 4], [5, 6], [7]]
    p = pad(seqs, 0)
    np.testing.assert_array_equal(p.ids[p.mask], [1, 2, 3, 4, 5, 6, 7])
    assert np.all(p.ids[~p.mask] == 0)
    np.testing.assert_array_equal(p.mask.sum(axis=1), p.lengths)


def test_pad_accepts_arrays_and_int32():
    rows = [np.array([4, 5], dtype=np.int32), np.array([6], dtype=np.uint16)]
    p = pad(rows, 0, dtype=np.int32)
    assert p.ids.dtype == np.int32
    np.testing.assert_array_equal(p.ids, [[4, 5], [6, 0]])
    square = pad(np.array([[4, 5], [6, 7]]), 0, add_bos=True)
    np.testing.assert_array_equal(square.ids, [[2, 4, 5], [2, 6, 7]])


def test_lengths_to_mask_matches_definition():
    lengths = [3, 0, 5, 1]
    mask = lengths_to_mask(lengths, 6)
    expected = np.array([[t < n for t in range(6)] for n in lengths])
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(lengths_to_mask(lengths), expected[:, :5])
    np.testing.assert_array_equal(
        lengths_to_mask(np.array(lengths), 6, time_major=True), expected.T
    )


@pytest.mark.parametrize(
    ("sequences", "kwargs", "exc", "pattern"),
    [
        (
            [[1, 2], [3.5]],
            {},
            pylstm.DTypeError,
            r"sequences\[1\]\[0\]: expected an int id, got float",
        ),
        ([[1], "ab"], {}, pylstm.DTypeError, r"sequences\[1\]: expected a sequence of int ids"),
        ([[1], 7], {}, pylstm.DTypeError, r"sequences\[1\]: expected a sequence of int ids.*int"),
        ([[True, 2]], {}, pylstm.DTypeError, r"sequences\[0\]\[0\]: expected an int id, got bool"),
        ([[1, -2]], {}, pylstm.LstmValueError, r"sequences\[0\]\[1\]: expected id >= 0, got -2"),
        ([np.ones(2)], {}, pylstm.DTypeError, r"sequences\[0\]: expected integer ids, got dtype"),
        ([np.ones((2, 2), int)], {}, pylstm.ShapeError, r"sequences\[0\]: expected a 1-D"),
        (np.ones((2, 2, 2), int), {}, pylstm.ShapeError, r"sequences: expected a 2-D array"),
        ((s for s in [[1]]), {}, pylstm.DTypeError, r"sequences: expected a sequence of id seq"),
        ([], {}, pylstm.LstmValueError, r"sequences: expected at least one sequence, got 0"),
        ([[1]], {"pad_id": -1}, pylstm.LstmValueError, r"pad_id: expected an int >= 0, got -1"),
        ([[1]], {"pad_id": None}, pylstm.DTypeError, r"pad_id: expected an int, got NoneType"),
        ([[1]], {"add_bos": 1}, pylstm.DTypeError, r"add_bos: expected a bool, got int"),
        ([[1]], {"dtype": np.float32}, pylstm.DTypeError, r"dtype: expected a signed integer"),
        ([[1]], {"dtype": "nonsense"}, pylstm.DTypeError, r"dtype: expected a signed integer"),
        ([[2**40]], {"dtype": np.int32}, pylstm.LstmValueError, r"dtype: ids up to \d+ do not fit"),
    ],
)
def test_pad_bad_input(sequences, kwargs, exc, pattern):
    args = {"pad_id": 0}
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        pad(sequences, **args)


def test_lengths_to_mask_bad_input():
    with pytest.raises(pylstm.LstmValueError, match=r"max_len: expected at least the longest .*5"):
        lengths_to_mask([5, 2], 3)
    with pytest.raises(pylstm.DTypeError, match=r"lengths\[0\]: expected an int length"):
        lengths_to_mask([1.0])
    with pytest.raises(pylstm.LstmValueError, match=r"lengths\[1\]: expected length >= 0"):
        lengths_to_mask([1, -1])
