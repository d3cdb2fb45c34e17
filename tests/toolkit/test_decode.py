"""pylstm.decode against exhaustive search: a random model whose next-token distribution depends
on the whole prefix (carried in the search state), every sequence up to max_len enumerated."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

import pylstm
from pylstm.decode import Hypothesis, beam_search, greedy_search, length_penalty, reorder_state

EOS, BOS = 0, 1


class PrefixModel:
    """log p(next | prefix) drawn from a generator seeded by the row's seed and the whole prefix
    (BOS first). The prefix lives in the state, so a state reordered wrongly scores wrongly.
    BOS is never predicted (-inf). aux is the prefix fed so far, padded with -1."""

    def __init__(self, vocab: int, max_len: int, *, eos_bias: float = 0.0, scale: float = 1.5,
                 dtype: type = np.float64) -> None:
        self.vocab, self.max_len, self.eos_bias, self.scale = vocab, max_len, eos_bias, scale
        self.dtype = dtype
        self.cache: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
        self.calls = 0
        self.rows_seen: set[int] = set()

    def log_probs(self, seed: int, prefix: tuple[int, ...]) -> np.ndarray:
        key = (int(seed), tuple(int(x) for x in prefix))
        if key not in self.cache:
            rng = np.random.default_rng([key[0], 7919, *key[1]])
            logits = rng.normal(size=self.vocab) * self.scale
            logits[EOS] += self.eos_bias
            logits[BOS] = -np.inf
            top = logits.max()
            lp = logits - top - np.log(np.exp(logits - top).sum())
            self.cache[key] = lp.astype(self.dtype)
        return self.cache[key]

    def step(self, tokens, state):
        self.calls += 1
        assert tokens.dtype == np.int64 and tokens.ndim == 1
        self.rows_seen.add(len(tokens))
        hist = np.concatenate([state["hist"], tokens[:, None]], axis=1)
        lp = np.stack([self.log_probs(s, tuple(r)) for s, r in zip(state["seed"], hist,
                                                                    strict=True)])
        aux = np.full((len(tokens), self.max_len + 1), -1, dtype=np.int64)
        aux[:, : hist.shape[1]] = hist
        return lp, {"hist": hist, "seed": state["seed"]}, aux


def initial_state(seeds):
    return {"hist": np.zeros((len(seeds), 0), dtype=np.int64),
            "seed": np.asarray(seeds, dtype=np.int64)}


def exhaustive(model, seed, *, max_len, alpha, min_len=0):
    """Every hypothesis the search could return, as (normalized, tokens, score, finished), best
    first."""
    out = []

    def extend(prefix, tokens, score):
        lp = model.log_probs(seed, prefix)
        if len(tokens) >= min_len and np.isfinite(lp[EOS]):
            out.append((tokens, score + float(lp[EOS]), True))
        for w in range(2, model.vocab):
            if len(tokens) + 1 == max_len:
                out.append((tokens + [w], score + float(lp[w]), False))
            else:
                extend(prefix + (w,), tokens + [w], score + float(lp[w]))

    extend((BOS,), [], 0.0)
    ranked = [(s / length_penalty(len(t) + f, alpha), t, s, f) for t, s, f in out]
    ranked.sort(key=lambda r: -r[0])
    return ranked


def rescore(model, seed, hyp):
    """The hypothesis's score recomputed from the model, token by token."""
    prefix, total = (BOS,), 0.0
    for w in hyp.tokens + ([EOS] if hyp.finished else []):
        total += float(model.log_probs(seed, prefix)[w])
        prefix += (w,)
    return total


