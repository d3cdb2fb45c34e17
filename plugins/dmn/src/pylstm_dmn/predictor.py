"""The trained run as an application uses it: ``pylstm.load(run).answer(story, question)``.

A dmn run holds one model per task (``dmn-qa1``, ...) or one joint model (``dmn-joint``), each
with its vocabulary, and the LSTM baseline beside it (``baseline-qa1``, ...). Answering never
changes any state, so threads may share a predictor.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import pylstm
from pylstm.plugins import TaskError
from pylstm.runs import Run
from pylstm_dmn.babi import Question, Story

from .model import BaselineConfig, DMNConfig, DMNPlus, LSTMBaseline
from .training import batches_for, predict_ids
from .vocab import Encoded, Vocab, encode, make_batch, sentence_words

__all__ = ["Answer", "DMNPredictor", "TrainedModel", "story_sentences"]

_LINE_ID = re.compile(r"\s*(\d+)(?:\s+|$)")
_SPLIT = re.compile(r"(?<=[.!])\s+")
_WORD = re.compile(r"\w")


def story_sentences(story: str | Sequence[str]) -> list[str]:
    """The statements of ``story``: text (one statement per line, bAbI line ids stripped,
    several statements on a line split after ``.``) or a list of statements."""
    out: list[str] = []
    if isinstance(story, str):
        for n, raw in enumerate(story.splitlines(), 1):
            line = raw.strip()
            if not line:
                continue
            if "\t" in line:
                raise TaskError(f"story line {n}: expected a statement, got a question line "
                                f"(a tab in it): {line[:40]!r}")
            m = _LINE_ID.match(line)
            if m is not None:
                line = line[m.end():].strip()
            if not _WORD.search(line):
                raise TaskError(f"story line {n}: expected a statement with words, got "
                                f"{raw.strip()[:40]!r}")
            out.extend(s for s in _SPLIT.split(line) if _WORD.search(s))
    elif isinstance(story, Sequence):
        for i, s in enumerate(story):
            if not isinstance(s, str) or not _WORD.search(s):
                raise TaskError(f"story[{i}]: expected a statement (a string with words), got "
                                f"{s!r}")
            out.append(s.strip())
    else:
        raise TaskError(f"story: expected text or a list of statements, got "
                        f"{type(story).__name__}")
    if not out:
        raise TaskError("story: expected at least one statement, got none")
    return out


@dataclass
class TrainedModel:
    """One trained DMN+ (and baseline) with its vocabulary and the tasks it learnt."""

    key: str
    tasks: tuple[int, ...]
    vocab: Vocab
    net: DMNPlus
    max_facts: int
    baseline: LSTMBaseline | None = None

    @property
    def answer_len(self) -> int:
        """Answer positions the model predicts."""
        return self.net.cfg.answer_len

    def encode(self, samples: Sequence[Story], where: str) -> list[Encoded]:
        """Samples as ids for this model (answer words it lacks are an error)."""
        return encode(samples, self.vocab, self.answer_len, self.max_facts, where)

    def save(self, run: Run) -> None:
        """``dmn-<key>`` and ``baseline-<key>`` weights and configs into ``run``."""
        run.save_tensors(f"dmn-{self.key}", self.net.state_dict(), config={
            "model": self.net.cfg.to_json(), "vocab": self.vocab.to_json(),
            "tasks": list(self.tasks), "max_facts": self.max_facts})
        if self.baseline is not None:
            run.save_tensors(f"baseline-{self.key}", self.baseline.state_dict(),
                             config={"model": self.baseline.cfg.to_json()})

    @classmethod
    def load(cls, run: Run, key: str) -> TrainedModel:
        """Read ``dmn-<key>`` (and its baseline when there) from ``run``, checked."""
        tensors, config = run.load_tensors(f"dmn-{key}")
        where = str(run.file(f"dmn-{key}.json"))
        if not isinstance(config, dict) or set(config) != {"model", "vocab", "tasks",
                                                            "max_facts"}:
            raise TaskError(f"{where}: expected keys model, vocab, tasks, max_facts, got "
                            f"{sorted(config) if isinstance(config, dict) else config}")
        cfg = DMNConfig.from_json(config["model"], where)
        vocab = Vocab.from_json(config["vocab"], where)
        if len(vocab) != cfg.vocab:
            raise TaskError(f"{where}: the vocabulary has {len(vocab)} words, the model "
                            f"expects {cfg.vocab}")
        net = DMNPlus(cfg)
        net.load_state_dict(tensors)
        net.eval()
        baseline = None
        if run.has_file(f"baseline-{key}.safetensors"):
            bt, bc = run.load_tensors(f"baseline-{key}")
            bwhere = str(run.file(f"baseline-{key}.json"))
            bcfg = BaselineConfig.from_json((bc or {}).get("model"), bwhere)
            baseline = LSTMBaseline(bcfg)
            baseline.load_state_dict(bt)
            baseline.eval()
        tasks = tuple(int(t) for t in config["tasks"])
        return cls(key, tasks, vocab, net, int(config["max_facts"]), baseline)


@dataclass
class Answer:
    """An answer with the memory's attention.

    ``answer`` the words joined by ``,`` (the bAbI file's form); ``model`` the key of the model
    that answered (``qa1`` or ``joint``); ``facts`` the statements the memory read;
    ``gates`` ``[passes, facts]`` the attention; ``top`` per pass the most attended
    ``(fact index, statement, weight)``; ``unknown`` the words the model never saw.
    """

    answer: str
    words: list[str]
    model: str
    facts: list[str]
    gates: np.ndarray
    top: list[list[tuple[int, str, float]]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


class DMNPredictor:
    """The trained models of a dmn run (what ``pylstm.load`` returns)."""

    def __init__(self, models: dict[str, TrainedModel], options: Any = None) -> None:
        if not models:
            raise TaskError("models: expected at least one trained model, got none")
        self.models = models
        self.options = options

    @classmethod
    def load(cls, run: Run, options: Any = None) -> DMNPredictor:
        """Every ``dmn-*`` model of ``run``."""
        keys = sorted((name[4:-12] for name in run.files
                       if name.startswith("dmn-") and name.endswith(".safetensors")),
                      key=lambda k: (k != "joint", int(k[2:]) if k[2:].isdigit() else 0))
        if not keys:
            raise TaskError(f"{run.path}: expected dmn-*.safetensors model files, got none")
        return cls({k: TrainedModel.load(run, k) for k in keys}, options)

    def model_for(self, task: int | None = None, words: Sequence[str] = ()) -> TrainedModel:
        """The model answering for ``task`` (``None``/0: the joint or only model, else the
        first whose vocabulary knows all ``words``, else the first)."""
        models = list(self.models.values())
        if task:
            for m in models:
                if task in m.tasks:
                    return m
            have = sorted({t for m in models for t in m.tasks})
            raise TaskError(f"task: expected one of the run's tasks {have}, got {task}")
        if len(models) == 1 or "joint" in self.models:
            return self.models.get("joint", models[0])
        for m in models:
            if not m.vocab.unknown(words):
                return m
        return models[0]

    def answer(self, story: str | Sequence[str], question: str, *, task: int | None = None,
               top: int = 2) -> Answer:
        """Answer ``question`` about ``story`` (text, one statement per line, or a list of
        statements); ``top`` facts per pass are listed by attention."""
        sentences = story_sentences(story)
        if not isinstance(question, str) or not _WORD.search(question):
            raise TaskError(f"question: expected a question with words, got {question!r}")
        words = [w for s in [*sentences, question] for w in sentence_words(s)]
        model = self.model_for(task, words)
        sample = Story(task or (model.tasks[0] if model.tasks else 0), tuple(sentences),
                       Question(question.strip(), ("",), (), len(sentences) + 1))
        enc = self._encode_unanswered(model, sample)
        with pylstm.blas_threads(1):
            ids, gates = predict_ids(model.net, make_batch([enc]))
        answer = model.vocab.decode_answer(ids[0].tolist())
        kept = sentences[len(sentences) - len(enc.facts):]
        g = np.stack([x[0, :len(kept)] for x in gates])
        tops = [[(int(i), kept[i], round(float(row[i]), 4)) for i in np.argsort(-row)[:top]]
                for row in g]
        return Answer(",".join(answer), answer, model.key, kept, g, tops,
                      model.vocab.unknown(words))

    @staticmethod
    def _encode_unanswered(model: TrainedModel, sample: Story) -> Encoded:
        start = max(0, len(sample.sentences) - model.max_facts)
        facts = [model.vocab.ids(sentence_words(s)) or [1] for s in sample.sentences[start:]]
        q = model.vocab.ids(sentence_words(sample.question.text)) or [1]
        return Encoded(facts, q, [0] * model.answer_len, (), sample.task)

    def predict_encoded(self, model: TrainedModel, samples: Sequence[Encoded],
                        baseline: bool = False, batch_size: int = 128
                        ) -> tuple[np.ndarray, list[list[np.ndarray]]]:
        """``(answer ids [N, L], gates per sample per pass)`` of ``samples`` (the baseline's
        with ``baseline``; it has no gates)."""
        net = model.baseline if baseline else model.net
        if net is None:
            raise TaskError(f"baseline: the run has no baseline for model {model.key}")
        ids = np.zeros((len(samples), model.answer_len), np.int64)
        gates: list[list[np.ndarray]] = [[] for _ in samples]
        with pylstm.blas_threads(1):
            for idx in batches_for(samples, batch_size, shuffle=False):
                batch = make_batch([samples[i] for i in idx])
                out, g = predict_ids(net, batch)
                ids[idx] = out
                for j, i in enumerate(idx):
                    gates[i] = [x[j, :batch.n_facts[j]] for x in g]
        return ids, gates
