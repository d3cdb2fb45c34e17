"""The translation task end to end through the CLI (train -> evaluate -> predict -> export ->
onnxruntime), ``pylstm.load(run).translate``, and one-line errors for bad input."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from pylstm_translation.corpus import load_corpus
from pylstm_translation.onnx_export import OnnxTranslator

import pylstm
from pylstm.cli import main

TINY = ["--max-pairs", "300", "--valid-size", "30", "--test-size", "30", "--epochs", "2",
        "--hidden", "32", "--emb", "32", "--vocab-size", "300", "--batch-tokens", "800"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("translation") / "run"
    assert main(["-q", "--out", str(out), "train", "translation", *TINY]) == 0
    return out


def test_train_writes_a_complete_run_with_metrics_for_model_and_baselines(run_dir: Path):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"model_beam5", "model_greedy", "copy_source", "no_attention"} <= set(metrics)
    assert all(0 <= row["bleu"] <= 100 and 0 <= row["chrf"] <= 100 for row in metrics.values())
    for name in ("model.safetensors", "baseline.safetensors", "tokenizer.src.json",
                 "attention.png", "samples.json"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"


def test_predict_text_file_and_load_agree(run_dir: Path, tmp_path: Path, capsys):
    model = pylstm.load(run_dir)
    lines = ["Wie spät ist es?", "", "Das ist ein Test."]
    src = tmp_path / "src.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    hyp = tmp_path / "hyp.txt"
    assert main(["-q", "predict", str(run_dir), "--input", str(src), "--output", str(hyp),
                 "--beam", "3"]) == 0
    written = hyp.read_text(encoding="utf-8").split("\n")[:-1]
    assert written == model.translate(lines, beam=3)
    assert len(written) == 3 and written[1] == ""
    capsys.readouterr()
    assert main(["predict", str(run_dir), "--text", lines[0], "--beam", "1"]) == 0
    assert capsys.readouterr().out.strip() == model.translate([lines[0]], beam=1)[0].strip()


def test_translate_from_threads_equals_one_thread(run_dir: Path):
    model = pylstm.load(run_dir)
    sentences = ["Guten Morgen.", "Er kommt morgen.", "Wo ist der Bahnhof?"]
    want = model.translate(sentences, beam=2)
    got: list = [None] * 6

    def work(i: int) -> None:
        got[i] = model.translate(sentences, beam=2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(g == want for g in got)


def test_export_onnxruntime_translates_the_test_split_as_pylstm(run_dir: Path, tmp_path: Path):
    assert main(["-q", "export", str(run_dir), "-o", str(tmp_path / "model.onnx")]) == 0
    runner = OnnxTranslator(tmp_path / "model")
    model = pylstm.load(run_dir)
    test = [s for s, _ in load_corpus("ding", max_pairs=300, valid_size=30, test_size=30,
                                      seed=0).test]
    for beam in (1, 5):
        assert runner.translate(test, beam=beam) == model.translate(test, beam=beam)


def test_evaluate_recomputes_the_table(run_dir: Path, tmp_path: Path):
    assert main(["-q", "--out", str(tmp_path), "evaluate", str(run_dir)]) == 0
    again = json.loads((tmp_path / "evaluation.json").read_text())
    first = json.loads((run_dir / "metrics.json").read_text())
    assert again["model_beam5"]["bleu"] == first["model_beam5"]["bleu"]


@pytest.mark.parametrize("case", ["mismatch", "attention", "empty", "missing", "no_text"])
def test_bad_input_is_a_one_line_error(case: str, tmp_path: Path, capsys, run_dir: Path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("Eins.\nZwei.\n")
    b.write_text("One.\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    argv = {
        "mismatch": ["train", "translation", "--train-src", str(a), "--train-tgt", str(b)],
        "attention": ["train", "translation", "--attention", "cosine"],
        "empty": ["train", "translation", "--train-src", str(empty), "--train-tgt",
                  str(empty)],
        "missing": ["predict", str(run_dir), "--input", str(tmp_path / "nope.txt")],
        "no_text": ["predict", str(run_dir)],
    }[case]
    code = main(["--out", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err.strip()
    assert code in (1, 2)
    assert "Traceback" not in err and len(err.splitlines()) == 1 and "error" in err


def test_predict_sharded_over_two_mpi_ranks_equals_one_process(run_dir: Path, tmp_path: Path):
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install "
                                          "'pylstm[distributed]')")
    import os
    import subprocess
    import sys

    lines = ["Guten Morgen.", "", "Er kommt morgen.", "Wo ist der Bahnhof?", "Das ist gut."]
    src = tmp_path / "src.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYLSTM_NUM_THREADS="1")
    mpirun = Path(sys.executable).parent / "mpirun"
    done = subprocess.run([str(mpirun) if mpirun.exists() else "mpirun", "-n", "2",
                           "--oversubscribe", "--bind-to", "none", sys.executable, "-m",
                           "pylstm", "predict", str(run_dir), "--input", str(src),
                           "--output", str(tmp_path / "two.txt"), "--beam", "2"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"5 lines written to {tmp_path / 'two.txt'} (2 ranks)"
    assert main(["-q", "predict", str(run_dir), "--input", str(src), "--output",
                 str(tmp_path / "one.txt"), "--beam", "2"]) == 0
    assert (tmp_path / "two.txt").read_text(encoding="utf-8") == \
        (tmp_path / "one.txt").read_text(encoding="utf-8")
    assert (tmp_path / "two.txt").read_text(encoding="utf-8").split("\n")[1] == ""
