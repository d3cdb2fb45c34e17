"""The ``translation`` task: the protocol's methods over the corpus, the subword vocabularies,
training, the predictor, the evaluation and the ONNX export (see the README)."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

from pylstm.data import Tokenizer
from pylstm.plugins import RunContext, run_options
from pylstm.runs import Run

from .corpus import Corpus, load_corpus, read_lines
from .evaluation import plot_attention, translation_scores
from .model import Seq2Seq, TranslatorConfig
from .options import TranslateRequest, TranslationOptions
from .predictor import Translator
from .training import FitOptions, fit

__all__ = ["TranslationTask"]

BASELINE = "baseline"  # the --attention none model's files: baseline.safetensors, ...


def corpus_for(options: TranslationOptions, seed: int) -> Corpus:
    """The corpus the options describe (built-in or the user's files)."""
    return load_corpus(options.dataset, src=options.src, tgt=options.tgt,
                       train_src=options.train_src, train_tgt=options.train_tgt,
                       valid_src=options.valid_src, valid_tgt=options.valid_tgt,
                       test_src=options.test_src, test_tgt=options.test_tgt, tsv=options.tsv,
                       valid_size=options.valid_size, test_size=options.test_size,
                       max_pairs=options.max_pairs or None, seed=seed)


def tokenizers_for(options: TranslationOptions, corpus: Corpus) -> tuple[Tokenizer, Tokenizer]:
    """Subword tokenizers trained on the training split only (one joint, or one per side)."""
    src = [s for s, _ in corpus.train]
    tgt = [t for _, t in corpus.train]
    if options.joint_vocab:
        tok = Tokenizer.train(src + tgt, model=options.subwords, vocab_size=options.vocab_size)
        return tok, tok
    return (Tokenizer.train(src, model=options.subwords, vocab_size=options.vocab_size),
            Tokenizer.train(tgt, model=options.subwords, vocab_size=options.vocab_size))


def _train_one(options: TranslationOptions, corpus: Corpus, toks: tuple[Tokenizer, Tokenizer],
               run: Run | None, seed: int, resume: bool, progress: Any,
               time_budget: float | None) -> tuple[Translator, dict[str, Any]]:
    src_tok, tgt_tok = toks
    cfg = TranslatorConfig(src_vocab=src_tok.vocab_size, tgt_vocab=tgt_tok.vocab_size,
                           emb=options.emb, hidden=options.hidden, layers=options.layers,
                           attention=options.attention, input_feeding=options.input_feeding,
                           dropout=options.dropout, tie_embeddings=options.tie_embeddings)
    net = Seq2Seq(cfg, seed=seed)

    def ids(pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        s = src_tok.encode_batch([p[0] for p in pairs])
        t = tgt_tok.encode_batch([p[1] for p in pairs])
        return list(zip(s, t, strict=True))

    fit_options = FitOptions(epochs=options.epochs, batch_tokens=options.batch_tokens,
                             lr=options.lr, warmup=options.warmup, clip=options.clip,
                             label_smoothing=options.label_smoothing, time_budget=time_budget,
                             patience=options.patience or None)
    summary = fit(net, ids(corpus.train), ids(corpus.valid), fit_options, run=run, seed=seed,
                  resume=resume, progress=progress)
    return Translator(net, src_tok, tgt_tok, options), summary


class TranslationTask:
    """Attention encoder-decoder translation: train on a parallel corpus, report BLEU/chrF
    against baselines, translate, export to ONNX."""

    name = "translation"
    description = ("attention LSTM encoder-decoder (Luong/Bahdanau), subword vocabularies, "
                   "beam search, BLEU/chrF; Ding de-en, Bible pairs or your own corpus")
    Options = TranslationOptions
    PredictOptions = TranslateRequest

    def train(self, options: TranslationOptions, run: Run, ctx: RunContext) -> dict[str, Any]:
        """Train the model (and the no-attention baseline for the same time); held-out
        metrics of both and of copying the source."""
        corpus = corpus_for(options, run.seed)
        ctx.log(f"{corpus.source}: {len(corpus.train)} training, {len(corpus.valid)} "
                f"validation, {len(corpus.test)} test pairs")
        toks = tokenizers_for(options, corpus)
        start = time.perf_counter()
        with ctx.progress(options.epochs, self.name) as progress:
            model, summary = _train_one(options, corpus, toks, run, run.seed, ctx.resume,
                                        progress, options.time_budget or None)
        seconds = time.perf_counter() - start
        model.save(run)
        baseline = None
        if options.baseline and options.attention != "none":
            ctx.log(f"baseline: --attention none for the same {seconds:.0f} s")
            base_opts = dataclasses.replace(options, attention="none", patience=0)
            baseline, base_summary = _train_one(base_opts, corpus, toks, None, run.seed, False,
                                                None, max(seconds, 1.0))
            run.save_tensors(BASELINE, baseline.net.state_dict(),
                             config=baseline.config.to_json())
            summary = {"model": summary, "baseline": base_summary}
        run.write_json("training.json", summary)
        return self._evaluate(model, baseline, corpus, options, ctx, run)

    def _evaluate(self, model: Translator, baseline: Translator | None, corpus: Corpus,
                  options: TranslationOptions, ctx: RunContext, run: Run | None
                  ) -> dict[str, Any]:
        start = time.perf_counter()
        rows, samples = translation_scores(model, corpus.test, beam=options.beam,
                                           length_penalty=options.length_penalty,
                                           baseline=baseline)
        seconds = time.perf_counter() - start
        rows[f"model_beam{options.beam}"]["sentences_per_s"] = round(len(corpus.test) /
                                                                     max(seconds, 1e-9), 1)
        first = next(iter(rows.values()))
        ctx.log(f"  BLEU {first['bleu_signature']}\n  chrF {first['chrf_signature']}")
        sentences = [s for s, _ in corpus.test[:3]]
        if run is not None and Path(ctx.out_dir).resolve() == Path(run.path).resolve():
            run.write_json("samples.json", samples)
            if model.config.attention != "none":
                run.add_file("attention.png", lambda p: plot_attention(model, sentences, p))
        else:
            os.makedirs(ctx.out_dir, exist_ok=True)
            if model.config.attention != "none":
                plot_attention(model, sentences, Path(ctx.out_dir) / "attention.png")
        if not ctx.quiet:
            for s in samples[:4]:
                ctx.log(f"  src: {s['source']}\n  ref: {s['reference']}\n  hyp: "
                        f"{s['translation']}")
        return {name: {k: v for k, v in row.items() if not k.endswith("signature")}
                for name, row in rows.items()}

    def load(self, run: Run) -> Translator:
        """The trained :class:`Translator` (config, weights and tokenizers checked)."""
        return Translator.load(run, run_options(self.Options, run))

    def evaluate(self, predictor: Translator, options: TranslationOptions,
                 ctx: RunContext) -> dict[str, Any]:
        """The held-out metrics again (``options`` may point at other test files)."""
        corpus = corpus_for(options, ctx.seed)
        return self._evaluate(predictor, None, corpus, options, ctx, None)

    def predict(self, predictor: Translator, request: TranslateRequest,
                ctx: RunContext) -> Any:
        """Translate ``--text`` (the translation back) or ``--input`` (to ``--output`` or
        printed), one line out per line in, empty lines kept."""
        if request.text is not None:
            lines = [request.text]
        elif str(request.input) == "-":
            lines = sys.stdin.read().splitlines()
        else:
            lines = read_lines(request.input)
        out = predictor.translate(lines, beam=request.beam,
                                  length_penalty=request.length_penalty)
        if request.output is None:
            return "\n".join(out)
        tmp = request.output.with_name(f".{request.output.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(line + "\n" for line in out), encoding="utf-8")
        os.replace(tmp, request.output)
        return f"{len(out)} lines written to {request.output}"

    def export_onnx(self, predictor: Translator, path: Path, ctx: RunContext) -> Path:
        """Encoder and decoder step as ONNX next to ``path``; checked against pylstm."""
        from .onnx_export import check_export, export_translator

        folder = export_translator(predictor, path)
        agreement = check_export(predictor, folder)
        ctx.log(f"onnxruntime agrees with pylstm: {agreement}")
        return folder

