"""The training loop: real training of a small LSTM regression, best checkpoint, early stop,
step and time budgets, non-finite losses, and interrupted runs that resume bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pylstm
from pylstm import nn
from pylstm.data import batches_by_count
from pylstm.runs import Run
from pylstm.train import Trainer, TrainOptions
from pylstm.train import trainer as trainer_module

pytest.importorskip("safetensors")

HERE = Path(__file__).parent
N, T, I = 48, 6, 3  # noqa: E741  (examples, steps, input size)


class Regressor(nn.Module):
    """Two-layer LSTM (dropout between layers), dropout, linear head on the last step."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.lstm = pylstm.LSTM(I, 8, num_layers=2, dropout=0.2, batch_first=True, seed=seed)
        self.drop = nn.Dropout(0.1, seed=seed + 1)
        self.head = nn.Linear(8, 1, seed=seed + 2)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.head(self.drop(y[:, -1]))


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    y = (0.5 * x[:, :, 0].sum(1, keepdims=True) - 0.3 * x[:, -1, 1:2]).astype(np.float32)
    return x, y


def setup(run=None, *, seed=0, options=None, progress=None, schedule=True, data_seed=0):
    """Model, optimiser, schedule and the loop's callables, all from ``seed``."""
    model = Regressor(seed)
    opt = nn.Adam(model, lr=0.02)
    options = options or TrainOptions(epochs=4, metric="loss")
    sched = nn.CosineWarmupLR(opt, total_steps=4 * 3, warmup_steps=2) if schedule else None
    trainer = Trainer(model, opt, options=options, scheduler=sched, run=run,
                      progress=progress, seed=data_seed)
    x, y = data(1)
    xv, yv = data(2)
    mse = nn.MSELoss()

    def batches(epoch):
        for idx in batches_by_count(N, 16, shuffle=True, seed=trainer.seed, epoch=epoch):
            yield {"x": x[idx], "y": y[idx], "num_tokens": len(idx) * T}

    def loss(batch):
        return mse(model(batch["x"]), batch["y"])

    def validate():
        return {"loss": float(np.mean((model(xv) - yv) ** 2))}

    return model, opt, trainer, (batches, loss, validate)


def weights(model):
    return {n: p.data.copy() for n, p in model.named_parameters()}


def same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def new_run(path, **kw):
    return Run.create(path, task="regression", options={}, seed=0, **kw)


def test_trains_keeps_the_best_epoch_and_reports_each_epoch(tmp_path):
    calls = []
    run = new_run(tmp_path / "run")
    model, opt, trainer, fns = setup(run, progress=lambda e, total, **m: calls.append(
        (e, total, m)))
    before = weights(model)
    summary = trainer.fit(*fns)
    hist = trainer.history
    assert [row["epoch"] for row in hist] == [1, 2, 3, 4] and summary["epochs"] == 4
    assert summary["steps"] == 12 and summary["stopped"] == "epochs"
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]  # it learns
    assert {"step", "train_loss", "loss", "lr", "seconds", "tokens_per_s"} <= set(hist[0])
    assert [c[0] for c in calls] == [1, 2, 3, 4] and all(c[1] == 4 for c in calls)
    assert calls[0][2]["loss"] == hist[0]["loss"] and "epoch" not in calls[0][2]
    best = min(range(4), key=lambda i: hist[i]["loss"])
    assert summary["best_epoch"] == best + 1 and summary["best"] == hist[best]["loss"]
    # the model holds the best epoch's weights: those of a run stopped after that epoch
    ref_model, _, ref_trainer, ref_fns = setup(options=TrainOptions(epochs=best + 1))
    ref_trainer.fit(*ref_fns)
    assert same(weights(model), weights(ref_model)) and not same(weights(model), before)
    files = json.loads((run.path / "run.json").read_text())["files"]
    assert {"checkpoint/last.safetensors", "checkpoint/best.safetensors",
            "checkpoint/optimizer.safetensors", "checkpoint/state.json",
            "history.json"} <= set(files)
    assert run.read_json("history.json") == hist
    state = run.read_json("checkpoint/state.json")
    assert (state["epoch"], state["step"], state["best_epoch"], state["seed"]) == \
        (4, 12, best + 1, 0)
    assert set(state["rng_states"]) == {"lstm", "drop"}
    assert state["threads"] == pylstm.get_num_threads()


