"""The run folder: run.json validation, atomic commits with digests, refusals, recovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pylstm
from pylstm.runs import Run

pytest.importorskip("safetensors")


def _run(tmp_path, **kw):
    args = {"task": "forecasting", "options": {"epochs": 3, "hidden": [8, 4]}, "seed": 7,
            "threads": 2, **kw}
    return Run.create(tmp_path / "run", **args)


def _manifest(run):
    return json.loads((run.path / "run.json").read_text())


def test_create_writes_a_running_run(tmp_path):
    run = _run(tmp_path)
    data = _manifest(run)
    assert data["format"] == "pylstm.run" and data["version"] == 1
    assert (data["task"], data["status"], data["seed"], data["threads"]) == \
        ("forecasting", "running", 7, 2)
    assert data["options"] == {"epochs": 3, "hidden": [8, 4]}
    assert data["pylstm_version"] == pylstm.__version__ and data["files"] == {}
    again = Run.open(run.path, require_complete=False)
    assert (again.task, again.status, again.seed, again.threads, again.options) == \
        ("forecasting", "running", 7, 2, {"epochs": 3, "hidden": [8, 4]})
    assert sorted(p.name for p in run.path.iterdir()) == ["run.json"]


def test_create_refuses_folders_it_must_not_overwrite(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(pylstm.CheckpointError, match="holds files but no run.json"):
        Run.create(tmp_path / "other", task="t", options={}, seed=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(pylstm.CheckpointError, match="expected a folder for the run"):
        Run.create(tmp_path / "file", task="t", options={}, seed=0)
    run = _run(tmp_path)
    with pytest.raises(pylstm.CheckpointError, match=r"incomplete run \(status running\); "
                                                     "resume it"):
        _run(tmp_path)
    run.finish({"mae": 0.5})
    with pytest.raises(pylstm.CheckpointError, match="holds a complete run already"):
        _run(tmp_path)


@pytest.mark.parametrize(
    ("kw", "error", "pattern"),
    [
        ({"task": ""}, pylstm.LstmValueError, "task: expected a non-empty string, got ''"),
        ({"seed": -1}, pylstm.LstmValueError, "seed: expected an integer >= 0, got -1"),
        ({"seed": True}, pylstm.LstmValueError, "seed: expected an integer >= 0, got True"),
        ({"threads": 0}, pylstm.LstmValueError, "threads: expected None or an integer >= 1"),
        ({"options": [1]}, pylstm.DTypeError, "options: expected a dict, got list"),
        ({"options": {"a": object()}}, pylstm.DTypeError, "options: expected JSON-serial"),
        ({"options": {"a": float("nan")}}, pylstm.LstmValueError, "options: expected finite"),
    ],
)
def test_create_validates_its_arguments(tmp_path, kw, error, pattern):
    with pytest.raises(error, match=pattern):
        _run(tmp_path, **kw)
    assert not (tmp_path / "run").exists()


def test_open_requires_a_complete_run_unless_told(tmp_path):
    run = _run(tmp_path)
    with pytest.raises(pylstm.CheckpointError, match=r"the run is incomplete \(status "
                                                     r"'running'\); resume it with `pylstm "
                                                     r"train forecasting --resume"):
        Run.open(run.path)
    run.interrupt("KeyboardInterrupt during epoch 3")
    with pytest.raises(pylstm.CheckpointError, match="'interrupted': KeyboardInterrupt during"):
        Run.open(run.path)
    reopened = Run.open(run.path, require_complete=False)
    assert reopened.status == "interrupted" and reopened.message.startswith("KeyboardInt")
    reopened.mark_running()
    reopened.fail("LstmValueError: loss: expected a finite value")
    assert Run.open(run.path, require_complete=False).status == "failed"
    reopened.finish({"mae": 0.25, "rows": {"lstm": {"mae": 0.25}}})
    done = Run.open(run.path)
    assert done.status == "complete" and done.message is None
    assert done.read_json("metrics.json") == {"mae": 0.25, "rows": {"lstm": {"mae": 0.25}}}
    with pytest.raises(pylstm.CheckpointError, match="expected a run folder.*no run.json"):
        Run.open(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda d: d.__setitem__("status", "done"),
         r"status: expected one of \['running', 'complete', 'interrupted', 'failed'\], got "
         "'done'"),
        (lambda d: d.__setitem__("seed", "x"), "seed: expected an integer >= 0, got 'x'"),
        (lambda d: d.__setitem__("threads", 0), "threads: expected None or an integer >= 1"),
        (lambda d: d.__setitem__("options", []), "options: expected an object, got list"),
        (lambda d: d.__setitem__("version", 2), "version: expected 1, got 2"),
        (lambda d: d.__setitem__("task", 3), "task: expected a non-empty string, got 3"),
        (lambda d: d.pop("created"), r"got missing \['created'\] and unexpected \[\]"),
        (lambda d: d.__setitem__("extra", 1), r"got missing \[\] and unexpected \['extra'\]"),
        (lambda d: d["files"].__setitem__("../x", {"sha256": "0" * 64, "size": 1}),
         "files: expected relative file names, got '../x'"),
        (lambda d: d["files"].__setitem__("a.json", {"sha256": "z", "size": 1}),
         r"files\['a.json'\]: expected \{\"sha256\": 64 hex digits"),
    ],
)
def test_open_validates_every_key(tmp_path, edit, pattern):
    run = _run(tmp_path)
    run.finish({})
    data = _manifest(run)
    edit(data)
    (run.path / "run.json").write_text(json.dumps(data))
    with pytest.raises(pylstm.CheckpointError, match=pattern) as info:
        Run.open(run.path)
    assert str(run.path / "run.json") in str(info.value)


def test_open_reports_broken_json_with_its_position(tmp_path):
    run = _run(tmp_path)
    text = (run.path / "run.json").read_text()
    (run.path / "run.json").write_text(text[:50])
    with pytest.raises(pylstm.CheckpointError,
                       match=r"run.json: invalid JSON at line \d+ column \d+ \(char \d+ of 50\)"):
        Run.open(run.path)
    (run.path / "run.json").write_text("[]")
    with pytest.raises(pylstm.CheckpointError, match="run.json: expected a JSON object, got list"):
        Run.open(run.path)


def test_json_and_tensor_files_are_recorded_and_verified(tmp_path):
    run = _run(tmp_path)
    run.write_json("history.json", [{"epoch": 1, "loss": 0.5}])
    tensors = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.zeros(4)}
    run.save_tensors("model", tensors, {"hidden": 4, "layers": 1})
    files = _manifest(run)["files"]
    assert sorted(files) == ["history.json", "model.json", "model.safetensors"]
    assert files["model.safetensors"]["size"] == run.file("model.safetensors").stat().st_size
    again = Run.open(run.path, require_complete=False)
    loaded, config = again.load_tensors("model")
    assert config == {"hidden": 4, "layers": 1}
    assert all(np.array_equal(loaded[k], v) and loaded[k].dtype == v.dtype
               for k, v in tensors.items())
    assert again.read_json("history.json") == [{"epoch": 1, "loss": 0.5}]

    raw = bytearray(run.file("model.safetensors").read_bytes())
    raw[-1] ^= 0x01  # one bit of the last tensor's data
    run.file("model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(pylstm.CheckpointError) as info:
        again.load_tensors("model")
    msg = str(info.value)
    assert "model.safetensors: sha256 mismatch: expected " + files["model.safetensors"][
        "sha256"] in msg and "got " in msg and "recorded in" in msg

    run.file("model.json").write_text("[1]")
    with pytest.raises(pylstm.CheckpointError, match="model.json: sha256 mismatch"):
        again.read_json("model.json")
    run.file("history.json").unlink()
    with pytest.raises(pylstm.CheckpointError, match="history.json: file not found"):
        again.read_json("history.json")
    with pytest.raises(pylstm.CheckpointError, match=r"expected an entry for 'nope.json'"):
        again.read_json("nope.json")


def test_a_model_config_that_is_a_json_list_is_refused(tmp_path):
    run = _run(tmp_path)
    run.save_tensors("model", {"w": np.ones(2)})
    run.write_json("model.json", [1, 2])
    with pytest.raises(pylstm.CheckpointError, match="model.json: expected a JSON object, got "
                                                     "list"):
        run.load_tensors("model")


def test_file_names_stay_inside_the_folder(tmp_path):
    run = _run(tmp_path)
    for bad in ("../x.json", "/tmp/x.json", "run.json", "", "a.partial"):
        with pytest.raises(pylstm.LstmValueError, match="name: expected"):
            run.write_json(bad, {})
    assert run.file("checkpoint/state.json") == run.path / "checkpoint" / "state.json"


def test_tokenizer_files_through_add_file(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"<pad>": 0, "<unk>": 1, "hello": 2, "world": 3}
    tok = tokenizers.Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    run = _run(tmp_path)
    path = run.add_file("tokenizer.json", lambda p: tok.save(str(p)))
    assert path == run.file("tokenizer.json") and run.has_file("tokenizer.json")
    again = Run.open(run.path, require_complete=False)
    back = tokenizers.Tokenizer.from_file(str(again.verified_path("tokenizer.json")))
    assert back.encode("hello there world").ids == [2, 1, 3]
    with open(path, "a") as f:
        f.write(" ")
    with pytest.raises(pylstm.CheckpointError, match="tokenizer.json: sha256 mismatch"):
        again.verified_path("tokenizer.json")


def test_info_and_status_changes_keep_the_files(tmp_path):
    run = _run(tmp_path)
    run.write_json("history.json", [])
    run.set_info(train_seconds=1.5, device="cpu")
    run.set_info(device="cpu0")
    again = Run.open(run.path, require_complete=False)
    assert again.info == {"train_seconds": 1.5, "device": "cpu0"}
    assert again.has_file("history.json")
    with pytest.raises(pylstm.DTypeError, match="info: expected JSON-serialisable"):
        run.set_info(bad=np.zeros(2))


_KILLED = """
import os, sys
import numpy as np
from pylstm.nn import checkpoint
from pylstm.runs import Run
run = Run.open({path!r}, require_complete=False)
calls = [0]
real = os.replace
def replace(src, dst):  # die, as a SIGKILL would, at the k-th rename (no cleanup runs)
    if calls[0] == {k}:
        os._exit(9)
    calls[0] += 1
    real(src, dst)
checkpoint.os.replace = replace
run.save_tensors("model", {{"w": np.full(3, 2.0)}}, {{"version": 2}})
"""


def test_a_kill_at_any_point_leaves_old_or_new_files_never_a_mix(tmp_path):
    seen = set()
    for k in range(5):
        run = Run.create(tmp_path / f"k{k}", task="t", options={}, seed=0)
        run.save_tensors("model", {"w": np.full(3, 1.0)}, {"version": 1})
        proc = subprocess.run([sys.executable, "-c", _KILLED.format(path=str(run.path), k=k)],
                              env={**os.environ})
        assert proc.returncode == (9 if k < 4 else 0)
        again = Run.open(run.path, require_complete=False)  # finishes a committed save
        tensors, config = again.load_tensors("model")
        assert float(tensors["w"][0]) == config["version"]  # weights and config agree
        seen.add(config["version"])
        assert "pending" not in _manifest(again)
    assert seen == {1, 2}
