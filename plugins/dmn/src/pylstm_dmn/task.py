"""The ``dmn`` task: the protocol's methods over the bAbI data, DMN+ and the LSTM baseline,
the predictor, the evaluation and the ONNX export (see the README)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pylstm.plugins import RunContext, TaskError, run_options
from pylstm.runs import Run
from pylstm_dmn.babi import Story, TaskData, load_tasks

from .evaluation import plot_attention, score_task, summary_row
from .model import BaselineConfig, DMNConfig, DMNPlus, LSTMBaseline
from .options import AnswerRequest, DMNOptions
from .predictor import DMNPredictor, TrainedModel
from .training import FitOptions, fit
from .vocab import Encoded, Vocab, encode

__all__ = ["DMNTask", "default_cache_dir", "load_data", "split_validation"]


def default_cache_dir() -> Path:
    """``$PYLSTM_CACHE/dmn``, else ``~/.cache/pylstm/dmn``."""
    root = os.environ.get("PYLSTM_CACHE")
    return Path(root) / "dmn" if root else Path.home() / ".cache" / "pylstm" / "dmn"


def load_data(options: DMNOptions, seed: int) -> dict[int, TaskData]:
    """The tasks the options name: the user's files, or generated ones (cached)."""
    return load_tasks(options.task_list, options.size, data_dir=options.data_dir,
                      cache_dir=None if options.data_dir else
                      (options.cache_dir or default_cache_dir()), seed=seed)


def split_validation(samples: list[Story], share: float, seed: int
                     ) -> tuple[list[Story], list[Story]]:
    """``(train, valid)``: whole stories held out (``share`` of them, seeded), so no
    validation question shares its facts with a training one."""
    keys = sorted({(s.task, s.story_id) for s in samples})
    rng = np.random.default_rng([seed, 7])
    n = max(1, round(share * len(keys))) if len(keys) > 1 else 0
    held = {keys[i] for i in rng.permutation(len(keys))[:n]}
    train = [s for s in samples if (s.task, s.story_id) not in held]
    valid = [s for s in samples if (s.task, s.story_id) in held]
    return train, valid


def _fit_options(options: DMNOptions, threads: int | None) -> FitOptions:
    return FitOptions(epochs=options.epochs, batch_size=options.batch_size, lr=options.lr,
                      clip=options.clip, patience=options.patience or None,
                      lr_patience=options.lr_patience,
                      time_budget=options.time_budget or None,
                      supervise_facts=options.supervise_facts, fact_weight=options.fact_weight,
                      engine_threads=threads or 1)


def _train_dmn(cfg: DMNConfig, train: list[Encoded], valid: list[Encoded], fit_opts: FitOptions,
               restarts: int, seed: int, progress: Any) -> tuple[DMNPlus, dict[str, Any]]:
    """DMN+ trained from seeds ``seed, seed + 1, ...`` while restarts and time remain (each
    attempt gets the budget the earlier ones left): the one best on validation, the way bAbI
    results pick among initialisations, with its summary, its seed and every attempt's best
    validation score. A perfect validation score (or no validation split) ends the search."""
    budget = fit_opts.time_budget
    start = time.perf_counter()
    best: tuple[DMNPlus, dict[str, Any]] | None = None
    scores: list[float | None] = []
    for attempt in range(restarts):
        left = None if budget is None else budget - (time.perf_counter() - start)
        if best is not None and left is not None and left <= 0:
            break
        net = DMNPlus(cfg, seed=seed + attempt)
        summary = fit(net, train, valid, replace(fit_opts, time_budget=left),
                      seed=seed + attempt, progress=progress)
        summary["seed"] = seed + attempt
        scores.append(summary["best"])
        if best is None or (summary["best"] or 0) > (best[1]["best"] or 0):
            best = (net, summary)
        if not valid or (summary["best"] or 0) >= 1.0:
            break
    assert best is not None  # restarts >= 1: the first attempt always runs
    return best[0], {**best[1], "attempts": scores}


def train_model(key: str, tasks: tuple[int, ...], samples: list[Story], options: DMNOptions,
                seed: int, ctx: RunContext) -> tuple[TrainedModel, dict[str, Any]]:
    """DMN+ (and the baseline) trained on ``samples``; the summary with times."""
    vocab = Vocab.build(samples)
    answer_len = max(len(s.question.answer) for s in samples)
    train, valid = split_validation(samples, options.valid_share, seed)
    enc_train = encode(train, vocab, answer_len, options.max_facts, f"{key} training data")
    enc_valid = encode(valid, vocab, answer_len, options.max_facts, f"{key} training data")
    fit_opts = _fit_options(options, ctx.threads)
    cfg = DMNConfig(len(vocab), answer_len, options.dim, options.passes, options.dropout)
    start = time.perf_counter()
    with ctx.progress(options.epochs, f"{key} DMN+") as progress:
        net, dmn_summary = _train_dmn(cfg, enc_train, enc_valid, fit_opts, options.restarts,
                                      seed, progress)
    summary: dict[str, Any] = {"dmn": dmn_summary}
    summary["dmn_seconds"] = round(time.perf_counter() - start, 1)
    baseline = None
    if options.baseline:
        bcfg = BaselineConfig(len(vocab), answer_len, hidden=options.baseline_hidden,
                              dropout=options.dropout)
        baseline = LSTMBaseline(bcfg, seed=seed)
        start = time.perf_counter()
        with ctx.progress(options.epochs, f"{key} baseline") as progress:
            summary["baseline"] = fit(baseline, enc_train, enc_valid, fit_opts, seed=seed,
                                      progress=progress)
        summary["baseline_seconds"] = round(time.perf_counter() - start, 1)
    return TrainedModel(key, tasks, vocab, net, options.max_facts, baseline), summary


