"""Held-out evaluation: BLEU and chrF (sacrebleu, signatures kept) of the model with beam
search and greedily, and of the baselines (copying the source; the ``--attention none`` model);
sample translations; attention heatmaps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pylstm import metrics

from .predictor import Translator

__all__ = ["plot_attention", "score_rows", "translation_scores"]


def score_rows(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """``{"bleu", "chrf", "bleu_signature", "chrf_signature"}`` of one system."""
    b, c = metrics.bleu(hypotheses, references), metrics.chrf(hypotheses, references)
    return {"bleu": round(b.score, 2), "chrf": round(c.score, 2),
            "bleu_signature": b.signature, "chrf_signature": c.signature}


def translation_scores(model: Translator, test: Sequence[tuple[str, str]], *, beam: int,
                       length_penalty: float, baseline: Translator | None = None,
                       samples: int = 8) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The metrics table (one row per system) and sample rows (source, reference, output)."""
    sources = [s for s, _ in test]
    refs = [t for _, t in test]
    rows: dict[str, Any] = {}
    beam_out = model.translate(sources, beam=beam, length_penalty=length_penalty)
    rows[f"model_beam{beam}"] = score_rows(beam_out, refs)
    if beam > 1:
        rows["model_greedy"] = score_rows(model.translate(sources, beam=1), refs)
    rows["copy_source"] = score_rows(sources, refs)
    if baseline is not None:
        rows["no_attention"] = score_rows(
            baseline.translate(sources, beam=beam, length_penalty=length_penalty), refs)
    shown = [{"source": s, "reference": r, "translation": h}
             for s, r, h in list(zip(sources, refs, beam_out, strict=True))[:samples]]
    return rows, shown


def plot_attention(model: Translator, sentences: Sequence[str], path: Path) -> None:
    """One heatmap per sentence (target subwords down, source subwords across) in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = model.translate_detailed(list(sentences), beam=1)
    n = len(found)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4.5), squeeze=False)
    for ax, sentence, (_, d) in zip(axes[0], sentences, found, strict=True):
        src = model.src_tokenizer.tokens(sentence) + ["</s>"]
        tgt = [model.tgt_tokenizer.id_to_token(i) for i in d.ids] + ["</s>"]
        if d.attention is None:
            ax.text(0.5, 0.5, "no attention", ha="center")
            continue
        weights = np.asarray(d.attention)[:len(tgt), :len(src)]
        ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(src)), src, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tgt)), tgt, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
