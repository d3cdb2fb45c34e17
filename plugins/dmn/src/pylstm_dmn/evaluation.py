"""Test-split evaluation: per-task accuracy of DMN+ and of the LSTM baseline, the share of
questions whose most attended fact in each pass is a supporting fact, and the attention PNG."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pylstm_dmn.babi import Story

from .predictor import DMNPredictor, TrainedModel

__all__ = ["PASSED", "plot_attention", "score_task", "summary_row"]

PASSED = 0.95
"""A task counts as passed at this test accuracy (the bAbI convention)."""


def score_task(predictor: DMNPredictor, model: TrainedModel, samples: Sequence[Story],
               where: str) -> dict[str, Any]:
    """One task's row: ``dmn`` and ``baseline`` accuracy, ``majority`` (the most frequent test
    answer's share), ``support_pass<k>`` and ``questions``."""
    enc = model.encode(samples, where)
    answers = np.array([e.answer for e in enc], np.int64)
    ids, gates = predictor.predict_encoded(model, enc)
    row: dict[str, Any] = {"dmn": round(float((ids == answers).all(axis=1).mean()), 4)}
    if model.baseline is not None:
        base, _ = predictor.predict_encoded(model, enc, baseline=True)
        row["baseline"] = round(float((base == answers).all(axis=1).mean()), 4)
    counts = Counter(tuple(e.answer) for e in enc)
    row["majority"] = round(counts.most_common(1)[0][1] / len(enc), 4)
    with_support = [i for i, e in enumerate(enc) if e.support]
    for k in range(model.net.cfg.passes):
        hits = [int(np.argmax(gates[i][k])) in enc[i].support for i in with_support]
        row[f"support_pass{k + 1}"] = round(float(np.mean(hits)), 4) if hits else None
    row["questions"] = len(enc)
    return row


def summary_row(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The mean of every column over the task rows, and how many tasks DMN+ passed."""
    out: dict[str, Any] = {}
    keys = [k for k in next(iter(rows.values())) if k != "questions"]
    for k in keys:
        vals = [r[k] for r in rows.values() if isinstance(r.get(k), (int, float))]
        if vals:
            out[k] = round(float(np.mean(vals)), 4)
    out["passed"] = sum(1 for r in rows.values() if r["dmn"] >= PASSED)
    out["questions"] = sum(int(r["questions"]) for r in rows.values())
    return out


def plot_attention(predictor: DMNPredictor, samples: Sequence[tuple[TrainedModel, Story]],
                   path: Path) -> None:
    """One heatmap per sample story (passes down, facts across; supporting facts marked with
    ``*``) in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(samples), 1)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.6 * n), squeeze=False)
    for ax, (model, story) in zip(axes[:, 0], samples, strict=False):
        got = predictor.answer(list(story.sentences), story.question.text,
                               task=model.tasks[0] if model.key != "joint" else None)
        start = len(story.sentences) - len(got.facts)
        support = {i - start for i in story.question.support}
        labels = [("* " if i in support else "") + s for i, s in enumerate(got.facts)]
        ax.imshow(got.gates, cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_yticks(range(got.gates.shape[0]), [f"pass {k + 1}"
                                                  for k in range(got.gates.shape[0])])
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=6)
        ax.set_title(f"qa{story.task}: {story.question.text}  answer {got.answer!r} "
                     f"(true {story.question.answer_text!r})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