@pytest.mark.parametrize(("vocab", "max_len", "alpha", "min_len"), [
    (5, 4, 0.0, 0), (5, 4, 1.0, 0), (5, 4, 0.6, 2), (4, 5, 2.0, 1), (6, 3, 0.0, 1),
])
def test_wide_beam_finds_the_exhaustive_n_best(vocab, max_len, alpha, min_len):
    # E output tokens (EOS + the non-BOS ones): step t ranks E * (E-1)^(t-1) extensions, so a
    # beam that wide keeps every prefix and lets every EOS extension finish.
    n_out = vocab - 1
    beam = n_out * (n_out - 1) ** (max_len - 1)
    seeds = [11, 12, 13]
    model = PrefixModel(vocab, max_len, eos_bias=0.5)
    results = beam_search(model.step, initial_state(seeds), batch_size=len(seeds), bos_id=BOS,
                          eos_id=EOS, beam_size=beam, max_len=max_len, length_penalty=alpha,
                          n_best=4, min_len=min_len)
    assert model.rows_seen == {len(seeds) * beam}
    for seed, nbest in zip(seeds, results, strict=True):
        expected = exhaustive(model, seed, max_len=max_len, alpha=alpha, min_len=min_len)[:4]
        assert [h.tokens for h in nbest] == [e[1] for e in expected]
        assert [h.finished for h in nbest] == [e[3] for e in expected]
        np.testing.assert_allclose([h.normalized_score for h in nbest], [e[0] for e in expected],
                                   rtol=1e-12)
        np.testing.assert_allclose([h.score for h in nbest], [e[2] for e in expected], rtol=1e-12)


def test_narrow_beam_scores_are_the_models_scores():
    # Not exhaustive (V=12, beam 4): each returned hypothesis's score and normalized score must
    # still be exactly its sum of model log-probabilities, so back-pointers and state agree.
    max_len, alpha = 7, 0.8
    model = PrefixModel(12, max_len, eos_bias=1.0)
    seeds = [3, 4]
    results = beam_search(model.step, initial_state(seeds), batch_size=2, bos_id=BOS, eos_id=EOS,
                          beam_size=4, max_len=max_len, length_penalty=alpha, n_best=4)
    for seed, nbest in zip(seeds, results, strict=True):
        assert len(nbest) == 4
        for h in nbest:
            assert h.score == pytest.approx(rescore(model, seed, h), rel=1e-12)
            assert h.normalized_score == pytest.approx(
                h.score / ((5 + h.length) / 6) ** alpha, rel=1e-12)
            assert BOS not in h.tokens and EOS not in h.tokens
            assert h.length <= max_len


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_of_one_is_greedy_search(seed, dtype):
    max_len = 9
    seeds = [seed * 10 + i for i in range(5)]
    model = PrefixModel(7, max_len, eos_bias=0.3, dtype=dtype)
    greedy = greedy_search(model.step, initial_state(seeds), batch_size=5, bos_id=BOS,
                           eos_id=EOS, max_len=max_len, min_len=1)
    beam = beam_search(model.step, initial_state(seeds), batch_size=5, bos_id=BOS, eos_id=EOS,
                       beam_size=1, max_len=max_len, length_penalty=0.0, min_len=1)
    assert [b[0] for b in beam] == greedy
    assert any(g.finished for g in greedy) and any(len(g.tokens) > 1 for g in greedy)


def test_greedy_takes_the_argmax_at_every_step():
    max_len = 6
    model = PrefixModel(6, max_len)
    (hyp,) = greedy_search(model.step, initial_state([5]), batch_size=1, bos_id=BOS, eos_id=EOS,
                           max_len=max_len)
    prefix, total = (BOS,), 0.0
    for w in hyp.tokens + ([EOS] if hyp.finished else []):
        lp = model.log_probs(5, prefix)
        assert w == int(np.argmax(lp))
        total += float(lp[w])
        prefix += (w,)
    assert hyp.score == total == hyp.normalized_score


def test_n_best_is_sorted_and_distinct():
    model = PrefixModel(10, 8, eos_bias=0.8)
    results = beam_search(model.step, initial_state([21, 22, 23]), batch_size=3, bos_id=BOS,
                          eos_id=EOS, beam_size=6, max_len=8, length_penalty=1.0, n_best=6)
    for nbest in results:
        assert len(nbest) == 6
        scores = [h.normalized_score for h in nbest]
        assert scores == sorted(scores, reverse=True)
        assert len({(tuple(h.tokens), h.finished) for h in nbest}) == 6


def test_batched_results_equal_the_per_row_results():
    seeds = [31, 32, 33, 34]
    model = PrefixModel(9, 7, eos_bias=0.5)
    kwargs = dict(bos_id=BOS, eos_id=EOS, beam_size=3, max_len=7, length_penalty=0.7, n_best=3)
    batched = beam_search(model.step, initial_state(seeds), batch_size=4, **kwargs)
    for seed, nbest in zip(seeds, batched, strict=True):
        (alone,) = beam_search(model.step, initial_state([seed]), batch_size=1, **kwargs)
        assert alone == nbest
    greedy = greedy_search(model.step, initial_state(seeds), batch_size=4, bos_id=BOS,
                           eos_id=EOS, max_len=7)
    for seed, hyp in zip(seeds, greedy, strict=True):
        assert greedy_search(model.step, initial_state([seed]), batch_size=1, bos_id=BOS,
                             eos_id=EOS, max_len=7) == [hyp]


