"""Evaluation metrics: BLEU and chrF through sacrebleu (each score carries sacrebleu's
signature, printed with it), and the small ones of training and question answering: token and
sequence accuracy, perplexity, exact match.

``references`` for BLEU/chrF are given per hypothesis: one string each, or a list of strings each
(several references, e.g. 5 captions per image; the count may vary between items).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pylstm.errors import DTypeError, LstmValueError, ShapeError

__all__ = ["Score", "bleu", "bleu_n", "chrf", "exact_match", "perplexity", "sequence_accuracy",
           "token_accuracy"]

# sacrebleu's BLEU tokenizers that need no download (spm/flores fetch a SentencePiece model;
# ja-mecab/ko-mecab need their own packages installed).
OFFLINE_TOKENIZERS = ("13a", "none", "intl", "char", "zh", "ja-mecab", "ko-mecab")


@dataclass(frozen=True)
class Score:
    """A corpus score.

    * ``name``: e.g. ``"BLEU"``, ``"BLEU-2"``, ``"chrF2"``, ``"chrF2++"``.
    * ``score``: 0-100.
    * ``signature``: sacrebleu's reproducibility signature (``nrefs:1|case:mixed|...``).
    * ``details``: the statistics behind it; for BLEU ``precisions`` (per n-gram order, 0-100),
      ``bp``, ``sys_len``, ``ref_len``, ``ratio``, ``counts``, ``totals``, ``max_order``.
    * ``verbose``: what sacrebleu prints after the score (BLEU's precisions and BP).

    ``str(score)`` is sacrebleu's score line with the signature, e.g.
    ``BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 27.31 ...``.
    """

    name: str
    score: float
    signature: str
    details: dict[str, Any] = field(default_factory=dict)
    verbose: str = ""

    def __str__(self) -> str:
        line = f"{self.name}|{self.signature} = {self.score:.2f}"
        return f"{line} {self.verbose}" if self.verbose else line


def bleu(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], *,
         tokenize: str = "13a", lowercase: bool = False) -> Score:
    """Corpus BLEU (up to 4-grams, sacrebleu's defaults: exponential smoothing, closest reference
    length for the brevity penalty), one or several references per hypothesis."""
    return _bleu(hypotheses, references, tokenize=tokenize, lowercase=lowercase, max_order=4,
                 name="BLEU")


def bleu_n(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], *,
           max_order: int, tokenize: str = "13a", lowercase: bool = False) -> Score:
    """Cumulative BLEU-n (geometric mean of the 1..n-gram precisions times the brevity penalty),
    as captioning reports BLEU-1..4. (COCO's scorer tokenizes with the PTB tokenizer; here
    sacrebleu's ``tokenize`` applies.)"""
    if isinstance(max_order, bool) or not isinstance(max_order, (int, np.integer)) \
            or not 1 <= max_order <= 4:
        raise LstmValueError(f"max_order: expected an integer from 1 to 4, got {max_order!r}")
    return _bleu(hypotheses, references, tokenize=tokenize, lowercase=lowercase,
                 max_order=int(max_order), name=f"BLEU-{max_order}")


def chrf(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], *,
         char_order: int = 6, word_order: int = 0, beta: int = 2,
         lowercase: bool = False) -> Score:
    """Corpus chrF (Popović 2015; ``word_order=2`` is chrF++), sacrebleu's implementation: with
    several references each hypothesis is scored against its best-matching one."""
    hyps, streams = _corpus(hypotheses, references)
    for name, value, low in (("char_order", char_order, 1), ("word_order", word_order, 0),
                             ("beta", beta, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise LstmValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    metric = _sacrebleu().metrics.CHRF(char_order=int(char_order), word_order=int(word_order),
                                       beta=int(beta), lowercase=_flag("lowercase", lowercase))
    result = metric.corpus_score(hyps, streams)
    return Score(name=result.name, score=float(result.score),
                 signature=str(metric.get_signature()),
                 details={"char_order": char_order, "word_order": word_order, "beta": beta})


def token_accuracy(pred_ids: Any, target_ids: Any, mask: Any = None) -> float:
    """The fraction of positions (where ``mask`` is true; all when ``None``) with
    ``pred_ids == target_ids``. Arrays of any equal shape, e.g. ``[B, T]``."""
    hit, keep = _compare_ids(pred_ids, target_ids, mask)
    n = int(keep.sum())
    if n == 0:
        raise LstmValueError("mask: expected at least one position to score, got none")
    return float((hit & keep).sum()) / n


def sequence_accuracy(pred_ids: Any, target_ids: Any, mask: Any = None) -> float:
    """The fraction of rows (axis 0) whose every position where ``mask`` is true matches (a
    whole answer right, e.g. a bAbI list or path). Rows with no position in the mask count as
    right; at least one row is needed."""
    hit, keep = _compare_ids(pred_ids, target_ids, mask)
    if hit.ndim < 1 or hit.shape[0] == 0:
        raise ShapeError(f"pred_ids: expected at least one row, got shape {list(hit.shape)}")
    rows_right = (hit | ~keep).reshape(hit.shape[0], -1).all(axis=1)
    return float(rows_right.mean())


def perplexity(total_nll: float, n_tokens: float) -> float:
    """``exp(total_nll / n_tokens)``: ``total_nll`` the summed negative log-likelihood (natural
    log) of ``n_tokens`` tokens. ``inf`` when it overflows."""
    if isinstance(total_nll, bool) or not isinstance(total_nll, (int, float, np.number)) \
            or not math.isfinite(total_nll) or total_nll < 0:
        raise LstmValueError(f"total_nll: expected a finite sum of negative log-likelihoods "
                             f"(>= 0), got {total_nll!r}")
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, (int, float, np.number)) \
            or not math.isfinite(n_tokens) or n_tokens <= 0:
        raise LstmValueError(f"n_tokens: expected a positive count, got {n_tokens!r}")
    try:
        return math.exp(float(total_nll) / float(n_tokens))
    except OverflowError:
        return math.inf


def exact_match(predictions: Sequence[Any], references: Sequence[Any], *,
                normalize: Callable[[str], str] | None = str.strip) -> float:
    """The fraction of predictions equal to (one of) their references.

    Each prediction is a string or a token list (a list/tuple of ids or strings). Its reference
    is one of the same kind or a list of several: for a string prediction, a string or a list of
    strings; for a token-list prediction, a token list or a list of token lists. ``normalize``
    (``None`` for none) is applied to every string compared, tokens included."""
    _check_lengths(predictions, references)
    norm = normalize if normalize is not None else (lambda s: s)
    right = 0
    for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
        if isinstance(pred, str):
            options = [ref] if isinstance(ref, str) else _several(ref, i)
            got, wanted = norm(pred), [norm(_as_str(r, i)) for r in options]
        elif isinstance(pred, (list, tuple, np.ndarray)):
            several = len(ref) > 0 and isinstance(ref, (list, tuple)) and all(
                isinstance(r, (list, tuple, np.ndarray)) for r in ref)
            options = list(ref) if several else [ref]
            got = _tokens(pred, norm, f"predictions[{i}]")
            wanted = [_tokens(r, norm, f"references[{i}]") for r in options]
        else:
            raise DTypeError(f"predictions[{i}]: expected a string or a token list, got "
                             f"{type(pred).__name__}")
        right += any(got == w for w in wanted)
    return right / len(predictions)


# ---- helpers ---------------------------------------------------------------------------------

def _sacrebleu() -> Any:
    try:
        import sacrebleu
        import sacrebleu.metrics
    except ImportError as exc:  # pragma: no cover - sacrebleu is in the test extra
        raise ImportError("pylstm.metrics.bleu/chrf need sacrebleu: pip install 'pylstm[text]'"
                          ) from exc
    return sacrebleu


def _bleu(hypotheses: Any, references: Any, *, tokenize: str, lowercase: bool, max_order: int,
          name: str) -> Score:
    hyps, streams = _corpus(hypotheses, references)
    if tokenize not in OFFLINE_TOKENIZERS:
        raise LstmValueError(f"tokenize: expected one of {', '.join(OFFLINE_TOKENIZERS)}, "
                             f"got {tokenize!r}")
    metric = _sacrebleu().metrics.BLEU(tokenize=tokenize, lowercase=_flag("lowercase", lowercase),
                                       max_ngram_order=max_order)
    r = metric.corpus_score(hyps, streams)
    details = {"precisions": list(r.precisions), "bp": float(r.bp), "sys_len": int(r.sys_len),
               "ref_len": int(r.ref_len), "ratio": float(r.ratio), "counts": list(r.counts),
               "totals": list(r.totals), "max_order": max_order}
    verbose = (f"{'/'.join(f'{p:.1f}' for p in r.precisions)} (BP = {r.bp:.3f} ratio = "
               f"{r.ratio:.3f} hyp_len = {r.sys_len:d} ref_len = {r.ref_len:d})")
    return Score(name=name, score=float(r.score), signature=str(metric.get_signature()),
                 details=details, verbose=verbose)


def _corpus(hypotheses: Any, references: Any) -> tuple[list[str], list[list[str | None]]]:
    """Hypotheses and per-hypothesis references checked, and the references as sacrebleu's
    reference streams (stream j holds every item's j-th reference, ``None`` where an item has
    fewer)."""
    _check_lengths(hypotheses, references, "hypotheses")
    hyps = [_as_str(h, i, "hypotheses") for i, h in enumerate(hypotheses)]
    per_item = [[r] if isinstance(r, str) else _several(r, i)
                for i, r in enumerate(references)]
    width = max(len(refs) for refs in per_item)
    streams: list[list[str | None]] = [
        [refs[j] if j < len(refs) else None for refs in per_item] for j in range(width)]
    return hyps, streams


def _check_lengths(items: Any, references: Any, name: str = "predictions") -> None:
    for arg, value in ((name, items), ("references", references)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise DTypeError(f"{arg}: expected a list, got {type(value).__name__}")
    if len(items) == 0:
        raise LstmValueError(f"{name}: expected at least one item, got an empty list")
    if len(items) != len(references):
        raise ShapeError(f"references: expected one entry per item of {name} ({len(items)}), "
                         f"got {len(references)}")


def _several(value: Any, i: int) -> list[str]:
    """Several string references of item ``i``."""
    if not isinstance(value, (list, tuple)):
        raise DTypeError(f"references[{i}]: expected a string or a list of strings, got "
                         f"{type(value).__name__}")
    if not value:
        raise LstmValueError(f"references[{i}]: expected at least one reference, got none")
    return [_as_str(v, i) for v in value]


def _as_str(value: Any, i: int, name: str = "references") -> str:
    if not isinstance(value, str):
        raise DTypeError(f"{name}[{i}]: expected a string, got {type(value).__name__}")
    return value


def _tokens(value: Any, norm: Callable[[str], str], name: str) -> tuple[Any, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, np.ndarray)):
        raise DTypeError(f"{name}: expected a token list, got {type(value).__name__}")
    return tuple(norm(t) if isinstance(t, str) else int(t) if isinstance(t, np.integer) else t
                 for t in value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise DTypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def _compare_ids(pred_ids: Any, target_ids: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred_ids), np.asarray(target_ids)
    for name, arr in (("pred_ids", pred), ("target_ids", target)):
        if arr.dtype.kind not in "iub":
            raise DTypeError(f"{name}: expected integer token ids, got dtype {arr.dtype}")
    if pred.shape != target.shape:
        raise ShapeError(f"target_ids: expected the shape of pred_ids {list(pred.shape)}, got "
                         f"{list(target.shape)}")
    if pred.size == 0:
        raise ShapeError(f"pred_ids: expected at least one position, got shape "
                         f"{list(pred.shape)}")
    if mask is None:
        keep = np.ones(pred.shape, dtype=bool)
    else:
        keep = np.asarray(mask)
        if keep.shape != pred.shape:
            raise ShapeError(f"mask: expected the shape of pred_ids {list(pred.shape)}, got "
                             f"{list(keep.shape)}")
        if keep.dtype.kind not in "biu" or (keep.dtype.kind != "b" and not np.isin(keep, (0, 1))
                                            .all()):
            raise DTypeError(f"mask: expected bool (or 0/1) values, got dtype {keep.dtype}")
        keep = keep.astype(bool)
    return pred == target, keep
