"""pylstm.metrics: BLEU and chrF against their definitions (computed here, independently of
sacrebleu's code), and the small metrics on hand-computed cases."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import sacrebleu

import pylstm
from pylstm.metrics import (
    Score,
    bleu,
    bleu_n,
    chrf,
    exact_match,
    perplexity,
    sequence_accuracy,
    token_accuracy,
)


def ngrams(tokens, n):
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu_by_definition(hyps, refs_per_item, max_order=4):
    """Papineni et al. 2002 on whitespace tokens: clipped n-gram precisions pooled over the
    corpus, brevity penalty from the closest reference length (the shorter on a tie)."""
    correct, total = [0] * max_order, [0] * max_order
    c_len = r_len = 0
    for hyp, refs in zip(hyps, refs_per_item, strict=True):
        h = hyp.split()
        rs = [r.split() for r in refs]
        c_len += len(h)
        r_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
        for n in range(1, max_order + 1):
            best = Counter()
            for r in rs:
                best |= ngrams(r, n)
            hn = ngrams(h, n)
            correct[n - 1] += sum(min(c, best[g]) for g, c in hn.items())
            total[n - 1] += sum(hn.values())
    bp = 1.0 if c_len > r_len else math.exp(1 - r_len / c_len)
    return 100 * bp * math.exp(sum(math.log(c / t) for c, t in zip(correct, total,
                                                                      strict=True)) / max_order)


def chrf_by_definition(hyp, ref, order=6, beta=2.0):
    """Popović 2015: character n-grams without spaces, precision and recall averaged over
    n = 1..order, then their F-beta."""
    h, r = "".join(hyp.split()), "".join(ref.split())
    precisions, recalls = [], []
    for n in range(1, order + 1):
        hn, rn = Counter(h[i:i + n] for i in range(len(h) - n + 1)), Counter(
            r[i:i + n] for i in range(len(r) - n + 1))
        match = sum((hn & rn).values())
        precisions.append(match / sum(hn.values()))
        recalls.append(match / sum(rn.values()))
    p, rc = sum(precisions) / order, sum(recalls) / order
    return 100 * (1 + beta**2) * p * rc / (beta**2 * p + rc)


def test_bleu_of_a_hand_worked_pair():
    # 1-4-gram precisions 4/5, 3/4, 2/3, 1/2; hypothesis 5 tokens, reference 6: BP = e^(1-6/5).
    s = bleu(["a b c d e"], ["a b c d f g"], tokenize="none")
    expected = 100 * math.exp(-0.2) * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert s.score == pytest.approx(expected, rel=1e-9)
    assert s.details["precisions"] == pytest.approx([80, 75, 200 / 3, 50])
    assert s.details["bp"] == pytest.approx(math.exp(-0.2))
    assert (s.details["sys_len"], s.details["ref_len"]) == (5, 6)
    assert bleu_n(["a b c d e"], ["a b c d f g"], max_order=1, tokenize="none").score == \
        pytest.approx(100 * math.exp(-0.2) * 0.8)
    assert bleu_n(["a b c d e"], ["a b c d f g"], max_order=2, tokenize="none").score == \
        pytest.approx(100 * math.exp(-0.2) * math.sqrt(0.8 * 0.75))


def test_bleu_of_a_corpus_with_several_references_matches_the_definition():
    hyps = ["the cat sat on the mat", "a dog ran in the big park today", "it is raining again"]
    refs = [["the cat is on the mat", "there is a cat on the mat"],
            ["the dog ran in the park", "a dog was running in a big park today", "dogs ran"],
            ["it is raining again today"]]
    got = bleu(hyps, refs, tokenize="none")
    assert got.score == pytest.approx(bleu_by_definition(hyps, refs), rel=1e-9)
    assert "nrefs:var" in got.signature  # the counts differ between items
    for n in (1, 2, 3):
        assert bleu_n(hyps, refs, max_order=n, tokenize="none").score == pytest.approx(
            bleu_by_definition(hyps, refs, max_order=n), rel=1e-9)


def test_bleu_with_13a_tokenization_equals_sacrebleus_corpus_bleu():
    hyps = ["Hello, world! It's fine.", "The U.S. economy grew 3.5% last year."]
    refs = [["Hello world, it is fine.", "Hello, world! It is fine."],
            ["The US economy grew by 3.5% last year.", "Last year, the U.S. economy grew 3.5%."]]
    expected = sacrebleu.corpus_bleu(hyps, [[r[0] for r in refs], [r[1] for r in refs]])
    got = bleu(hyps, refs)
    assert got.score == pytest.approx(expected.score, rel=1e-12)
    lower = bleu(["HELLO WORLD IT IS FINE"], ["hello world it is fine"], lowercase=True)
    assert lower.score == pytest.approx(100.0) and "case:lc" in lower.signature
    assert bleu(["HELLO WORLD IT IS FINE"], ["hello world it is fine"]).score == 0.0


def test_perfect_match_is_100_and_disjoint_is_0():
    text = ["the quick brown fox jumps over the lazy dog", "a b c d e f"]
    assert bleu(text, text).score == pytest.approx(100.0)
    assert chrf(text, text).score == pytest.approx(100.0)
    other = ["xyz qqq www eee rrr", "uuu iii ooo ppp"]
    assert bleu(text, other).score == 0.0
    assert chrf(["abc"], ["xyz"]).score == 0.0


def test_signature_is_printed_with_the_score():
    s = bleu(["a b c d e"], ["a b c d f g"])
    text = str(s)
    assert text.startswith(f"BLEU|{s.signature} = {s.score:.2f} ")
    for part in ("nrefs:1", "case:mixed", "tok:13a", "smooth:exp",
                 f"version:{sacrebleu.__version__}"):
        assert part in s.signature
    assert "BP = 0.819" in text
    c = chrf(["a b c d e"], ["a b c d f g"])
    assert str(c) == f"chrF2|{c.signature} = {c.score:.2f}" and "nc:6" in c.signature
    assert isinstance(s, Score) and s.name == "BLEU"


def test_a_second_matching_reference_raises_bleu():
    hyp = ["the small cat sat on the red mat"]
    one = bleu(hyp, [["a little cat was sitting on a mat"]])
    two = bleu(hyp, [["a little cat was sitting on a mat", "the small cat sat on the red mat"]])
    assert two.score == pytest.approx(100.0) and one.score < 30
    assert "nrefs:2" in two.signature


def test_chrf_of_a_known_pair_matches_the_definition():
    for hyp, ref in [("the cat sat", "the cats sat"), ("a quick brown fox", "the quick fox"),
                     ("Kalte Sonne scheint", "Die kalte Sonne scheint hell")]:
        assert chrf([hyp], [ref]).score == pytest.approx(chrf_by_definition(hyp, ref), rel=1e-9)
    plus = chrf(["the cat sat"], ["the cats sat"], word_order=2)
    assert plus.name == "chrF2++" and plus.score < chrf(["the cat sat"], ["the cats sat"]).score


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: bleu([], []), pylstm.LstmValueError, "hypotheses.*at least one"),
    (lambda: bleu(["a", "b"], ["a"]), pylstm.ShapeError, r"references.*\(2\), got 1"),
    (lambda: bleu("a b", ["a b"]), pylstm.DTypeError, "hypotheses: expected a list"),
    (lambda: bleu([1], ["a"]), pylstm.DTypeError, r"hypotheses\[0\]: expected a string"),
    (lambda: bleu(["a"], [[]]), pylstm.LstmValueError, r"references\[0\].*at least one"),
    (lambda: bleu(["a"], [["a", 3]]), pylstm.DTypeError, r"references\[0\]"),
    (lambda: bleu(["a"], ["a"], tokenize="spm"), pylstm.LstmValueError, "tokenize"),
    (lambda: bleu(["a"], ["a"], lowercase="yes"), pylstm.DTypeError, "lowercase"),
    (lambda: bleu_n(["a"], ["a"], max_order=5), pylstm.LstmValueError, "max_order"),
    (lambda: chrf(["a"], ["a"], beta=0), pylstm.LstmValueError, "beta"),
    (lambda: chrf(["a"], ["a", "b"]), pylstm.ShapeError, "references"),
])
def test_bad_metric_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_token_and_sequence_accuracy_by_hand():
    pred = np.array([[1, 2, 3], [4, 5, 6]])
    target = np.array([[1, 0, 3], [4, 5, 0]])
    mask = np.array([[True, True, True], [True, True, False]])
    assert token_accuracy(pred, target, mask) == pytest.approx(4 / 5)
    assert token_accuracy(pred, target) == pytest.approx(4 / 6)
    assert token_accuracy(pred, target, mask.astype(np.int64)) == pytest.approx(4 / 5)
    assert sequence_accuracy(pred, target, mask) == 0.5
    assert sequence_accuracy(pred, target) == 0.0
    assert sequence_accuracy(pred, pred) == 1.0


def test_accuracy_input_is_checked():
    pred = np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(pylstm.ShapeError, match=r"target_ids.*\[2, 3\].*\[2, 2\]"):
        token_accuracy(pred, np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(pylstm.ShapeError, match="mask"):
        token_accuracy(pred, pred, np.ones(3, dtype=bool))
    with pytest.raises(pylstm.LstmValueError, match="mask.*none"):
        token_accuracy(pred, pred, np.zeros((2, 3), dtype=bool))
    with pytest.raises(pylstm.DTypeError, match="pred_ids"):
        token_accuracy(pred.astype(float), pred)
    with pytest.raises(pylstm.DTypeError, match="mask"):
        token_accuracy(pred, pred, np.full((2, 3), 2))


def test_perplexity_by_hand():
    assert perplexity(10 * math.log(4), 10) == pytest.approx(4.0)
    assert perplexity(0.0, 5) == 1.0
    assert perplexity(1e6, 1) == math.inf
    for args, name in [((-1.0, 3), "total_nll"), ((float("nan"), 3), "total_nll"),
                       ((1.0, 0), "n_tokens"), ((1.0, -2), "n_tokens")]:
        with pytest.raises(pylstm.LstmValueError, match=name):
            perplexity(*args)


def test_exact_match_by_hand():
    assert exact_match(["Paris ", "london", "Rome"],
                       ["Paris", ["London", "london"], "Milan"]) == pytest.approx(2 / 3)
    assert exact_match([" Paris"], ["Paris"], normalize=None) == 0.0
    assert exact_match(["PARIS"], ["paris"], normalize=str.lower) == 1.0
    # token lists: bAbI-style lists and paths, one reference or several
    assert exact_match([[3, 4], [5], []], [[3, 4], [[6], [5]], []]) == 1.0
    assert exact_match([["n", "s"], ("e",)], [["n", "e"], [" e"]]) == 0.5
    assert exact_match([np.array([1, 2])], [[1, 2]]) == 1.0


def test_exact_match_input_is_checked():
    with pytest.raises(pylstm.ShapeError, match="references"):
        exact_match(["a", "b"], ["a"])
    with pytest.raises(pylstm.LstmValueError, match="predictions.*at least one"):
        exact_match([], [])
    with pytest.raises(pylstm.DTypeError, match=r"predictions\[0\]"):
        exact_match([3], [3])
    with pytest.raises(pylstm.DTypeError, match=r"references\[0\]"):
        exact_match(["a"], [[1]])
    with pytest.raises(pylstm.DTypeError, match=r"references\[0\]"):
        exact_match([[1]], ["a"])