def test_aux_follows_the_chosen_hypothesis():
    max_len = 6
    model = PrefixModel(8, max_len, eos_bias=0.5)

    def expected_aux(h):
        rows = []
        for i in range(h.length):  # row i: the prefix fed when token i was chosen
            row = np.full(max_len + 1, -1)
            fed = [BOS] + h.tokens[:i]
            row[: len(fed)] = fed
            rows.append(row)
        return np.stack(rows)

    beams = beam_search(model.step, initial_state([41, 42]), batch_size=2, bos_id=BOS,
                        eos_id=EOS, beam_size=4, max_len=max_len, n_best=4)
    hyps = [h for nbest in beams for h in nbest]
    hyps += greedy_search(model.step, initial_state([41, 42]), batch_size=2, bos_id=BOS,
                          eos_id=EOS, max_len=max_len)
    assert any(h.finished for h in hyps) and any(not h.finished for h in hyps)
    for h in hyps:
        assert h.aux.shape == (len(h.tokens) + h.finished, max_len + 1)
        np.testing.assert_array_equal(h.aux, expected_aux(h))


def test_without_aux_hypotheses_carry_none():
    model = PrefixModel(6, 4)

    def step(tokens, state):
        lp, new_state, _ = model.step(tokens, state)
        return lp, new_state

    assert greedy_search(step, initial_state([1]), batch_size=1, bos_id=BOS, eos_id=EOS,
                         max_len=4)[0].aux is None
    assert beam_search(step, initial_state([1]), batch_size=1, bos_id=BOS, eos_id=EOS,
                       beam_size=2, max_len=4)[0][0].aux is None


