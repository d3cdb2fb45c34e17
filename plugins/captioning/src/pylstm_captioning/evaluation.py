"""Held-out evaluation of captions: corpus BLEU-1..4 with all references (sacrebleu through
:mod:`pylstm.metrics`) and CIDEr-D (pycocoevalcap's ``Cider``, which is CIDEr-D: clipped
n-gram counts and the Gaussian length penalty, ``sigma=6``, times 10), for the model, the
nearest-neighbour caption and the decoder without attention; and the attention-map pictures.

Tokenisation is ours, not the COCO toolkit's: pycocoevalcap's ``PTBTokenizer`` runs Stanford
CoreNLP under Java. Hypotheses and references are both in
:func:`~pylstm_captioning.datasets.normalize_caption` form (lower-case, punctuation split off),
and BLEU is computed with ``tokenize="none"`` on it, so both metrics see the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pylstm import metrics

from .datasets import normalize_caption

__all__ = ["caption_scores", "cider_d", "nearest_neighbour", "plot_attention_map"]


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr-D (pycocoevalcap, pure Python) of normalised captions; the document
    frequencies come from these references, as in the COCO evaluation."""
    from pycocoevalcap.cider.cider import Cider

    gts = {i: [r if r.strip() else "<empty>" for r in refs]
           for i, refs in enumerate(references)}
    res = {i: [h if h.strip() else "<empty>"] for i, h in enumerate(hypotheses)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def caption_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]
                   ) -> dict[str, Any]:
    """``{"bleu1".."bleu4", "cider_d", "bleu_signature"}`` of one system (BLEU 0-100, CIDEr-D
    as COCO reports it, 0-10); captions normalised first."""
    hyps = [normalize_caption(h) for h in hypotheses]
    refs = [[normalize_caption(r) for r in rs] for rs in references]
    row: dict[str, Any] = {}
    for n in (1, 2, 3, 4):
        score = metrics.bleu_n(hyps, refs, max_order=n, tokenize="none")
        row[f"bleu{n}"] = round(score.score, 2)
        if n == 4:
            row["bleu_signature"] = score.signature
    row["cider_d"] = round(cider_d(hyps, refs), 4)
    return row


def nearest_neighbour(train_mean: np.ndarray, train_captions: Sequence[str],
                      test_mean: np.ndarray) -> list[str]:
    """The baseline caption of each test image: the caption of the training image whose mean
    feature is closest by cosine similarity."""
    a = np.asarray(train_mean, np.float64)
    b = np.asarray(test_mean, np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    nearest = (b @ a.T).argmax(axis=1)
    return [train_captions[i] for i in nearest]


def plot_attention_map(image: Any, words: Sequence[str], weights: np.ndarray,
                       path: str | Path, title: str | None = None) -> None:
    """One PNG: the image with the caption, then one panel per word (and the end) with that
    step's attention over the grid upsampled onto the image, on one colour scale per caption
    (its largest weight is the top of the scale; matplotlib, Agg backend).

    ``image`` a PIL image; ``weights`` ``[len(words) + 1, cells]`` (``cells`` a square)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    img = image.convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
    w = np.asarray(weights, np.float64)
    side = int(round(np.sqrt(w.shape[1])))
    labels = [*words, "<end>"][:w.shape[0]]
    top = max(float(w[:len(labels)].max()), 1e-12)
    panels = len(labels) + 1
    cols = min(panels, 6)
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0][0].imshow(img)
    axes[0][0].set_title(title or "image", fontsize=8)
    for k, label in enumerate(labels, start=1):
        ax = axes[k // cols][k % cols]
        att = w[k - 1].reshape(side, side)
        # one scale for the whole caption, so a nearly uniform step looks nearly uniform
        up = np.asarray(Image.fromarray((att / top * 255).astype(np.uint8))
                        .resize((224, 224), Image.Resampling.BILINEAR), np.float64) / 255
        ax.imshow(img)
        ax.imshow(up, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        ax.set_title(label, fontsize=9)
    fig.suptitle(" ".join(words), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
