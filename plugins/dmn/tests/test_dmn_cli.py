"""The dmn task end to end through the CLI (train -> evaluate -> predict -> export ->
onnxruntime), ``pylstm.load(run).answer``, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pylstm_dmn.babi import format_babi, generate, load_tasks, task_file_name
from pylstm_dmn.onnx_export import OnnxDMN

import pylstm
from pylstm.cli import main

TINY = ["--dim", "16", "--epochs", "2", "--baseline-hidden", "12", "--batch-size", "32",
        "--samples", "2"]


def _write(folder: Path, task: int, train: int, test: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / task_file_name(task, "train")).write_text(format_babi(generate(task, train,
                                                                             "train", 0)))
    (folder / task_file_name(task, "test")).write_text(format_babi(generate(task, test,
                                                                            "test", 0)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("babi")
    _write(folder, 1, 300, 60)
    _write(folder, 19, 200, 40)  # path answers: two words
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("dmn") / "run"
    assert main(["-q", "--out", str(out), "train", "dmn", "--tasks", "1,19", "--data-dir",
                 str(data_dir), *TINY]) == 0
    return out


def test_train_writes_a_complete_run_with_per_task_metrics(run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"qa1", "qa19", "mean"}
    for row in (metrics["qa1"], metrics["qa19"]):
        assert 0 <= row["dmn"] <= 1 and 0 <= row["baseline"] <= 1
        assert {"support_pass1", "support_pass2", "support_pass3", "majority"} <= set(row)
    assert metrics["qa1"]["questions"] == 60 and metrics["qa19"]["questions"] == 40
    for name in ("dmn-qa1.safetensors", "dmn-qa19.json", "baseline-qa1.safetensors",
                 "attention.png", "training.json"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    cfg = json.loads((run_dir / "dmn-qa19.json").read_text())
    assert cfg["model"]["answer_len"] == 2 and cfg["tasks"] == [19]


def test_evaluate_scores_a_folder_as_training_did(run_dir: Path, data_dir: Path,
                                                  tmp_path: Path) -> None:
    assert main(["-q", "--out", str(tmp_path), "evaluate", str(run_dir), "--data-dir",
                 str(data_dir), "--tasks", "1"]) == 0
    again = json.loads((tmp_path / "evaluation.json").read_text())
    first = json.loads((run_dir / "metrics.json").read_text())
    assert set(again) == {"qa1", "mean"}
    assert again["qa1"]["dmn"] == first["qa1"]["dmn"]
    assert (tmp_path / "attention.png").is_file()


def test_predict_prints_the_answer_and_the_facts_of_each_pass(run_dir: Path, tmp_path: Path,
                                                              capsys) -> None:
    story = tmp_path / "story.txt"
    story.write_text("1 Mary moved to the bathroom.\n2 John went to the hallway.\n"
                     "3 Mary travelled to the office.\n")
    capsys.readouterr()
    assert main(["predict", str(run_dir), "--story", str(story), "--question",
                 "Where is Mary?", "--task", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    want = pylstm.load(run_dir).answer(story.read_text(), "Where is Mary?", task=1)
    assert lines[0] == f"answer: {want.answer}  (model qa1)"
    assert [line.split(":")[0] for line in lines[1:4]] == ["pass 1", "pass 2", "pass 3"]
    assert "Mary travelled to the office." in "\n".join(lines[1:]) or want.top


def test_load_answers_text_or_a_list_the_same(run_dir: Path) -> None:
    model = pylstm.load(run_dir)
    sentences = ["Mary moved to the bathroom.", "Sandra went to the garden."]
    a = model.answer(sentences, "Where is Sandra?", task=1)
    b = model.answer("Mary moved to the bathroom. Sandra went to the garden.",
                     "Where is Sandra?", task=1)
    assert a.answer == b.answer and np.allclose(a.gates, b.gates)
    assert a.gates.shape == (3, 2) and np.allclose(a.gates.sum(axis=1), 1, atol=1e-5)
    assert a.model == "qa1" and a.unknown == []
    assert model.answer(sentences, "Where is the zebra?", task=1).unknown == ["zebra"]


def test_export_onnxruntime_answers_the_test_split_as_pylstm(run_dir: Path, data_dir: Path,
                                                             tmp_path: Path) -> None:
    assert main(["-q", "export", str(run_dir), "-o", str(tmp_path / "dmn.onnx")]) == 0
    predictor = pylstm.load(run_dir)
    data = load_tasks([1, 19], data_dir=data_dir)
    for key, task in (("qa1", 1), ("qa19", 19)):
        model = predictor.models[key]
        enc = model.encode(data[task].test, "test")
        ours, our_gates = predictor.predict_encoded(model, enc)
        theirs, their_gates = OnnxDMN(tmp_path / "dmn", key).run(enc)
        assert np.array_equal(ours, theirs)
        for x, y in zip(our_gates, their_gates, strict=True):
            assert np.allclose(x, y, atol=1e-5)


def _bad_folder(tmp_path: Path, name: str, train_text: str | None = None,
                test_text: str | None = None) -> Path:
    folder = tmp_path / name
    _write(folder, 1, 50, 10)
    if train_text is not None:
        (folder / task_file_name(1, "train")).write_text(train_text)
    if test_text is not None:
        (folder / task_file_name(1, "test")).write_text(test_text)
    return folder


@pytest.mark.parametrize("case", ["malformed_line", "question_first", "unknown_task",
                                  "answer_word", "story_line", "no_story", "untrained_task"])
def test_bad_input_is_a_one_line_error(case: str, tmp_path: Path, capsys,
                                       run_dir: Path) -> None:
    story = tmp_path / "story.txt"
    story.write_text("1 Mary moved to the bathroom.\n2\n")
    argv, needle = {
        "malformed_line": (["train", "dmn", "--tasks", "1", "--data-dir", str(_bad_folder(
            tmp_path, "a", train_text="1 Mary moved to the bathroom.\nMary went home.\n"))],
            "expected 'ID text'"),
        "question_first": (["train", "dmn", "--tasks", "1", "--data-dir", str(_bad_folder(
            tmp_path, "b", train_text="1 Where is Mary? \tkitchen\t1\n"))],
            "expected a statement before the first question"),
        "unknown_task": (["train", "dmn", "--tasks", "1,21"], "1-20, got 21"),
        "answer_word": (["evaluate", str(run_dir), "--tasks", "1", "--data-dir", str(
            _bad_folder(tmp_path, "c", test_text="1 Mary moved to the bathroom.\n"
                                            "2 Where is Mary? \tzanzibar\t1\n"))],
            "'zanzibar'"),
        "story_line": (["predict", str(run_dir), "--story", str(story), "--question",
                        "Where is Mary?"], "story line 2"),
        "no_story": (["predict", str(run_dir), "--question", "Where is Mary?"],
                     "--story"),
        "untrained_task": (["evaluate", str(run_dir), "--tasks", "2"], "--tasks"),
    }[case]
    code = main(["--out", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err.strip()
    assert code in (1, 2)
    assert "Traceback" not in err and len(err.splitlines()) == 1 and "error" in err, err
    assert needle in err, err


def test_joint_trains_one_model_for_all_tasks(data_dir: Path, tmp_path: Path,
                                              capsys) -> None:
    out = tmp_path / "joint"
    assert main(["-q", "--out", str(out), "train", "dmn", "--tasks", "1,19", "--joint",
                 "--data-dir", str(data_dir), "--no-baseline", "--dim", "12", "--epochs", "1",
                 "--samples", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"qa1", "qa19", "mean"} and "baseline" not in metrics["qa1"]
    assert (out / "dmn-joint.safetensors").is_file()
    assert not (out / "baseline-joint.safetensors").exists()
    model = pylstm.load(out)
    assert list(model.models) == ["joint"] and model.models["joint"].tasks == (1, 19)
    assert model.models["joint"].answer_len == 2
    got = model.answer("Mary went to the kitchen.", "Where is Mary?")
    assert got.model == "joint" and got.gates.shape == (3, 1)
