"""The translation network learns to copy and to reverse short sequences (BLEU > 90 on
held-out sequences), for each attention; beam search scores at least as well as greedy."""

from __future__ import annotations

import numpy as np
import pytest
from pylstm_translation.model import Seq2Seq, TranslatorConfig
from pylstm_translation.search import decode
from pylstm_translation.training import FitOptions, fit

from pylstm import metrics

VOCAB = 14  # ids 4..13 are "words"


def _task(n: int, seed: int, reverse: bool) -> list[tuple[list[int], list[int]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        src = rng.integers(4, VOCAB, rng.integers(3, 8)).tolist()
        out.append((src, src[::-1] if reverse else list(src)))
    return out


def _words(ids: list[int]) -> str:
    return " ".join(f"w{i}" for i in ids)


def _bleu(net: Seq2Seq, pairs, beam: int) -> float:
    hyps = decode(net, [s for s, _ in pairs], beam=beam)
    return metrics.bleu([_words(h.ids) for h in hyps], [_words(t) for _, t in pairs]).score


@pytest.mark.parametrize("attention,reverse", [("general", True), ("dot", False),
                                               ("additive", True), ("concat", False)])
def test_learns_to_copy_or_reverse(attention: str, reverse: bool) -> None:
    train, test = _task(1500, 0, reverse), _task(100, 1, reverse)
    cfg = TranslatorConfig(src_vocab=VOCAB, tgt_vocab=VOCAB, emb=32, hidden=32,
                           attention=attention, dropout=0.0)
    net = Seq2Seq(cfg, seed=0)
    fit(net, train, test[:50], FitOptions(epochs=12, batch_tokens=400, lr=1e-2, warmup=20,
                                          label_smoothing=0.0))
    assert _bleu(net, test[50:], beam=1) > 90


def test_beam_scores_at_least_greedy() -> None:
    train, test = _task(600, 2, True), _task(40, 3, True)
    cfg = TranslatorConfig(src_vocab=VOCAB, tgt_vocab=VOCAB, emb=16, hidden=16,
                           attention="general", dropout=0.0)
    net = Seq2Seq(cfg, seed=1)
    fit(net, train, [], FitOptions(epochs=2, batch_tokens=300, lr=1e-2, warmup=10))
    greedy = decode(net, [s for s, _ in test], beam=1)
    beam = decode(net, [s for s, _ in test], beam=4, length_penalty=0.0)
    assert all(b.score >= g.score - 1e-6 for b, g in zip(beam, greedy, strict=True))
    assert any(b.score > g.score + 1e-6 for b, g in zip(beam, greedy, strict=True))