def test_without_a_run_the_best_weights_are_kept_in_memory():
    model, _, trainer, fns = setup(options=TrainOptions(epochs=3, metric="train_loss"))
    summary = trainer.fit(fns[0], fns[1])
    assert summary["best_epoch"] == 3  # the training loss falls every epoch here
    with pytest.raises(pylstm.LstmValueError, match="resume: expected a Trainer with a run"):
        trainer.resume(*fns)


def _straight(tmp_path, **kw):
    model, opt, trainer, fns = setup(new_run(tmp_path / "straight"), **kw)
    trainer.fit(*fns)
    return model, opt, trainer


def _assert_same_result(a, b):
    (model_a, opt_a, trainer_a), (model_b, opt_b, trainer_b) = a, b
    assert same(weights(model_a), weights(model_b))
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for name in sa["state"]:
        for key, value in sa["state"][name].items():
            assert np.array_equal(value, sb["state"][name][key])
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "tokens_per_s")}
             for r in trainer_a.history]
    assert strip == [{k: v for k, v in r.items() if k not in ("seconds", "tokens_per_s")}
                     for r in trainer_b.history]


class _Stop(Exception):
    pass


def test_keyboard_interrupt_then_resume_gives_the_same_result(tmp_path):
    straight = _straight(tmp_path)

    def interrupt(epoch, total, **m):
        if epoch == 2:
            raise KeyboardInterrupt

    run = new_run(tmp_path / "cut")
    model, opt, trainer, fns = setup(run, progress=interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(*fns)
    cut = Run.open(run.path, require_complete=False)
    assert cut.status == "interrupted" and "KeyboardInterrupt" in cut.message
    assert cut.read_json("checkpoint/state.json")["epoch"] == 2
    with pytest.raises(pylstm.CheckpointError, match="resume"):
        trainer.fit(*fns)  # a second plain fit would overwrite the run

    model, opt, trainer, fns = setup(Run.open(run.path, require_complete=False), seed=9)
    summary = trainer.resume(*fns)  # a fresh process would build the model like this
    assert summary["epochs"] == 4 and Run.open(run.path, require_complete=False).status == \
        "running"
    _assert_same_result(straight, (model, opt, trainer))


_KILL_AFTER_EPOCH = """
import os, signal, sys
sys.path.insert(0, {here!r})
import test_train as t
from pylstm.runs import Run

def kill(epoch, total, **metrics):
    if epoch == {k}:
        os.kill(os.getpid(), signal.SIGKILL)

run = t.new_run({path!r})
model, opt, trainer, fns = t.setup(run, progress=kill)
trainer.fit(*fns)
"""


@pytest.mark.parametrize("k", [1, 3])
def test_sigkill_after_an_epoch_then_resume_gives_the_same_result(tmp_path, k):
    straight = _straight(tmp_path)
    path = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", _KILL_AFTER_EPOCH.format(
        here=str(HERE), k=k, path=str(path))], env={**os.environ})
    assert proc.returncode == -signal.SIGKILL
    run = Run.open(path, require_complete=False)
    assert run.status == "running" and run.read_json("checkpoint/state.json")["epoch"] == k
    model, opt, trainer, fns = setup(run, seed=5)
    trainer.resume(*fns)
    _assert_same_result(straight, (model, opt, trainer))


def test_a_run_interrupted_before_its_first_checkpoint_starts_over(tmp_path):
    straight = _straight(tmp_path, schedule=False)
    run = new_run(tmp_path / "early")
    model, opt, trainer, (batches, loss, validate) = setup(run, schedule=False)

    def broken(epoch):
        yield from batches(epoch)
        raise _Stop("data source went away")

    with pytest.raises(_Stop):
        trainer.fit(broken, loss, validate)
    failed = Run.open(run.path, require_complete=False)
    assert failed.status == "failed" and "_Stop: data source went away" in failed.message
    assert "no checkpoint yet" in failed.message
    model, opt, trainer, fns = setup(failed, schedule=False)
    trainer.resume(*fns)
    _assert_same_result(straight, (model, opt, trainer))


