"""The ``captioning`` task: the protocol's methods over the caption datasets, the cached
encoder features, the vocabulary, training, the predictor, the evaluation and the ONNX export
(see the README)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import pylstm
from pylstm.plugins import RunContext, TaskError, run_options
from pylstm.runs import Run

from .datasets import CaptionDataset, CaptionItem, load_coco, load_emoji, load_flickr
from .encoder import ImageEncoder, cache_dir
from .evaluation import caption_scores, nearest_neighbour
from .features import Features, encode_items
from .model import CaptionerConfig, ShowAttendTell
from .options import CaptioningOptions, CaptionRequest
from .predictor import BASELINE, ImageCaptioner
from .training import FitOptions, fit, make_examples
from .vocab import Vocabulary

__all__ = ["CaptioningTask", "dataset_for", "features_for"]


def dataset_for(options: CaptioningOptions, seed: int) -> CaptionDataset:
    """The dataset the options describe: the built-in emoji, or ``--images`` with
    ``--captions`` (Flickr8k token lines or COCO JSON)."""
    valid, test = options.split_size("valid_size"), options.split_size("test_size")
    if options.images is None or options.captions is None:
        return load_emoji(cache_dir(options.cache_dir), valid_size=valid, test_size=test,
                          seed=seed)
    fmt = options.caption_format
    if fmt == "auto":
        fmt = "coco" if Path(options.captions).suffix.lower() == ".json" else "flickr"
    loader = load_coco if fmt == "coco" else load_flickr
    return loader(options.images, options.captions, valid_size=valid, test_size=test,
                  seed=seed)


def features_for(dataset: CaptionDataset, options: CaptioningOptions,
                 ctx: RunContext) -> tuple[Features, Features, Features]:
    """Encoder features of train, validation and test (cached per dataset)."""
    cache = cache_dir(options.cache_dir)
    items: list[CaptionItem] = [*dataset.train, *dataset.valid, *dataset.test]
    start = time.perf_counter()
    feats = encode_items(items, lambda: ImageEncoder(cache), cache, log=ctx.log)
    ctx.log(f"features of {len(items)} images ready in {time.perf_counter() - start:.1f} s")
    n1, n2 = len(dataset.train), len(dataset.train) + len(dataset.valid)

    def part(a: int, b: int) -> Features:
        return Features(feats.ids[a:b], feats.grid[a:b], feats.mean[a:b])

    return part(0, n1), part(n1, n2), part(n2, len(items))


def _training_captions(options: CaptioningOptions, items: list[CaptionItem]) -> list[list[str]]:
    which = options.train_captions
    if which == "auto":
        which = "first" if options.images is None else "all"
    return [it.captions[:1] if which == "first" else list(it.captions) for it in items]


def _train_one(options: CaptioningOptions, vocab: Vocabulary, feats: tuple[Features, ...],
               captions: tuple[list[list[str]], list[list[str]]], run: Run | None, seed: int,
               resume: bool, progress: Any) -> tuple[ImageCaptioner, dict[str, Any]]:
    train_f, valid_f, _ = feats
    cfg = CaptionerConfig(vocab=len(vocab), features=int(train_f.grid.shape[2]),
                          reduce=min(options.reduce, int(train_f.grid.shape[2])),
                          cells=int(train_f.grid.shape[1]), emb=options.emb,
                          hidden=options.hidden, attn_dim=options.attn_dim,
                          attention=options.attention, dropout=options.dropout,
                          max_len=options.max_len)
    net = ShowAttendTell(cfg, seed=seed)
    train = make_examples(vocab, captions[0], cfg.max_len)
    valid = make_examples(vocab, captions[1], cfg.max_len)
    fit_options = FitOptions(epochs=options.epochs, batch_size=options.batch_size,
                             lr=options.lr, warmup=options.warmup, clip=options.clip,
                             penalty=options.penalty, time_budget=options.time_budget or None,
                             patience=options.patience or None)
    summary = fit(net, train_f, train, valid_f, valid, fit_options, run=run, seed=seed,
                  resume=resume, progress=progress)
    return ImageCaptioner(net, vocab, options), summary


class CaptioningTask:
    """Show, attend and tell on a pretrained EfficientNet-Lite0: train on captioned images,
    report BLEU-1..4 and CIDEr-D against the nearest-neighbour caption and the decoder without
    attention, caption images with attention maps, export to ONNX."""

    name = "captioning"
    description = ("show-attend-tell LSTM decoder over EfficientNet-Lite0 features, beam "
                   "search, BLEU/CIDEr-D, attention maps; emoji names or your own images")
    Options = CaptioningOptions
    PredictOptions = CaptionRequest

    def train(self, options: CaptioningOptions, run: Run, ctx: RunContext) -> dict[str, Any]:
        """Train the decoder (and the no-attention baseline); held-out metrics of both and of
        the nearest-neighbour caption, and attention maps of a few test images."""
        data = dataset_for(options, run.seed)
        ctx.log(data.description)
        feats = features_for(data, options, ctx)
        captions = (_training_captions(options, data.train),
                    _training_captions(options, data.valid))
        vocab = Vocabulary.build([c for caps in captions[0] for c in caps],
                                 min_count=options.min_count)
        ctx.log(f"vocabulary: {len(vocab)} words (training captions only)")
        start = time.perf_counter()
        with ctx.progress(options.epochs, self.name) as progress:
            model, summary = _train_one(options, vocab, feats, captions, run, run.seed,
                                        ctx.resume, progress)
        summary = {"model": summary, "seconds": round(time.perf_counter() - start, 1)}
        model.save(run)
        baseline = None
        if options.baseline and options.attention:
            epochs = int(summary["model"].get("epochs") or options.epochs)
            ctx.log(f"baseline: the same decoder without attention, for the model's {epochs} "
                    "epochs")
            start = time.perf_counter()
            # the same passes over the data, not the same seconds: a step without attention
            # is cheaper, and a busy host makes seconds an unfair yardstick
            base_opts = dataclasses.replace(options, attention=False, epochs=epochs,
                                            time_budget=0.0)
            baseline, base_summary = _train_one(base_opts, vocab, feats, captions, None,
                                                run.seed, False, None)
            summary["baseline"] = base_summary
            summary["baseline_seconds"] = round(time.perf_counter() - start, 1)
            baseline.save(run, BASELINE)
        run.write_json("training.json", summary)
        return self._evaluate(model, baseline, data, feats, options, ctx, run)

    def _evaluate(self, model: ImageCaptioner, baseline: ImageCaptioner | None,
                  data: CaptionDataset, feats: tuple[Features, ...],
                  options: CaptioningOptions, ctx: RunContext, run: Run | None
                  ) -> dict[str, Any]:
        with pylstm.blas_threads(1):
            return self._scores(model, baseline, data, feats, options, ctx, run)

    def _scores(self, model: ImageCaptioner, baseline: ImageCaptioner | None,
                data: CaptionDataset, feats: tuple[Features, ...],
                options: CaptioningOptions, ctx: RunContext, run: Run | None
                ) -> dict[str, Any]:
        train_f, _, test_f = feats
        refs = [it.captions for it in data.test]
        grid, mean = test_f.take(range(len(test_f)))
        rows: dict[str, Any] = {}
        start = time.perf_counter()
        found = model.caption_features(grid, mean, beam=options.beam,
                                       length_penalty=options.length_penalty)
        seconds = time.perf_counter() - start
        hyps = [c for c, _ in found]
        rows[f"model_beam{options.beam}"] = caption_scores(hyps, refs)
        rows[f"model_beam{options.beam}"]["images_per_s"] = round(len(hyps) /
                                                                   max(seconds, 1e-9), 1)
        if options.beam > 1:
            greedy = [c for c, _ in model.caption_features(grid, mean, beam=1)]
            rows["model_greedy"] = caption_scores(greedy, refs)
        nn_caps = nearest_neighbour(train_f.mean, [it.captions[0] for it in data.train],
                                    test_f.mean)
        rows["nearest_neighbour"] = caption_scores(nn_caps, refs)
        if baseline is not None:
            base = [c for c, _ in baseline.caption_features(
                grid, mean, beam=options.beam, length_penalty=options.length_penalty)]
            rows["no_attention"] = caption_scores(base, refs)
        ctx.log(f"  BLEU {rows[f'model_beam{options.beam}']['bleu_signature']}; CIDEr-D: "
                "pycocoevalcap (our tokenisation)")
        samples = [{"image": it.image_id, "references": it.captions, "caption": h,
                    "nearest_neighbour": n}
                   for it, h, n in list(zip(data.test, hyps, nn_caps, strict=True))[:20]]
        self._pictures(model, data.test, found, options, ctx, run)
        if run is not None and Path(ctx.out_dir).resolve() == Path(run.path).resolve():
            run.write_json("samples.json", samples)
        if not ctx.quiet:
            for s in samples[:5]:
                ctx.log(f"  ref: {s['references'][0]}\n  hyp: {s['caption']}\n  nn:  "
                        f"{s['nearest_neighbour']}")
        return {name: {k: v for k, v in row.items() if not k.endswith("signature")}
                for name, row in rows.items()}

    def _pictures(self, model: ImageCaptioner, items: list[CaptionItem], found: list[Any],
                  options: CaptioningOptions, ctx: RunContext, run: Run | None) -> None:
        from .evaluation import plot_attention_map

        in_run = run is not None and Path(ctx.out_dir).resolve() == Path(run.path).resolve()
        for i, (item, (_, d)) in enumerate(list(zip(items, found, strict=True))
                                           [:options.samples]):
            name = f"attention_{i:02d}.png"
            words = model.vocab.tokens(d.ids)

            def draw(p: Path, item: CaptionItem = item, words: list[str] = words,
                     d: Any = d) -> None:
                plot_attention_map(item.load(), words, d.attention, p,
                                   title=f"ref: {item.captions[0]}"[:48])

            if in_run and run is not None:
                run.add_file(name, draw)
            else:
                os.makedirs(ctx.out_dir, exist_ok=True)
                draw(Path(ctx.out_dir) / name)
        if options.samples:
            ctx.log(f"attention maps: {Path(ctx.out_dir) / 'attention_*.png'}")

    def load(self, run: Run) -> ImageCaptioner:
        """The trained :class:`ImageCaptioner` (config, weights and vocabulary checked); the
        no-attention baseline, when the run has one, as its ``baseline`` attribute."""
        options = run_options(self.Options, run)
        model = ImageCaptioner.load(run, options)
        model.baseline = (ImageCaptioner.load(run, options, name=BASELINE)  # type: ignore[attr-defined]
                          if run.has_file(BASELINE + ".safetensors") else None)
        return model

    def evaluate(self, predictor: ImageCaptioner, options: CaptioningOptions,
                 ctx: RunContext) -> dict[str, Any]:
        """The held-out metrics again (``options`` may point at other data)."""
        data = dataset_for(options, ctx.seed)
        feats = features_for(data, options, ctx)
        return self._evaluate(predictor, getattr(predictor, "baseline", None), data, feats,
                              options, ctx, None)

    def predict(self, predictor: ImageCaptioner, request: CaptionRequest,
                ctx: RunContext) -> Any:
        """Caption ``--image`` (the caption back); with ``--attention-map`` also draw it."""
        assert request.image is not None
        if request.attention_map is not None:
            return predictor.attention_map(request.image, request.attention_map,
                                           beam=request.beam,
                                           length_penalty=request.length_penalty)
        return predictor.caption([request.image], beam=request.beam,
                                 length_penalty=request.length_penalty)[0]

    def export_onnx(self, predictor: ImageCaptioner, path: Path, ctx: RunContext) -> Path:
        """Encoder, decoder init and decoder step as ONNX in a folder next to ``path``;
        checked against pylstm on the test split."""
        from .onnx_export import check_export, export_captioner

        folder = export_captioner(predictor, path)
        options = predictor.options if predictor.options is not None else CaptioningOptions()
        try:
            data = dataset_for(options, ctx.seed)
            test = [it.load() for it in data.test[:100]]
        except TaskError as exc:  # the training data moved: check on synthetic images
            ctx.log(f"export check on random images ({exc})")
            test = None
        agreement = check_export(predictor, folder, test)
        ctx.log(f"onnxruntime agrees with pylstm: {agreement}")
        return folder
