"""The show-attend-tell decoder: gradients by central differences in float64 (attention and
the no-attention baseline, penalty included), the vocabulary, the feature cache, decoding, and a
tiny decoder that learns the captions of synthetic images better than an honest baseline on
held-out images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pylstm_captioning.datasets import CaptionItem
from pylstm_captioning.features import Features, dataset_key, encode_items
from pylstm_captioning.model import CaptionerConfig, ShowAttendTell
from pylstm_captioning.search import decode_features
from pylstm_captioning.training import FitOptions, fit, make_examples
from pylstm_captioning.vocab import Vocabulary

import pylstm
from pylstm.data import PAD_ID, pad
from pylstm.plugins import TaskError

F64 = np.float64


def _batch(rng: np.random.Generator, vocab: int, b: int = 3, t: int = 4):
    lengths = [t, t - 1, 2][:b]
    seqs = [list(rng.integers(4, vocab, n)) for n in lengths]
    tin = pad(seqs, PAD_ID, add_bos=True)
    tout = pad(seqs, PAD_ID, add_eos=True)
    return tin.ids, tout.ids, tout.mask


@pytest.mark.parametrize("attention", [True, False])
def test_gradients_match_central_differences(attention: bool) -> None:
    rng = np.random.default_rng(3)
    cfg = CaptionerConfig(vocab=9, features=5, reduce=0, cells=6, emb=4, hidden=4,
                          attn_dim=3, attention=attention, dropout=0.0)
    model = ShowAttendTell(cfg, seed=1, dtype=F64)
    grid = np.abs(rng.standard_normal((3, 6, 5)))
    mean = grid.mean(axis=1)
    words_in, words_out, mask = _batch(rng, 9)
    lam = 0.7

    def loss_of():
        xent, pen = model.losses(grid, mean, words_in, words_out, mask)
        return xent + lam * pen

    model.zero_grad()
    with pylstm.record():
        loss = loss_of()
    loss.backward()
    eps = 1e-6
    checked = 0
    for name, p in model.named_parameters():
        flat = p.data.reshape(-1)
        for i in rng.choice(flat.size, size=min(5, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + eps
            model.mark_updated()
            up = float(loss_of())
            flat[i] = old - eps
            model.mark_updated()
            down = float(loss_of())
            flat[i] = old
            model.mark_updated()
            fd = (up - down) / (2 * eps)
            assert p.grad.reshape(-1)[i] == pytest.approx(fd, rel=1e-5, abs=1e-9), f"{name}[{i}]"
            checked += 1
    assert checked >= 30


def test_penalty_counts_only_real_steps() -> None:
    cfg = CaptionerConfig(vocab=9, features=5, reduce=0, cells=6, emb=4, hidden=4,
                          attn_dim=3, dropout=0.0)
    model = ShowAttendTell(cfg, seed=2, dtype=F64)
    grid = np.ones((1, 6, 5))
    words_in = np.array([[2, 5, 0]])
    words_out = np.array([[5, 3, 0]])
    mask = np.array([[True, True, False]])
    # identical cells: the weights are uniform, so coverage is 2/6 per cell over two real steps
    _, pen = model.losses(grid, grid.mean(axis=1), words_in, words_out, mask)
    assert float(pen) == pytest.approx((1 - 2 / 6) ** 2)


def test_the_frozen_projection_is_the_leading_principal_components() -> None:
    rng = np.random.default_rng(5)
    mix = rng.standard_normal((10, 10))
    cells = rng.standard_normal((4000, 10)) * np.linspace(3, 0.1, 10) @ mix
    cfg = CaptionerConfig(vocab=9, features=10, reduce=4, cells=6, emb=4, hidden=4,
                          attn_dim=3)
    model = ShowAttendTell(cfg, seed=0, dtype=F64)
    model.fit_reduction(cells)
    grid = cells[:60].reshape(10, 6, 10)
    g, m = model.project(grid, grid.mean(axis=1))
    assert g.shape == (10, 6, 4) and np.allclose(m, g.mean(axis=1))
    y, _ = model.project(cells.reshape(-1, 1, 10), cells)
    cov = np.cov(y[:, 0], rowvar=False)
    assert np.allclose(cov, np.diag(np.diag(cov)), atol=1e-8)  # uncorrelated components
    assert np.diag(cov).mean() == pytest.approx(1.0)
    assert np.all(np.diff(np.diag(cov)) <= 1e-9)  # largest first
    names = {n for n, _ in model.named_parameters()} - {
        n for n, p in model.named_parameters() if any(p is q for q in model.trainable_parameters())}
    assert names == {"reduce_proj.weight", "reduce_proj.bias"}


def test_vocabulary_round_trip(tmp_path: Path) -> None:
    vocab = Vocabulary.build(["Woman kneeling: medium-light skin tone", "woman's hat",
                              "rare word"], min_count=1)
    assert vocab.words[:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    ids = vocab.encode("woman kneeling: unseen")
    assert vocab.decode(ids) == "woman kneeling : <unk>".replace(" <unk>", "")
    assert vocab.tokens(ids)[-1] == "<unk>"
    assert "medium-light" in vocab.index and "woman's" in vocab.index
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").words == vocab.words
    assert Vocabulary.build(["a b", "a c"], min_count=2).words[4:] == ["a"]
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(TaskError, match="bad.json"):
        Vocabulary.load(tmp_path / "bad.json")


class _CountingEncoder:
    """Stands in for ImageEncoder: features from pixel means (fast), counting calls."""

    calls = 0

    def features(self, images, batch_size=32):
        type(self).calls += 1
        a = np.stack([np.asarray(im, np.float32).mean(axis=(0, 1)) for im in images])
        grid = np.repeat(np.tile(a, (1, 4))[:, None, :12], 49, axis=1)
        return grid, grid.mean(axis=1)


def test_feature_cache_is_keyed_and_reused(tmp_path: Path, monkeypatch) -> None:
    from pylstm_captioning import features as fmod

    monkeypatch.setattr(fmod, "ImageEncoder", _CountingEncoder)
    items = []
    for i in range(5):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(p)
        items.append(CaptionItem(f"{i}.png", ["a red square"], p))
    enc = _CountingEncoder()
    first = encode_items(items, enc, tmp_path / "cache", batch_size=2)
    assert _CountingEncoder.calls == 3 and first.grid.dtype == np.float16
    again = encode_items(items, lambda: enc, tmp_path / "cache")
    assert _CountingEncoder.calls == 3 and again.ids == first.ids
    assert np.array_equal(np.asarray(again.grid), first.grid)
    key = dataset_key(items)
    import os

    st = os.stat(items[0].path)
    os.utime(items[0].path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # an edited image
    assert dataset_key(items) != key
    assert dataset_key(items[:4]) != key


def _synthetic(rng: np.random.Generator, n: int, cells: int = 9, feat: int = 8):
    """Images made of two parts in two random cells, a colour pattern and a shape pattern, on
    noise; the caption names both: "<colour> <shape>"."""
    colours = ["red", "green", "blue"]
    shapes = ["circle", "square", "star"]
    patterns = np.abs(np.random.default_rng(99).standard_normal((6, feat))) * 3
    grids, captions = [], []
    for _ in range(n):
        ci, si = rng.integers(3), rng.integers(3)
        grid = np.abs(rng.standard_normal((cells, feat))) * 0.3
        a, b = rng.choice(cells, 2, replace=False)
        grid[a] += patterns[ci]
        grid[b] += patterns[3 + si]
        grids.append(grid)
        captions.append(f"{colours[ci]} {shapes[si]}")
    grid = np.stack(grids).astype(np.float32)
    return Features([str(i) for i in range(n)], grid.astype(np.float16), grid.mean(axis=1)), \
        captions


def test_a_tiny_decoder_learns_synthetic_captions() -> None:
    rng = np.random.default_rng(0)
    train_f, train_c = _synthetic(rng, 240)
    test_f, test_c = _synthetic(rng, 60)
    vocab = Vocabulary.build(train_c)
    cfg = CaptionerConfig(vocab=len(vocab), features=8, reduce=6, cells=9, emb=16, hidden=32,
                          attn_dim=16, dropout=0.0, max_len=6)
    model = ShowAttendTell(cfg, seed=0)
    examples = make_examples(vocab, [[c] for c in train_c])
    fit(model, train_f, examples, None, [], FitOptions(epochs=25, batch_size=16, lr=1e-2),
        seed=0)
    got = [vocab.decode(d.ids) for d in decode_features(model, test_f, beam=1)]
    exact = np.mean([g == c for g, c in zip(got, test_c, strict=True)])
    # the honest baseline: the most frequent training caption, for every image
    values, counts = np.unique(train_c, return_counts=True)
    majority = np.mean([values[counts.argmax()] == c for c in test_c])
    assert exact >= 0.9 and exact >= majority + 0.5, (exact, majority, got[:5])