def test_resume_refuses_another_seed_options_or_a_damaged_state(tmp_path):
    run = new_run(tmp_path / "run")
    _, _, trainer, fns = setup(run, options=TrainOptions(epochs=2))
    trainer.fit(*fns)
    model, _, trainer, fns = setup(Run.open(run.path, require_complete=False),
                                   options=TrainOptions(epochs=2), data_seed=1, seed=3)
    before = weights(model)
    with pytest.raises(pylstm.CheckpointError, match=r"state.json: seed: expected 1 \(the "
                                                     r"trainer's\), got 0"):
        trainer.resume(*fns)
    _, _, trainer, fns = setup(Run.open(run.path, require_complete=False),
                               options=TrainOptions(epochs=3))
    with pytest.raises(pylstm.CheckpointError, match=r"options: .*different \['epochs'\]: "
                                                     r"epochs=2 \(now 3\)"):
        trainer.resume(*fns)
    threads = pylstm.get_num_threads()
    pylstm.set_num_threads(threads + 1)
    try:
        with pytest.raises(pylstm.CheckpointError, match=rf"threads: expected {threads + 1} "
                                                         rf".*got {threads}"):
            setup(Run.open(run.path, require_complete=False),
                  options=TrainOptions(epochs=2))[2].resume(*fns)
    finally:
        pylstm.set_num_threads(threads)
    path = run.file("checkpoint/last.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-2] ^= 0x40
    path.write_bytes(bytes(raw))
    model, _, trainer, fns = setup(Run.open(run.path, require_complete=False),
                                   options=TrainOptions(epochs=2), seed=3)
    before = weights(model)
    with pytest.raises(pylstm.CheckpointError, match="last.safetensors: sha256 mismatch"):
        trainer.resume(*fns)
    assert same(weights(model), before)


def test_early_stopping_with_patience(tmp_path):
    scores = iter([3.0, 2.0, 2.5, 2.2, 1.0, 0.5])
    run = new_run(tmp_path / "run")
    model, _, trainer, (batches, loss, _) = setup(
        run, options=TrainOptions(epochs=6, patience=2))
    summary = trainer.fit(batches, loss, lambda: {"loss": next(scores)})
    assert (summary["epochs"], summary["stopped"], summary["best_epoch"]) == (4, "patience", 2)
    ref, _, ref_trainer, ref_fns = setup(options=TrainOptions(epochs=2))
    ref_trainer.fit(*ref_fns)
    assert same(weights(model), weights(ref))  # back to epoch 2's weights
    again = setup(Run.open(run.path, require_complete=False),
                  options=TrainOptions(epochs=6, patience=2))
    assert again[2].resume(*again[3])["steps"] == summary["steps"]  # finished: nothing to do


def test_max_steps_and_metric_mode_max(tmp_path):
    opts = TrainOptions(epochs=None, max_steps=7, metric="r2", mode="max")
    model, _, trainer, (batches, loss, _) = setup(new_run(tmp_path / "run"), options=opts)
    r2 = iter([0.1, 0.3, 0.2])
    summary = trainer.fit(batches, loss, lambda: {"r2": next(r2)})
    assert (summary["steps"], summary["epochs"], summary["stopped"]) == (7, 3, "max_steps")
    assert summary["best_epoch"] == 2 and [r["step"] for r in trainer.history] == [3, 6, 7]


class _FakeClock:
    """perf_counter for the trainer: time moves 10 s per batch drawn, nowhere else."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def _timed(clock, batches):
    def gen(epoch):
        for b in batches(epoch):
            clock.now += 10.0
            yield b
    return gen


def test_time_budget_counts_the_time_before_an_interruption(tmp_path, monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr(trainer_module, "time", clock)
    opts = TrainOptions(epochs=10, time_budget=75)  # 3 batches (30 s) an epoch
    _, _, trainer, (batches, loss, validate) = setup(options=opts, schedule=False)
    straight = trainer.fit(_timed(clock, batches), loss, validate)
    assert (straight["steps"], straight["stopped"]) == (8, "time_budget")
    assert [r["step"] for r in trainer.history] == [3, 6, 8]  # stopped after the batch

    def interrupt(epoch, total, **m):
        clock.now += 5.0  # spent after the checkpoint: lost with the epoch, still counted
        raise KeyboardInterrupt

    clock.now = 0.0
    run = new_run(tmp_path / "run")
    _, _, trainer, (batches, loss, validate) = setup(run, options=opts, schedule=False,
                                                     progress=interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(_timed(clock, batches), loss, validate)
    clock.now = 1000.0  # another process, another clock
    _, _, trainer, (batches, loss, validate) = setup(
        Run.open(run.path, require_complete=False), options=opts, schedule=False)
    resumed = trainer.resume(_timed(clock, batches), loss, validate)
    # 30 s + 5 s lost before; then 3 batches to 65 s, one more reaches 75 s: 7 steps
    assert (resumed["steps"], resumed["stopped"]) == (7, "time_budget")
    assert resumed["seconds"] == 75.0


def test_non_finite_loss_stops_and_keeps_the_best(tmp_path):
    run = new_run(tmp_path / "run")
    model, _, trainer, (batches, loss, validate) = setup(run)
    count = [0]

    def exploding(batch):
        count[0] += 1
        value = loss(batch)
        return value * float("nan") if count[0] == 8 else value

    with pytest.raises(pylstm.LstmValueError, match=r"loss: expected a finite value, got nan "
                                                    r"\(during epoch 3, after 7 steps; the "
                                                    r"checkpoint of epoch 2 and the best"):
        trainer.fit(batches, exploding, validate)
    failed = Run.open(run.path, require_complete=False)
    assert failed.status == "failed" and "finite" in failed.message
    best, _ = failed.load_tensors("checkpoint/best")
    assert same(weights(model), best) and all(np.isfinite(v).all() for v in best.values())


@pytest.mark.parametrize(
    ("kw", "error", "pattern"),
    [
        ({"epochs": 0}, pylstm.LstmValueError, "epochs: expected an integer >= 1 or None"),
        ({"epochs": 2.5}, pylstm.DTypeError, "epochs: expected an integer"),
        ({"epochs": None}, pylstm.LstmValueError, "got both None"),
        ({"clip": -1.0}, pylstm.LstmValueError, "clip: expected a finite number > 0"),
        ({"time_budget": float("inf")}, pylstm.LstmValueError, "time_budget: expected a fin"),
        ({"patience": 0}, pylstm.LstmValueError, "patience: expected an integer >= 1"),
        ({"mode": "low"}, pylstm.LstmValueError, "mode: expected 'min' or 'max', got 'low'"),
        ({"metric": "epoch"}, pylstm.LstmValueError, "metric: expected the name of a valid"),
        ({"schedule_every": "batch"}, pylstm.LstmValueError, "schedule_every: expected"),
    ],
)
def test_options_are_validated(kw, error, pattern):
    with pytest.raises(error, match=pattern):
        TrainOptions(**kw)


def test_options_round_trip_through_a_dict():
    opts = TrainOptions(epochs=3, clip=None, patience=2, metric="bleu", mode="max")
    assert TrainOptions.from_dict(opts.to_dict()) == opts
    with pytest.raises(pylstm.LstmValueError, match=r"options: unknown keys \['lr'\]"):
        TrainOptions.from_dict({"lr": 1})


def test_bad_callables_and_values_are_clear_errors():
    model, _, trainer, (batches, loss, validate) = setup(options=TrainOptions(epochs=1))
    with pytest.raises(pylstm.DTypeError, match="loss: expected loss.batch. to return a scalar "
                                                "pylstm.Tensor .*got float"):
        trainer.fit(batches, lambda b: 1.0, validate)
    with pytest.raises(pylstm.LstmValueError, match=r"metric: expected 'loss' among the "
                                                    r"epoch's values \[.*'mae'"):
        trainer.fit(batches, loss, lambda: {"mae": 1.0})
    with pytest.raises(pylstm.LstmValueError, match="validate: expected a callable returning "
                                                    "'loss'"):
        trainer.fit(batches, loss)
    with pytest.raises(pylstm.LstmValueError, match="batches: expected at least one batch for "
                                                    "epoch 0"):
        trainer.fit(lambda e: [], loss, validate)
    with pytest.raises(pylstm.DTypeError, match="validate: loss: expected a number, got str"):
        trainer.fit(batches, loss, lambda: {"loss": "low"})
    with pytest.raises(pylstm.LstmValueError, match="validate: expected metric names other "
                                                    "than"):
        trainer.fit(batches, loss, lambda: {"loss": 1.0, "lr": 2.0})
    with pytest.raises(pylstm.DTypeError, match="optimizer: expected a pylstm.nn optimizer"):
        Trainer(model, object())
    with pytest.raises(pylstm.LstmValueError, match="seed: expected an integer >= 0, got -1"):
        Trainer(model, nn.SGD(model, lr=0.1), seed=-1)


def test_plateau_schedule_steps_per_epoch_with_the_metric():
    model = Regressor(0)
    opt = nn.SGD(model, lr=0.1)
    plateau = nn.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    x, y = data(1)
    mse = nn.MSELoss()
    trainer = Trainer(model, opt, options=TrainOptions(epochs=3), scheduler=plateau)
    scores = iter([1.0, 2.0, 3.0])
    trainer.fit(lambda e: [{"x": x, "y": y}], lambda b: mse(model(b["x"]), b["y"]),
                lambda: {"loss": next(scores)})
    assert [r["lr"] for r in trainer.history] == [0.1, 0.1, 0.05]  # the rate each epoch used
    assert opt.lr == 0.025
    assert "tokens_per_s" not in trainer.history[0]


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda s: s.__setitem__("rng_states", []),
         r"state.json: rng_states: expected an object of module names to generator states, "
         r"got list \[\]"),
        (lambda s: s["optimizer"]["param_groups"][0].__setitem__("eps", "tiny"),
         r"state.json: optimizer.param_groups\[0\].eps: expected a number, got str 'tiny'"),
        (lambda s: s["optimizer"]["param_groups"][0].__setitem__("betas", "x"),
         r"state.json: optimizer.param_groups\[0\].betas: expected a list of 2, got str 'x'"),
        (lambda s: s["optimizer"]["scalar_state"]["head.weight"].__setitem__("step", "three"),
         r"state.json: optimizer.scalar_state\['head.weight'\].step: expected an integer, got "
         r"str 'three'"),
        (lambda s: s.__setitem__("epoch", -1), r"state.json: epoch: expected an integer >= 0"),
        (lambda s: s.__setitem__("stopped", "tired"), r"state.json: stopped: expected one of"),
        (lambda s: s.__setitem__("history", s["history"][:1]),
         r"state.json: history: expected a list of 2 objects"),
    ],
)
def test_a_recorded_but_invalid_state_is_refused_before_anything_changes(tmp_path, edit,
                                                                         pattern):
    """Digests catch damage on disk; a state a buggy writer recorded is still validated."""
    run = new_run(tmp_path / "run")
    _, _, trainer, fns = setup(run, options=TrainOptions(epochs=2))
    trainer.fit(*fns)
    state = run.read_json("checkpoint/state.json")
    edit(state)
    run.write_json("checkpoint/state.json", state)  # recorded with its new digest
    model, opt, trainer, fns = setup(Run.open(run.path, require_complete=False),
                                     options=TrainOptions(epochs=2), seed=4)
    before, lr = weights(model), opt.lr
    with pytest.raises(pylstm.CheckpointError, match=pattern) as info:
        trainer.resume(*fns)
    assert "\n" not in str(info.value)
    assert same(weights(model), before) and opt.lr == lr and not opt.state