class DMNTask:
    """Dynamic memory networks (DMN+) on the 20 bAbI tasks, with an LSTM baseline."""

    name = "dmn"
    description = ("DMN+ question answering on the bAbI tasks (generated offline or your "
                   "files): input fusion, episodic memory with attention, LSTM baseline")
    Options = DMNOptions
    PredictOptions = AnswerRequest

    def train(self, options: DMNOptions, run: Run, ctx: RunContext) -> dict[str, Any]:
        """One model per task (or one joint model) and its baseline; the test metrics."""
        if ctx.resume:
            raise TaskError("--resume: expected a new run (a dmn run trains one model per task "
                            "and does not resume), got --resume")
        data = load_data(options, run.seed)
        tasks = sorted(data)
        ctx.log(f"bAbI {options.size}: tasks {', '.join(map(str, tasks))} "
                f"({sum(len(d.train) for d in data.values())} training questions)")
        groups = ([("joint", tuple(tasks))] if options.joint
                  else [(f"qa{t}", (t,)) for t in tasks])
        models: dict[str, TrainedModel] = {}
        summaries: dict[str, Any] = {}
        for key, group in groups:
            samples = [s for t in group for s in data[t].train]
            model, summary = train_model(key, group, samples, options, run.seed, ctx)
            model.save(run)
            models[key] = model
            summaries[key] = summary
            ctx.log(f"{key}: trained in {summary['dmn_seconds']} s "
                    f"(baseline {summary.get('baseline_seconds', 0)} s)")
        run.write_json("training.json", summaries)
        predictor = DMNPredictor(models, options)
        return self._evaluate(predictor, data, options, ctx, run, summaries)

    def _evaluate(self, predictor: DMNPredictor, data: dict[int, TaskData],
                  options: DMNOptions, ctx: RunContext, run: Run | None,
                  summaries: dict[str, Any] | None = None) -> dict[str, Any]:
        rows: dict[str, Any] = {}
        shown = []
        for t in sorted(data):
            model = predictor.model_for(t)
            rows[f"qa{t}"] = score_task(predictor, model, data[t].test, f"qa{t} test data")
            if summaries and model.key in summaries and model.key != "joint":
                rows[f"qa{t}"]["train_s"] = summaries[model.key]["dmn_seconds"]
            if data[t].test:
                shown.append((model, data[t].test[0]))
        if len(shown) < options.samples and data:
            first = data[min(data)].test
            shown += [(predictor.model_for(min(data)), s) for s in first[1:options.samples]]
        shown = shown[:options.samples]
        rows["mean"] = summary_row(rows)
        if shown:
            if run is not None and Path(ctx.out_dir).resolve() == Path(run.path).resolve():
                run.add_file("attention.png", lambda p: plot_attention(predictor, shown, p))
            else:
                os.makedirs(ctx.out_dir, exist_ok=True)
                plot_attention(predictor, shown, Path(ctx.out_dir) / "attention.png")
        return rows

    def load(self, run: Run) -> DMNPredictor:
        """The trained :class:`DMNPredictor` (every model's config and weights checked)."""
        return DMNPredictor.load(run, run_options(self.Options, run))

    def evaluate(self, predictor: DMNPredictor, options: DMNOptions,
                 ctx: RunContext) -> dict[str, Any]:
        """The test metrics again (``--data-dir`` scores another bAbI-format folder)."""
        have = {t for m in predictor.models.values() for t in m.tasks}
        missing = [t for t in options.task_list if t not in have]
        if missing:
            raise TaskError(f"--tasks: expected tasks the run trained ({sorted(have)}), got "
                            f"{', '.join(map(str, missing))}")
        return self._evaluate(predictor, load_data(options, ctx.seed), options, ctx, None)

    def predict(self, predictor: DMNPredictor, request: AnswerRequest,
                ctx: RunContext) -> Any:
        """The answer to ``--question`` about ``--story FILE`` (or ``--text``) and the facts
        the memory attended to most in each pass."""
        if request.story is not None:
            try:
                story = Path(request.story).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise TaskError(f"--story: expected a readable UTF-8 text file, got "
                                f"{request.story} ({type(exc).__name__})") from None
        else:
            story = str(request.text)
        got = predictor.answer(story, str(request.question), task=request.task or None,
                               top=request.top)
        lines = [f"answer: {got.answer}  (model {got.model})"]
        for k, facts in enumerate(got.top, 1):
            shown = "; ".join(f"[{i + 1}] {s} ({w:.2f})" for i, s, w in facts)
            lines.append(f"pass {k}: {shown}")
        if got.unknown:
            lines.append(f"words the model never saw: {', '.join(got.unknown)}")
        return "\n".join(lines)

    def export_onnx(self, predictor: DMNPredictor, path: Path, ctx: RunContext) -> Path:
        """Every model as ONNX in the folder ``path`` names; answers checked against
        pylstm on the test split."""
        from .onnx_export import check_export, export_predictor

        folder = export_predictor(predictor, path)
        options = predictor.options
        data = load_data(options, ctx.seed) if options is not None else {}
        agreement = check_export(predictor, folder, data)
        ctx.log(f"onnxruntime agrees with pylstm: {agreement}")
        return folder
