"""Checkpoints: safetensors + JSON, bit-exact round trips, resumable training, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _nn_models import Tagger, train

from pylstm import nn

pytest.importorskip("safetensors")  # a test dependency; the checkpoint module needs it


def _bits(model):
    return {n: (p.dtype.str, p.shape, p.tobytes()) for n, p in model.named_parameters()}


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
    fresh = Tagger(dtype=dtype, seed=2)
    assert _bits(fresh) != _bits(model)
    live = dict(fresh.named_parameters())
    assert nn.load_checkpoint(path, fresh) == config
    assert _bits(fresh) == _bits(model)
    assert all(p is live[n] for n, p in fresh.named_parameters())  # loaded in place


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
    assert first + second == ref_losses
    assert _bits(b) == _bits(ref)


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
    with pytest.raises(FileNotFoundError, match="no config.json"):
        nn.load_checkpoint(tmp_path / "missing", model)
    with pytest.raises(TypeError, match="config: expected JSON-serialisable"):
        nn.save_checkpoint(tmp_path / "x", model, {"a": np.zeros(1)})
    nn.save_checkpoint(tmp_path / "y", model, optimizer=nn.SGD(model, lr=0.1))
    with pytest.raises(ValueError, match="optimizer: checkpoint holds SGD, got Adam"):
        nn.load_checkpoint(tmp_path / "y", model, optimizer=nn.Adam(model))
    with pytest.raises(ValueError, match="scheduler: the checkpoint .* has no schedule"):
        opt = nn.SGD(model, lr=0.1)
        nn.load_checkpoint(tmp_path / "y", model, scheduler=nn.StepLR(opt, 2))
    other = Tagger(dim=8, seed=0)
    pattern = r"state\['[a-z_.]+'\]: expected shape \(\d+, 8\), got \(\d+, 6\)"
    with pytest.raises(nn.ShapeError, match=pattern):
        nn.load_checkpoint(tmp_path / "y", other)
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "config.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="format 'other'"):
        nn.load_checkpoint(tmp_path / "z", model)
