"""Checkpoints: safetensors + JSON, bit-exact round trips, resumable training, digests,
validation before assignment, and consistency after a kill at every point of a save."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _nn_models import Tagger, train

import pylstm
from pylstm import nn

pytest.importorskip("safetensors")  # a test dependency; the checkpoint module needs it

HERE = Path(__file__).parent


def _bits(model):
    return {n: (p.data.dtype.str, p.shape, p.data.tobytes()) for n, p in model.named_parameters()}


def _opt_bits(opt):
    sd = opt.state_dict()
    state = {n: {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
             for n, s in sd["state"].items()}
    return json.dumps(sd["param_groups"], sort_keys=True), state


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_bit_for_bit(tmp_path, dtype):
    model = Tagger(dtype=dtype, seed=1)
    opt = nn.AdamW(model, lr=0.01)
    train(model, opt, 2)
    config = {"vocab": 11, "dim": 6, "dtype": np.dtype(dtype).name, "nested": {"a": [1, 2]}}
    path = nn.save_checkpoint(tmp_path / "ckpt", model, config)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((path / "config.json").read_text())
    assert meta["parameters"]["attn.query_weight"] == {
        "shape": [5, 6], "dtype": np.dtype(dtype).name
    }
    assert meta["files"]["model.safetensors"]["size"] == (path / "model.safetensors").stat().st_size
    fresh = Tagger(dtype=dtype, seed=2)
    assert _bits(fresh) != _bits(model)
    live = {n: p.data for n, p in fresh.named_parameters()}
    assert nn.load_checkpoint(path, fresh) == config
    assert _bits(fresh) == _bits(model)
    assert all(p.data is live[n] for n, p in fresh.named_parameters())  # loaded in place


def _setup(seed):
    model = Tagger(seed=seed)
    opt = nn.Adam(model, lr=0.05, weight_decay=0.01)
    return model, opt, nn.CosineWarmupLR(opt, total_steps=6, warmup_steps=2)


def test_resume_training_is_identical(tmp_path):
    ref, ref_opt, ref_sched = _setup(3)
    ref_losses = train(ref, ref_opt, 6, ref_sched)  # uninterrupted, dropout active

    a, a_opt, a_sched = _setup(3)
    first = train(a, a_opt, 3, a_sched)
    nn.save_checkpoint(tmp_path, a, {"k": 1}, optimizer=a_opt, scheduler=a_sched)
    assert (tmp_path / "optimizer.safetensors").is_file()

    b, b_opt, b_sched = _setup(99)  # different initial weights and dropout stream
    assert nn.load_checkpoint(tmp_path, b, optimizer=b_opt, scheduler=b_sched) == {"k": 1}
    assert b_opt.lr == a_opt.lr and b_opt.state["out.weight"]["step"] == 3
    second = train(b, b_opt, 3, b_sched, seed=3)
    assert [float(v) for v in first + second] == [float(v) for v in ref_losses]
    assert _bits(b) == _bits(ref)


def test_plateau_schedule_with_infinite_best_round_trips(tmp_path):
    model = Tagger(seed=0)
    opt = nn.SGD(model, lr=0.1)
    sched = nn.ReduceLROnPlateau(opt, patience=1)  # best = inf until the first step
    nn.save_checkpoint(tmp_path, model, optimizer=opt, scheduler=sched)
    other = nn.ReduceLROnPlateau(nn.SGD(model, lr=0.1), patience=1)
    other.best = 3.0
    nn.load_checkpoint(tmp_path, scheduler=other)
    assert other.best == float("inf")


def test_no_pickle_and_lazy_safetensors(tmp_path):
    code = (
        "import sys, pylstm.nn; "
        "assert 'safetensors' not in sys.modules, 'imported eagerly'; "
        "assert 'pickle' not in {m.split('.')[0] for m in sys.modules if 'safetensors' in m}"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    model = Tagger(seed=0)
    nn.save_checkpoint(tmp_path, model, optimizer=nn.SGD(model, lr=0.1, momentum=0.9))
    raw = (tmp_path / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    assert header["embed.weight"]["dtype"] == "F32"
    assert b"\x80\x04" not in raw[:2]  # not a pickle stream


def test_checkpoint_errors(tmp_path):
    model = Tagger(seed=0)
    with pytest.raises(pylstm.CheckpointError, match="expected a checkpoint folder.*no config"):
        nn.load_checkpoint(tmp_path / "missing", model)
    with pytest.raises(TypeError, match="config: expected JSON-serialisable"):
        nn.save_checkpoint(tmp_path / "x", model, {"a": np.zeros(1)})
    assert not (tmp_path / "x" / "config.json").exists()
    nn.save_checkpoint(tmp_path / "y", model, optimizer=nn.SGD(model, lr=0.1))
    with pytest.raises(ValueError, match=r"optimizer\.class: expected Adam .*got 'SGD'"):
        nn.load_checkpoint(tmp_path / "y", model, optimizer=nn.Adam(model))
    with pytest.raises(ValueError, match="scheduler: expected schedule state, got none"):
        opt = nn.SGD(model, lr=0.1)
        nn.load_checkpoint(tmp_path / "y", model, scheduler=nn.StepLR(opt, 2))
    other = Tagger(dim=8, seed=0)
    with pytest.raises(pylstm.ShapeError, match=r"config\.json: embed\.weight: expected shape "
                                                r"\[11, 8\], got \[11, 6\]; .*norm\.bias: "
                                                r"expected shape \[8\], got \[6\]"):
        nn.load_checkpoint(tmp_path / "y", other)
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "config.json").write_text('{"format": "other"}')
    with pytest.raises(pylstm.CheckpointError, match="format: expected 'pylstm.nn.checkpoint', "
                                                     "got 'other'"):
        nn.load_checkpoint(tmp_path / "z", model)


def _trained(tmp_path):
    model = Tagger(seed=5)
    opt = nn.Adam(model, lr=0.02)
    sched = nn.StepLR(opt, 2)
    train(model, opt, 2, sched)
    nn.save_checkpoint(tmp_path, model, {"k": 1}, optimizer=opt, scheduler=sched)
    target = Tagger(seed=6)
    target_opt = nn.Adam(target, lr=0.02)
    train(target, target_opt, 1)  # some optimiser state that must survive a refused load
    return target, target_opt, nn.StepLR(target_opt, 2)


def test_flipped_bit_in_tensor_data_is_detected(tmp_path):
    model, opt, sched = _trained(tmp_path)
    weights = tmp_path / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0x10  # inside the last tensor's data: the header still parses
    weights.write_bytes(bytes(raw))
    expected = json.loads((tmp_path / "config.json").read_text())["files"]["model.safetensors"]
    before, before_opt = _bits(model), _opt_bits(opt)
    with pytest.raises(pylstm.CheckpointError) as info:
        nn.load_checkpoint(tmp_path, model, optimizer=opt, scheduler=sched)
    message = str(info.value)
    assert "model.safetensors: sha256 mismatch" in message
    assert expected["sha256"] in message and "got " in message and "\n" not in message
    assert _bits(model) == before and _opt_bits(opt) == before_opt


def _edit_config(tmp_path, edit):
    path = tmp_path / "config.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda m: m.__setitem__("rng_states", []),
         r"rng_states: expected an object of module names to generator states, got list \[\]"),
        (lambda m: m["rng_states"].__setitem__("drop", {"bit_generator": "PCG64"}),
         r"rng_states\['drop'\]: expected a PCG64 state, got dict"),
        (lambda m: m["optimizer"]["param_groups"][0].__setitem__("eps", "tiny"),
         r"optimizer\.param_groups\[0\]\.eps: expected a number, got str 'tiny'"),
        (lambda m: m["optimizer"]["param_groups"][0].__setitem__("betas", "x"),
         r"optimizer\.param_groups\[0\]\.betas: expected a list of 2, got str 'x'"),
        (lambda m: m["optimizer"]["param_groups"][0].__setitem__("eps", -1.0),
         r"optimizer: .*eps: expected a number >= 0, got -1\.0"),
        (lambda m: m["optimizer"]["scalar_state"]["out.weight"].__setitem__("step", "three"),
         r"optimizer\.scalar_state\['out\.weight'\]\.step: expected an integer, got str 'three'"),
        (lambda m: m["scheduler"]["state"].__setitem__("last_epoch", 1.5),
         r"scheduler\.state\.last_epoch: expected an integer, got float 1\.5"),
        (lambda m: m["files"].__setitem__("model.safetensors", "abc"),
         r"files\['model\.safetensors'\]: expected \{\"sha256\""),
    ],
)
def test_invalid_state_is_refused_before_anything_changes(tmp_path, edit, pattern):
    model, opt, sched = _trained(tmp_path)
    _edit_config(tmp_path, edit)
    before, before_opt, before_lr = _bits(model), _opt_bits(opt), opt.lr
    before_rng = model.drop.rng.bit_generator.state
    with pytest.raises(pylstm.CheckpointError, match=pattern) as info:
        nn.load_checkpoint(tmp_path, model, optimizer=opt, scheduler=sched)
    assert str(tmp_path / "config.json") in str(info.value) and "\n" not in str(info.value)
    assert _bits(model) == before and _opt_bits(opt) == before_opt and opt.lr == before_lr
    assert model.drop.rng.bit_generator.state == before_rng


def test_config_that_is_a_list_or_truncated(tmp_path):
    model, _, _ = _trained(tmp_path)
    path = tmp_path / "config.json"
    text = path.read_text()
    path.write_text("[1, 2]")
    with pytest.raises(pylstm.CheckpointError, match=r"config\.json: expected a JSON object, "
                                                     r"got list"):
        nn.load_checkpoint(tmp_path, model)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(pylstm.CheckpointError,
                       match=rf"{path}: invalid JSON at line \d+ column \d+ \(char \d+ of "
                             rf"{len(text) // 2}\)"):
        nn.load_checkpoint(tmp_path, model)


def test_weights_file_digest(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2)}
    digest = nn.save_weights(tmp_path / "w.safetensors", arrays)
    loaded = nn.load_weights(tmp_path / "w.safetensors", sha256=digest)
    assert all(np.array_equal(loaded[k], arrays[k]) and loaded[k].dtype == arrays[k].dtype
               for k in arrays)
    with pytest.raises(pylstm.CheckpointError, match=f"sha256 mismatch: expected {'0' * 64}"):
        nn.load_weights(tmp_path / "w.safetensors", sha256="0" * 64)
    (tmp_path / "bad.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{abc}")
    with pytest.raises(pylstm.CheckpointError, match="bad.safetensors: not a valid safetensors"):
        nn.load_weights(tmp_path / "bad.safetensors")
    with pytest.raises(TypeError, match=r"tensors\['x'\]: expected a numeric numpy array, got "
                                        "list"):
        nn.save_weights(tmp_path / "c.safetensors", {"x": [1.0]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.safetensors", "w.safetensors"]


_KILLED_SAVE = """
import os, sys
sys.path.insert(0, {here!r})
from _nn_models import Tagger, train
from pylstm import nn
from pylstm.nn import checkpoint