def test_custom_reorder_keeps_per_batch_state():
    # An "encoder output" kept once per batch element (not per hypothesis): the step maps row n
    # to batch element n // beam, and the custom reorder leaves it alone.
    seeds, beam = [51, 52, 53], 3
    model = PrefixModel(8, 6, eos_bias=0.4)
    seen_enc_rows = set()

    def step(tokens, state):
        seen_enc_rows.add(state["enc"].shape[0])
        rows = {"hist": state["hist"], "seed": state["enc"][np.arange(len(tokens)) // beam, 0]}
        lp, new_rows, aux = model.step(tokens, rows)
        return lp, {"hist": new_rows["hist"], "enc": state["enc"]}, aux

    def reorder(state, index):
        return {"hist": state["hist"][index], "enc": state["enc"]}

    enc = np.stack([np.array(seeds), np.zeros(3, dtype=np.int64)], axis=1)
    kwargs = dict(batch_size=3, bos_id=BOS, eos_id=EOS, beam_size=beam, max_len=6, n_best=2)
    custom = beam_search(step, {"hist": np.zeros((3, 0), dtype=np.int64), "enc": enc},
                         reorder=reorder, **kwargs)
    default = beam_search(model.step, initial_state(seeds), **kwargs)
    assert custom == default
    assert seen_enc_rows == {3}


def test_eos_at_the_first_step():
    # EOS certain at the first step: every search returns the empty, finished hypothesis.
    def step(tokens, state):
        lp = np.full((len(tokens), 5), -np.inf)
        lp[:, EOS] = 0.0
        return lp, state

    state = np.zeros((2, 1))
    greedy = greedy_search(step, state, batch_size=2, bos_id=BOS, eos_id=EOS, max_len=5)
    assert greedy == [Hypothesis([], 0.0, 0.0, True)] * 2
    beams = beam_search(step, state, batch_size=2, bos_id=BOS, eos_id=EOS, beam_size=3,
                        max_len=5, n_best=3)
    # Only one hypothesis has a finite score; the others are not padded in.
    assert beams == [[Hypothesis([], 0.0, 0.0, True)]] * 2


def test_eos_likely_at_the_first_step_heads_the_n_best():
    model = PrefixModel(6, 5, eos_bias=6.0)
    (nbest,) = beam_search(model.step, initial_state([61]), batch_size=1, bos_id=BOS,
                           eos_id=EOS, beam_size=3, max_len=5, length_penalty=0.0, n_best=3)
    assert nbest[0].tokens == [] and nbest[0].finished and nbest[0].aux.shape == (1, 6)
    assert model.calls < 5  # stopped early: nothing live could beat the finished three


@pytest.mark.parametrize("min_len", [1, 3, 5])
def test_min_len_is_honoured(min_len):
    model = PrefixModel(6, 5, eos_bias=6.0)  # EOS almost certain whenever allowed
    greedy = greedy_search(model.step, initial_state([71, 72]), batch_size=2, bos_id=BOS,
                           eos_id=EOS, max_len=5, min_len=min_len)
    assert all(len(h.tokens) == min_len for h in greedy)
    assert all(h.finished == (min_len < 5) for h in greedy)
    beams = beam_search(model.step, initial_state([71, 72]), batch_size=2, bos_id=BOS,
                        eos_id=EOS, beam_size=3, max_len=5, n_best=3, min_len=min_len)
    assert all(len(h.tokens) >= min_len for nbest in beams for h in nbest)


def test_max_len_is_a_hard_cap():
    model = PrefixModel(6, 4, eos_bias=-np.inf)  # EOS never possible

    greedy = greedy_search(model.step, initial_state([81]), batch_size=1, bos_id=BOS, eos_id=EOS,
                           max_len=4)
    assert model.calls == 4 and len(greedy[0].tokens) == 4 and not greedy[0].finished
    model.calls = 0
    (nbest,) = beam_search(model.step, initial_state([81]), batch_size=1, bos_id=BOS, eos_id=EOS,
                           beam_size=3, max_len=4, n_best=3)
    assert model.calls == 4
    assert all(len(h.tokens) == 4 and not h.finished for h in nbest)
    assert all(h.normalized_score == pytest.approx(h.score / (9 / 6)) for h in nbest)


def test_length_penalty_is_gnmts():
    assert length_penalty(7, 0.0) == 1.0
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
    assert length_penalty(1, 0.6) == 1.0
    assert length_penalty(13, 0.5) == pytest.approx(3 ** 0.5)


# ---- bad input -------------------------------------------------------------------------------

def _good_step(tokens, state):
    return np.log(np.full((len(tokens), 4), 0.25)), state


BEAM_ARGS = dict(batch_size=2, bos_id=1, eos_id=0, beam_size=3, max_len=5)


@pytest.mark.parametrize(("override", "argument"), [
    ({"beam_size": 0}, "beam_size"), ({"beam_size": 2.0}, "beam_size"),
    ({"beam_size": True}, "beam_size"), ({"max_len": 0}, "max_len"),
    ({"batch_size": 0}, "batch_size"), ({"length_penalty": -0.5}, "length_penalty"),
    ({"length_penalty": float("nan")}, "length_penalty"),
    ({"length_penalty": float("inf")}, "length_penalty"), ({"n_best": 4}, "n_best"),
    ({"n_best": 0}, "n_best"), ({"min_len": 6}, "min_len"), ({"min_len": -1}, "min_len"),
    ({"bos_id": 4}, "bos_id"), ({"eos_id": 7}, "eos_id"), ({"eos_id": -1}, "eos_id"),
])
def test_bad_search_arguments_are_named(override, argument):
    with pytest.raises(pylstm.LstmValueError, match=argument):
        beam_search(_good_step, np.zeros((2, 1)), **{**BEAM_ARGS, **override})


def test_bad_greedy_arguments_are_named():
    with pytest.raises(pylstm.LstmValueError, match="max_len"):
        greedy_search(_good_step, None, batch_size=1, bos_id=1, eos_id=0, max_len=-2)
    with pytest.raises(pylstm.LstmValueError, match="bos_id.*vocabulary size 4"):
        greedy_search(_good_step, None, batch_size=1, bos_id=9, eos_id=0, max_len=2)


def _step_returning(make):
    calls = []

    def step(tokens, state):
        calls.append(1)
        return make(len(tokens), len(calls))

    return step


def _lp(rows, vocab=4):
    return np.log(np.full((rows, vocab), 1.0 / vocab))


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda n, c: (_lp(n + 1), None), pylstm.ShapeError, r"log_probs.*\[6, V\].*\[7, 4\]"),
    (lambda n, c: (_lp(n)[0], None), pylstm.ShapeError, "log_probs: expected shape"),
    (lambda n, c: (_lp(n, 4 if c == 1 else 5), None), pylstm.ShapeError, "4 columns.*step 1"),
    (lambda n, c: (np.zeros((n, 4), dtype=np.int64), None), pylstm.DTypeError, "float"),
    (lambda n, c: (np.where(np.arange(n)[:, None] == 0, np.nan, _lp(n)), None),
     pylstm.LstmValueError, "nan in row 0"),
    (lambda n, c: (np.ones((n, 4)), None), pylstm.LstmValueError, "log-probabilities"),
    (lambda n, c: (np.full((n, 4), np.inf), None), pylstm.LstmValueError, "log-probabilities"),
    (lambda n, c: _lp(n), pylstm.LstmValueError, "expected it to return"),
    (lambda n, c: (_lp(n), None, np.zeros((n + 1, 3))), pylstm.ShapeError, "aux.*6 rows"),
    (lambda n, c: (_lp(n), None, np.zeros((n, c))), pylstm.ShapeError, "aux.*step 1"),
    (lambda n, c: (_lp(n), None) if c == 1 else (_lp(n), None, np.zeros(n)),
     pylstm.LstmValueError, "at every step or never"),
])
def test_a_wrong_step_output_is_a_clear_error(make, error, match):
    with pytest.raises(error, match=match):
        beam_search(_step_returning(make), None, **BEAM_ARGS)


