"""The captioning task end to end through the CLI on a small Flickr-format dataset of drawn
shapes (train -> evaluate -> predict -> export -> onnxruntime), ``pylstm.load(run).caption``
with every input kind, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pylstm_captioning.onnx_export import OnnxCaptioner

import pylstm
from pylstm.cli import main

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220)}
SHAPES = ("circle", "square")


def _draw(colour: str, shape: str, size: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(im)
    r = size // 4 + int(rng.integers(0, size // 8))
    cx, cy = (size // 2 + int(rng.integers(-size // 8, size // 8)) for _ in range(2))
    box = (cx - r, cy - r, cx + r, cy + r)
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=COLOURS[colour])
    return im


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("captioning-cli")
    images = root / "images"
    images.mkdir()
    lines = []
    n = 0
    for colour in COLOURS:
        for shape in SHAPES:
            for k in range(5):
                name = f"{colour}_{shape}_{k}.{'png' if k % 2 else 'jpg'}"
                _draw(colour, shape, 96 + 16 * k, n).save(images / name)
                lines.append(f"{name}#0\ta {colour} {shape}")
                lines.append(f"{name}#1\t{colour} {shape} on white")
                n += 1
    captions = root / "captions.txt"
    captions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return images, captions, root / "cache"


TINY = ["--epochs", "3", "--emb", "16", "--hidden", "32", "--attn-dim", "16",
        "--batch-size", "16", "--valid-size", "4", "--test-size", "6", "--samples", "2",
        "--beam", "2", "--time-budget", "0"]


@pytest.fixture(scope="module")
def run_dir(data: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, captions, cache = data
    out = tmp_path_factory.mktemp("captioning-run") / "run"
    assert main(["-q", "--out", str(out), "train", "captioning", "--images", str(images),
                 "--captions", str(captions), "--cache-dir", str(cache), *TINY]) == 0
    return out


def test_train_writes_a_complete_run_with_metrics_for_model_and_baselines(run_dir: Path):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"model_beam2", "model_greedy", "nearest_neighbour", "no_attention"} <= set(metrics)
    for row in metrics.values():
        assert all(0 <= row[f"bleu{n}"] <= 100 for n in (1, 2, 3, 4))
        assert 0 <= row["cider_d"] <= 10
    for name in ("model.safetensors", "baseline.safetensors", "vocab.json", "samples.json",
                 "attention_00.png", "attention_01.png", "training.json"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    with Image.open(run_dir / "attention_00.png") as im:
        assert im.format == "PNG" and im.size[0] > 200


def test_predict_and_load_agree_for_every_input_kind(run_dir: Path, data, tmp_path: Path,
                                                    capsys):
    images, _, _ = data
    photo = images / "red_circle_0.jpg"
    model = pylstm.load(run_dir)
    pil = Image.open(photo)
    array = np.asarray(pil)
    by_path, by_pil, by_array = model.caption([photo, pil, array], beam=2)
    assert by_path == by_pil == by_array and isinstance(by_path, str)
    capsys.readouterr()
    assert main(["predict", str(run_dir), "--image", str(photo), "--beam", "2"]) == 0
    assert capsys.readouterr().out.strip() == by_path.strip()
    png = tmp_path / "att.png"
    assert main(["-q", "predict", str(run_dir), "--image", str(photo), "--attention-map",
                 str(png), "--beam", "2"]) == 0
    with Image.open(png) as im:
        assert im.format == "PNG"


def test_caption_from_threads_equals_one_thread(run_dir: Path, data) -> None:
    import threading

    images, _, _ = data
    paths = sorted(images.iterdir())[:4]
    model = pylstm.load(run_dir)
    want = model.caption(paths, beam=2)
    got: list = [None] * 4

    def work(i: int) -> None:
        got[i] = model.caption(paths, beam=2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(g == want for g in got)


def test_evaluate_recomputes_the_table(run_dir: Path, tmp_path: Path):
    assert main(["-q", "--out", str(tmp_path), "evaluate", str(run_dir)]) == 0
    again = json.loads((tmp_path / "evaluation.json").read_text())
    first = json.loads((run_dir / "metrics.json").read_text())
    for name in ("model_beam2", "nearest_neighbour", "no_attention"):
        assert again[name]["cider_d"] == first[name]["cider_d"]
    assert (tmp_path / "attention_00.png").is_file()


def test_export_onnxruntime_captions_the_test_split_as_pylstm(run_dir: Path, data,
                                                              tmp_path: Path):
    images, _, _ = data
    assert main(["-q", "export", str(run_dir), "-o", str(tmp_path / "model.onnx")]) == 0
    runner = OnnxCaptioner(tmp_path / "model")
    model = pylstm.load(run_dir)
    test = [json.loads((run_dir / "samples.json").read_text())[i]["image"] for i in range(6)]
    paths = [images / name for name in test]
    for beam in (1, 2):
        assert runner.caption(paths, beam=beam) == model.caption(paths, beam=beam)


@pytest.mark.parametrize("case", ["unreadable", "missing_images", "empty_folder", "no_image",
                                  "one_of_two"])
def test_bad_input_is_a_one_line_error(case: str, tmp_path: Path, capsys, run_dir: Path,
                                       data) -> None:
    images, captions, cache = data
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"not a jpeg at all")
    ghost = tmp_path / "ghost.txt"
    ghost.write_text(captions.read_text() + "ghost.jpg#0\ta ghost\n", encoding="utf-8")
    empty = tmp_path / "empty"
    empty.mkdir()
    train = ["train", "captioning", "--cache-dir", str(cache), *TINY]
    argv = {
        "unreadable": ["predict", str(run_dir), "--image", str(bad)],
        "missing_images": [*train, "--images", str(images), "--captions", str(ghost)],
        "empty_folder": [*train, "--images", str(empty), "--captions", str(captions)],
        "no_image": ["predict", str(run_dir)],
        "one_of_two": [*train, "--images", str(images)],
    }[case]
    code = main(["--out", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err.strip()
    assert code in (1, 2)
    assert "Traceback" not in err and len(err.splitlines()) == 1 and "error" in err, err
    if case == "unreadable":
        assert "photo.jpg" in err
    if case == "missing_images":
        assert "ghost.jpg" in err