model = Tagger(seed=5)
opt = nn.Adam(model, lr=0.02)
train(model, opt, 3)  # the new state: 3 steps (the folder holds the 2-step one)
calls = [0]
real = os.replace

def replace(src, dst):  # die, as a SIGKILL would, at the k-th rename (no cleanup runs)
    if calls[0] == {k}:
        os._exit(9)
    calls[0] += 1
    real(src, dst)

checkpoint.os.replace = replace
nn.save_checkpoint({path!r}, model, {{"steps": 3}}, optimizer=opt)
"""


def test_a_kill_at_any_point_of_a_save_leaves_the_old_or_the_new_checkpoint(tmp_path):
    """A save renames 4 times (journal, two tensor files, final config): killed before each
    of them, the folder still loads and holds one consistent state, old or new."""
    states = {}
    for steps in (2, 3):
        model = Tagger(seed=5)
        opt = nn.Adam(model, lr=0.02)
        train(model, opt, steps)
        states[steps] = (_bits(model), _opt_bits(opt))
    seen = set()
    for k in range(5):
        folder = tmp_path / f"k{k}"
        model = Tagger(seed=5)
        opt = nn.Adam(model, lr=0.02)
        train(model, opt, 2)
        nn.save_checkpoint(folder, model, {"steps": 2}, optimizer=opt)
        code = _KILLED_SAVE.format(here=str(HERE), k=k, path=str(folder))
        proc = subprocess.run([sys.executable, "-c", code], env={**os.environ})
        assert proc.returncode == (9 if k < 4 else 0)
        fresh = Tagger(seed=0)
        fresh_opt = nn.Adam(fresh, lr=0.02)
        steps = nn.load_checkpoint(folder, fresh, optimizer=fresh_opt)["steps"]
        assert (_bits(fresh), _opt_bits(fresh_opt)) == states[steps]
        seen.add(steps)
        nn.save_checkpoint(folder, fresh, {"steps": 4})  # stale partial files are replaced
        assert not list(folder.glob("*.partial"))
    assert seen == {2, 3}