def test_nan_in_a_finished_row_is_ignored():
    # Row 0 ends at once; its later (ignored) rows may hold NaN without failing the search.
    def step(tokens, state):
        lp = np.log(np.full((2, 3), [[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]))
        lp[tokens == 0] = np.nan
        return lp, state

    hyps = greedy_search(step, None, batch_size=2, bos_id=1, eos_id=0, max_len=3)
    assert hyps[0].tokens == [] and hyps[1].tokens == [2, 2, 2]


def test_state_with_the_wrong_rows_is_named():
    with pytest.raises(pylstm.ShapeError, match=r"state\['enc'\].*2 rows.*\[3, 4\]"):
        beam_search(_good_step, {"h": np.zeros((2, 1)), "enc": np.zeros((3, 4))}, **BEAM_ARGS)

    def step(tokens, state):
        return _lp(len(tokens)), {"h": state["h"][:1]}

    with pytest.raises(pylstm.ShapeError, match=r"state\['h'\].*6 rows"):
        beam_search(step, {"h": np.zeros((2, 1))}, **BEAM_ARGS)
    with pytest.raises(pylstm.DTypeError, match=r"state\[1\].*list"):
        beam_search(_good_step, (np.zeros((2, 1)), [1, 2]), **{**BEAM_ARGS})


def test_reorder_state_takes_rows_of_every_leaf():
    Pair = namedtuple("Pair", "h c")
    state = {"lstm": [Pair(np.arange(3), np.arange(6).reshape(3, 2))], "mask": None,
             "extra": (np.array([10.0, 20.0, 30.0]),)}
    out = reorder_state(state, np.array([2, 2, 0]))
    assert isinstance(out["lstm"][0], Pair) and out["mask"] is None
    np.testing.assert_array_equal(out["lstm"][0].h, [2, 2, 0])
    np.testing.assert_array_equal(out["lstm"][0].c, [[4, 5], [4, 5], [0, 1]])
    np.testing.assert_array_equal(out["extra"][0], [30.0, 30.0, 10.0])
    with pytest.raises(pylstm.ShapeError, match=r"state\['lstm'\]\[0\]\[0\].*at least 4 rows"):
        reorder_state(state, np.array([3, 0, 0]))
    with pytest.raises(pylstm.ShapeError, match="index"):
        reorder_state(state, np.array([0.5]))


def test_rows_per_step_call_stay_batch_times_beam():
    model = PrefixModel(7, 5)
    beam_search(model.step, initial_state([1, 2]), batch_size=2, bos_id=BOS, eos_id=EOS,
                beam_size=4, max_len=5)
    assert model.rows_seen == {8} and 1 <= model.calls <= 5


def test_hypothesis_is_frozen():
    h = Hypothesis([1], -1.0, -1.0, True, None)
    with pytest.raises(AttributeError):
        h.score = 0.0  # type: ignore[misc]
    assert h.length == 2 and h != Hypothesis([1], -1.0, -1.0, False, None)


def test_every_sequence_enumerated_has_the_expected_count():
    # The reference itself: E-1 = 3 non-EOS tokens, max_len 3 -> 1 + 3 + 9 finished + 27 cut.
    model = PrefixModel(5, 3)
    assert len(exhaustive(model, 0, max_len=3, alpha=0.0)) == 1 + 3 + 9 + 27


def test_ties_go_to_the_lowest_token_id():
    # Uniform over EOS, 2 and 3 at every step: every score ties, so only the tie rule decides.
    def step(tokens, state):
        lp = np.full((len(tokens), 4), np.log(1 / 3))
        lp[:, BOS] = -np.inf
        return lp, state

    greedy = greedy_search(step, None, batch_size=2, bos_id=BOS, eos_id=EOS, max_len=4, min_len=2)
    assert [h.tokens for h in greedy] == [[2, 2]] * 2
    beams = beam_search(step, None, batch_size=2, bos_id=BOS, eos_id=EOS, beam_size=3,
                        max_len=6, length_penalty=0.0, n_best=3)
    assert [[h.tokens for h in nbest] for nbest in beams] == [[[], [2], [2, 2]]] * 2


def test_top_k_matches_a_stable_sort():
    from pylstm.decode.topk import top_k

    rng = np.random.default_rng(0)
    values = rng.integers(-4, 1, size=(50, 40)).astype(float)  # many ties
    values[rng.random(values.shape) < 0.2] = -np.inf
    wide = rng.normal(size=(20, 13000))  # wide rows (a vocabulary) take the block prefilter
    wide[:10] = np.round(wide[:10], 1)  # ties across blocks
    wide[5, 12990:] = 9.0  # the best entries in the short last block
    wide[6, :] = -np.inf
    wide[6, [7, 4000]] = 0.0  # fewer finite entries than k
    wide[7, 12800:12803] = 8.0  # some of the best entries in the last block
    wide[7, [10, 600]] = 8.5
    for arr, ks in ((values, (1, 3, 10, 40, 45)), (wide, (1, 4, 6, 3))):
        for k in ks:
            idx, vals = top_k(arr, k)
            expected = np.argsort(-arr, axis=1, kind="stable")[:, :k]
            np.testing.assert_array_equal(idx, expected)
            np.testing.assert_array_equal(vals, np.take_along_axis(arr, expected, 1))


@pytest.mark.parametrize("beam", [1, 3])
def test_a_cap_per_row_decodes_each_row_as_it_decodes_alone(beam):
    # low EOS odds: most hypotheses run into their cap, which differs per row
    caps, seeds = [2, 6, 4], [11, 12, 13]
    model = PrefixModel(6, max(caps), eos_bias=-3.0)

    def run(rows, row_caps):
        if beam == 1:
            return greedy_search(model.step, initial_state(rows), batch_size=len(rows),
                                 bos_id=BOS, eos_id=EOS, max_len=row_caps)
        return [n[0] for n in beam_search(model.step, initial_state(rows),
                                          batch_size=len(rows), bos_id=BOS, eos_id=EOS,
                                          beam_size=beam, max_len=row_caps)]

    together = run(seeds, caps)
    alone = [run([s], c)[0] for s, c in zip(seeds, caps, strict=True)]
    for got, want, cap in zip(together, alone, caps, strict=True):
        assert got.tokens == want.tokens and got.score == pytest.approx(want.score)
        assert len(got.tokens) + int(got.finished) <= cap
    assert any(not h.finished and len(h.tokens) == c for h, c in zip(together, caps,
                                                                    strict=True))


def test_caps_per_row_must_match_the_batch():
    model = PrefixModel(5, 4)
    with pytest.raises(pylstm.LstmValueError, match=r"max_len: expected an integer or one per "
                                                     r"row \(2\), got shape \[3\]"):
        greedy_search(model.step, initial_state([1, 2]), batch_size=2, bos_id=BOS,
                      eos_id=EOS, max_len=[3, 3, 3])
    with pytest.raises(pylstm.LstmValueError, match="min_len: expected at most max_len=2"):
        beam_search(model.step, initial_state([1, 2]), batch_size=2, bos_id=BOS, eos_id=EOS,
                    beam_size=2, max_len=[2, 4], min_len=3)
