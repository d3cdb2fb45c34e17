"""Plugin manager: discovery, built-ins, broken plugins set aside, PYLSTM_PLUGINS, typed task
options, ``pylstm.load``, every hook.

Needs the example plugin and the forecasting plugin installed:
``pip install ./examples/plugin-example ./plugins/forecasting``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pluggy
import pytest

import pylstm
from pylstm import hookspecs, plugins
from pylstm.cli import main
from pylstm.hookspecs import hookimpl
from pylstm.plugins import options as O

INSTALL_HINT = (
    "install the test plugins: pip install ./examples/plugin-example ./plugins/forecasting"
)


@pytest.fixture(autouse=True)
def _clean_plugin_manager() -> Iterator[None]:
    """Every test starts from the normally loaded manager and leaves it so (llm's habit)."""
    plugins.reset_plugins()
    before = set(plugins.get_plugin_manager().get_plugins())
    yield
    pm = plugins.pm
    for plugin in set(pm.get_plugins()) - before:
        pm.unregister(plugin)
    if set(pm.get_plugins()) != before or plugins.plugin_errors():
        plugins.reset_plugins()
        plugins.get_plugin_manager()


def _register(plugin: object, name: str) -> object:
    plugins.get_plugin_manager().register(plugin, name=name)
    return plugin


def _distribution(root: Path, name: str, source: str, entry_point: str) -> Path:
    """Install distribution ``name`` (one module) into ``root`` by hand, as pip lays it out:
    the module and a ``.dist-info`` with METADATA and entry_points.txt."""
    module = name.replace("-", "_") + "_mod"
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[pylstm]\n{entry_point} = {module}\n")
    return root


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``on_path(folder)``: make a hand-made distribution visible, then reload the plugins."""

    def add(folder: Path) -> None:
        monkeypatch.syspath_prepend(str(folder))
        importlib.invalidate_caches()
        plugins.reset_plugins()

    yield add
    monkeypatch.undo()
    plugins.reset_plugins()


@dataclass
class TinyOptions:
    k: int = field(default=1, metadata={"help": "a number"})

    def __post_init__(self) -> None:
        if self.k < 0:
            raise plugins.TaskError(f"--k: expected an integer >= 0, got {self.k}")


@dataclass
class TinyRequest:
    times: int = 2


class _TinyTask:
    """A complete task registered by a test: it saves k and predicts k * times."""

    name = "tiny-test-task"
    description = "a task registered by a test"
    Options = TinyOptions
    PredictOptions = TinyRequest

    def train(self, options: TinyOptions, run: Any, ctx: Any) -> dict[str, Any]:
        run.write_json("k.json", {"k": options.k})
        return {"k": options.k}

    def load(self, run: Any) -> dict[str, int]:
        return run.read_json("k.json")

    def evaluate(self, predictor: Any, options: TinyOptions, ctx: Any) -> dict[str, Any]:
        return {"k": predictor["k"], "option_k": options.k}

    def predict(self, predictor: Any, request: TinyRequest, ctx: Any) -> Any:
        return {"k": [predictor["k"] * request.times]}

    def export_onnx(self, predictor: Any, path: Path, ctx: Any) -> Path:
        path.write_text("not onnx")
        return path


class _TinyPlugin:
    @hookimpl
    def register_tasks(self, register: Any) -> None:
        register(_TinyTask())


# ---------------------------------------------------------------------------- discovery


def test_example_plugin_discovered_through_entry_point() -> None:
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="pylstm")}
    assert "example" in eps, INSTALL_HINT
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert "pylstm-plugin-example" in listed
    info = listed["pylstm-plugin-example"]
    assert info["version"] == "0.2.0"
    assert info["hooks"] == ["register_commands", "register_tasks"]
    assert info["builtin"] is False
    assert {"ar-sine", "sine-lstm"} <= set(plugins.get_tasks())


def test_forecasting_plugin_is_an_entry_point_plugin() -> None:
    labels = {plugins.plugin_label(plugins.pm.get_name(p)): p
              for p in plugins.get_plugin_manager().get_plugins()}
    assert "pylstm-forecasting" in labels, INSTALL_HINT
    assert labels["pylstm-forecasting"].__name__ == "pylstm_forecasting.plugin"
    assert "forecasting" in plugins.get_tasks()
    assert plugins.plugin_errors() == {}


def test_default_plugins_registered_like_third_party() -> None:
    pm = plugins.get_plugin_manager()
    assert plugins.DEFAULT_PLUGINS == ("pylstm.backends.rust_backend",
                                       "pylstm.backends.onnxruntime_backend")
    for name in plugins.DEFAULT_PLUGINS:
        module = sys.modules[name]
        assert pm.get_plugin(name) is module  # the module, under its name, like an entry point
        assert pm.get_name(module) == name
        assert [h.name for h in pm.get_hookcallers(module)] == ["register_backends"]
    everything = {p["name"]: p for p in plugins.list_plugins(all=True)}
    third_party = {p["name"] for p in plugins.list_plugins(all=False)}
    for name in plugins.DEFAULT_PLUGINS:
        assert everything[name]["builtin"] is True
        assert everything[name]["hooks"] == ["register_backends"]
        assert name not in third_party
    assert "pylstm-plugin-example" in third_party


def test_plugin_manager_is_built_once() -> None:
    pm = plugins.get_plugin_manager()
    n = len(pm.get_plugins())
    assert plugins.get_plugin_manager() is pm
    assert plugins.load_plugins() is pm
    assert len(pm.get_plugins()) == n


def test_plugins_command_lists_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    listed = json.loads(capsys.readouterr().out)
    names = [p["name"] for p in listed]
    assert "pylstm-plugin-example" in names and "pylstm-forecasting" in names
    assert not any(p["builtin"] for p in listed)
    assert main(["plugins", "--all", "--check"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {p["name"] for p in listed} >= set(plugins.DEFAULT_PLUGINS)


def test_error_classes_are_pylstm_errors() -> None:
    assert issubclass(plugins.TaskError, pylstm.PylstmError)
    assert issubclass(plugins.TaskError, ValueError)
    assert issubclass(plugins.PluginError, pylstm.PylstmError)
    assert issubclass(plugins.PluginError, RuntimeError)


# ---------------------------------------------------------------------------- broken plugins


class _Misspelled:
    __name__ = "misspelled"

    @hookimpl
    def register_task(self, register: Any) -> None:  # the spec is register_tasks
        register(_TinyTask())


def test_check_pending_catches_misspelled_hook() -> None:
    _register(_Misspelled(), "misspelled")
    with pytest.raises(pluggy.PluginValidationError, match="register_task"):
        plugins.get_plugin_manager().check_pending()


def test_misspelled_hook_sets_the_plugin_aside(capsys: pytest.CaptureFixture[str]) -> None:
    plugins.reset_plugins()
    plugins.pm.register(_Misspelled(), name="misspelled")  # present when loading starts
    plugins.load_plugins()
    assert plugins.pm.get_plugin("misspelled") is None
    assert "register_task," in plugins.plugin_errors()["misspelled"] + ","
    assert "register_tasks" in plugins.plugin_errors()["misspelled"]  # the hooks that exist
    assert {"ar-sine", "forecasting"} <= set(plugins.get_tasks())  # the others load
    # the CLI: every command warns in one line and goes on; --check fails in one line
    assert main(["hello", "--name", "x"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "hello, x!\n"
    assert captured.err.count("\n") == 1 and "warning: plugin 'misspelled'" in captured.err
    assert main(["plugins", "--check"]) == 1
    captured = capsys.readouterr()
    assert {"name": "misspelled", "error": plugins.plugin_errors()["misspelled"]} in \
        json.loads(captured.out)
    assert captured.err.count("\n") == 1 and "register_task" in captured.err
    assert "Traceback" not in captured.err


def test_wrong_hook_arguments_rejected_at_registration() -> None:
    class WrongArgs:
        @hookimpl
        def register_tasks(self, register: Any, extra: Any) -> None:
            pass

    with pytest.raises(pluggy.PluginValidationError, match="extra"):
        plugins.get_plugin_manager().register(WrongArgs(), name="wrong-args")


def test_plugin_raising_on_import_is_set_aside(tmp_path: Path, on_path: Any) -> None:
    on_path(_distribution(tmp_path, "broken-on-import", "raise ImportError('no such lib')\n",
                          "broken"))
    errors = plugins.plugin_errors()
    assert "broken-on-import" in errors
    assert "ImportError: no such lib" in errors["broken-on-import"]
    assert {"ar-sine", "forecasting"} <= set(plugins.get_tasks())
    with pytest.raises(plugins.PluginError, match="broken-on-import"):
        plugins.check_plugins()
    with pytest.raises(plugins.TaskError, match="no plugin provides task 'nope'.*"
                                                "broken-on-import.*no such lib"):
        plugins.get_task("nope")


def test_plugin_hook_raising_is_set_aside(tmp_path: Path, on_path: Any) -> None:
    source = """
        from pylstm.hookspecs import hookimpl

        @hookimpl
        def register_tasks(register):
            raise RuntimeError("cannot register today")
    """
    on_path(_distribution(tmp_path, "raising-hook", source, "raising"))
    assert {"ar-sine", "forecasting"} <= set(plugins.get_tasks())
    assert "cannot register today" in plugins.plugin_errors()["raising-hook"]


# ---------------------------------------------------------------------------- PYLSTM_PLUGINS


def _tasks_with_env(monkeypatch: pytest.MonkeyPatch, value: str | None) -> set[str]:
    if value is None:
        monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(plugins.ENV_VAR, value)
    plugins.reset_plugins()
    return set(plugins.get_tasks())


def test_pylstm_plugins_unset_loads_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _tasks_with_env(monkeypatch, None) >= {"forecasting", "ar-sine", "sine-lstm"}


def test_pylstm_plugins_empty_loads_only_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _tasks_with_env(monkeypatch, "") == set()
    names = {plugins.pm.get_name(p) for p in plugins.pm.get_plugins()}
    assert names == set(plugins.DEFAULT_PLUGINS)


def test_pylstm_plugins_restricts_by_entry_point_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _tasks_with_env(monkeypatch, "example") == {"ar-sine", "sine-lstm"}


def test_pylstm_plugins_restricts_by_distribution_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _tasks_with_env(monkeypatch, " Pylstm_Forecasting ") == {"forecasting"}
    assert _tasks_with_env(monkeypatch, "pylstm-forecasting,example") == {
        "forecasting", "ar-sine", "sine-lstm"}


def test_pylstm_plugins_unknown_name_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _tasks_with_env(monkeypatch, "no-such-plugin,example") == {"ar-sine", "sine-lstm"}
    assert "no-such-plugin" in capsys.readouterr().err


def test_pylstm_plugins_in_a_fresh_process() -> None:
    env = {**os.environ, plugins.ENV_VAR: ""}
    code = "from pylstm.plugins import get_tasks; print(sorted(get_tasks()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------- typed options


@dataclass
class _AllKinds:
    count: int = field(default=3, metadata={"help": "how many", "group": "g"})
    rate: float = 0.5
    name: str = "x"
    path: Path | None = None
    flag: bool = True
    mode: Literal["fast", "slow"] = "fast"
    level: str = field(default="a", metadata={"choices": ("a", "b")})
    ratios: list[float] = field(default_factory=lambda: [0.1, 0.9])
    tags: list[str] = field(default_factory=list)
    limit: int | None = None


def test_option_specs_describe_every_kind() -> None:
    specs = {s.name: s for s in O.option_specs(_AllKinds)}
    assert [s.name for s in O.option_specs(_AllKinds)] == [f.name for f in
                                                           dataclasses.fields(_AllKinds)]
    assert (specs["count"].kind, specs["count"].help, specs["count"].group) == ("int", "how many",
                                                                                  "g")
    assert specs["path"].kind == "path" and specs["path"].optional
    assert specs["mode"].choices == ("fast", "slow") and specs["mode"].kind == "str"
    assert specs["level"].choices == ("a", "b")
    assert (specs["ratios"].kind, specs["ratios"].element) == ("list", "float")
    assert specs["ratios"].default == [0.1, 0.9] and specs["tags"].default == []
    assert specs["limit"].flag == "--limit" and specs["limit"].optional


def test_option_text_parsing() -> None:
    specs = {s.name: s for s in O.option_specs(_AllKinds)}
    assert O.parse_option_text(specs["ratios"], "0.2, 0.5,") == [0.2, 0.5]
    assert O.parse_option_text(specs["tags"], "") == []
    assert O.parse_option_text(specs["limit"], "none") is None
    assert O.parse_option_text(specs["path"], "a/b") == Path("a/b")
    with pytest.raises(ValueError, match="expected an integer, got '1.5'"):
        O.parse_option_text(specs["count"], "1.5")
    with pytest.raises(ValueError, match="expected one of 'fast', 'slow', got 'medium'"):
        O.parse_option_text(specs["mode"], "medium")
    with pytest.raises(ValueError, match="expected a list of numbers, got 'a,b'"):
        O.parse_option_text(specs["ratios"], "a,b")


def test_options_json_round_trip_and_validation() -> None:
    opts = _AllKinds(path=Path("data.csv"), tags=["t"], limit=4)
    data = O.options_to_dict(opts)
    assert data["path"] == "data.csv" and json.loads(json.dumps(data)) == data
    assert O.options_from_dict(_AllKinds, data) == opts
    assert O.options_from_dict(_AllKinds, {}) == _AllKinds()  # missing keys: defaults
    assert O.options_from_dict(_AllKinds, {"rate": 1}).rate == 1.0  # an int is a number
    bad = [
        ({"count": "3"}, "count: expected an integer, got str '3'"),
        ({"count": True}, "count: expected an integer, got bool True"),
        ({"count": 2.0}, "count: expected an integer, got float 2.0"),
        ({"rate": float("nan")}, "rate: expected a number, got float nan"),
        ({"flag": 1}, "flag: expected true or false, got int 1"),
        ({"mode": "medium"}, "mode: expected one of 'fast', 'slow', got str 'medium'"),
        ({"ratios": "0.5"}, "ratios: expected a list of numbers, got str '0.5'"),
        ({"ratios": [0.5, "x"]}, "ratios: expected a list of numbers"),
        ({"path": 3}, "path: expected a path \\(string\\) or null, got int 3"),
        ({"name": None}, "name: expected a string, got NoneType None"),
        ({"colour": "red"}, "unknown option\\(s\\) 'colour'"),
    ]
    for data, message in bad:
        with pytest.raises(pylstm.CheckpointError, match=f"run.json: {message}"):
            O.options_from_dict(_AllKinds, data, source="run.json")
    with pytest.raises(pylstm.CheckpointError, match="run.json: expected an object"):
        O.options_from_dict(_AllKinds, [1], source="run.json")


def test_unsupported_option_types_are_refused() -> None:
    @dataclass
    class NoDefault:
        n: int

    @dataclass
    class Weird:
        d: dict = field(default_factory=dict)

    with pytest.raises(TypeError, match="NoDefault.n: every option needs a default"):
        O.option_specs(NoDefault)
    with pytest.raises(TypeError, match="Weird.d: unsupported option type"):
        O.option_specs(Weird)
    with pytest.raises(TypeError, match="expected a dataclass"):
        O.option_specs(int)


def test_cli_flags_from_the_options_dataclass(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[Any] = []

    class KindsTask(_TinyTask):
        name = "kinds-task"
        Options = _AllKinds

        def train(self, options: Any, run: Any, ctx: Any) -> dict[str, Any]:
            seen.append(options)
            run.write_json("k.json", {"k": 1})
            return {}

    class Plugin:
        @hookimpl
        def register_tasks(self, register: Any) -> None:
            register(KindsTask())

    _register(Plugin(), "kinds")
    argv = ["-q", "--out", str(tmp_path / "r"), "train", "kinds-task", "--count", "7",
            "--no-flag", "--mode", "slow", "--ratios", "0.3,0.7", "--tags", "a,b",
            "--path", "x.csv", "--limit", "none"]
    assert main(argv) == 0, capsys.readouterr().err
    assert seen[0] == _AllKinds(count=7, flag=False, mode="slow", ratios=[0.3, 0.7],
                                tags=["a", "b"], path=Path("x.csv"))
    saved = json.loads((tmp_path / "r" / "run.json").read_text())["options"]
    assert saved == O.options_to_dict(seen[0])
    rc = main(["train", "kinds-task", "--mode", "medium"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--mode" in err and "'fast', 'slow'" in err


# ---------------------------------------------------------------------------- pylstm.load


def test_import_pylstm_never_loads_plugins() -> None:
    code = ("import sys, pylstm\n"
            "assert 'pylstm.plugins' not in sys.modules\n"
            "assert 'pylstm_plugin_example' not in sys.modules\n"
            "assert callable(pylstm.load) and 'pylstm.plugins' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_returns_the_tasks_predictor(tmp_path: Path) -> None:
    _register(_TinyPlugin(), "tiny-tasks")
    assert main(["-q", "--out", str(tmp_path / "run"), "train", "tiny-test-task", "--k", "4"]) == 0
    assert pylstm.load(tmp_path / "run") == {"k": 4}
    assert plugins.load(str(tmp_path / "run")) == {"k": 4}


def test_load_refuses_incomplete_runs_and_missing_tasks(tmp_path: Path) -> None:
    from pylstm.runs import Run

    run = Run.create(tmp_path / "half", task="tiny-test-task", options={}, seed=0)
    run.interrupt("stopped by a test")
    with pytest.raises(pylstm.CheckpointError, match="incomplete.*--resume"):
        pylstm.load(tmp_path / "half")
    run = Run.create(tmp_path / "gone", task="vanished-task", options={}, seed=0)
    run.finish({})
    with pytest.raises(plugins.TaskError, match="no plugin provides task 'vanished-task'"):
        pylstm.load(tmp_path / "gone")
    with pytest.raises(pylstm.CheckpointError, match="no run.json"):
        pylstm.load(tmp_path / "nothing")


# ---------------------------------------------------------------------------- every hook


def test_hook_register_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _register(_TinyPlugin(), "tiny-tasks")
    tasks = plugins.get_tasks()
    assert isinstance(tasks["tiny-test-task"], _TinyTask)
    assert isinstance(tasks["tiny-test-task"], plugins.Task)  # runtime-checkable protocol
    run = tmp_path / "run"
    assert main(["-q", "--out", str(run), "train", "tiny-test-task", "--k", "7"]) == 0
    assert json.loads((run / "metrics.json").read_text()) == {"k": 7}
    assert json.loads((run / "run.json").read_text())["options"] == {"k": 7}
    capsys.readouterr()
    assert main(["-q", "evaluate", str(run)]) == 0
    assert json.loads(capsys.readouterr().out) == {"k": 7, "option_k": 7}  # the saved option
    assert main(["-q", "evaluate", str(run), "--k", "2"]) == 0  # overridden
    assert json.loads(capsys.readouterr().out) == {"k": 7, "option_k": 2}
    assert main(["predict", str(run), "--times", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"k": [21]}
    assert main(["export", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "model.onnx")


def test_register_tasks_sets_aside_duplicates_and_bad_objects() -> None:
    class Dup:
        @hookimpl
        def register_tasks(self, register: Any) -> None:
            register(_TinyTask())
            register(_TinyTask())

    _register(Dup(), "dup")
    assert isinstance(plugins.get_tasks()["tiny-test-task"], _TinyTask)  # the first one
    assert "'tiny-test-task' is already registered by 'dup'" in plugins.plugin_errors()["dup"]
    plugins.pm.unregister(name="dup")

    class NoMethods:
        name = "hollow"

    class Reserved(_TinyTask):
        name = "reserved"

        @dataclass
        class Options:
            seed: int = 1  # the CLI's own --seed

    class Bad:
        @hookimpl
        def register_tasks(self, register: Any) -> None:
            register(NoMethods())

    class Worse:
        @hookimpl
        def register_tasks(self, register: Any) -> None:
            register(Reserved())

    _register(Bad(), "bad")
    _register(Worse(), "worse")
    tasks = plugins.get_tasks()
    assert "hollow" not in tasks and "reserved" not in tasks and "ar-sine" in tasks
    errors = plugins.plugin_errors()
    assert "'hollow' lacks description, train, load" in errors["bad"]
    assert "Options (a dataclass)" in errors["bad"]
    assert "Options field(s) seed clash" in errors["worse"]


def test_hook_register_commands(capsys: pytest.CaptureFixture[str]) -> None:
    class Plugin:
        @hookimpl
        def register_commands(self, cli: Any) -> None:
            p = cli.add_parser("shout", help="test command")
            p.add_argument("word")
            p.set_defaults(func=lambda args: print(args.word.upper()) or 3)

    _register(Plugin(), "shout")
    assert main(["shout", "hey"]) == 3
    assert capsys.readouterr().out == "HEY\n"
    assert main(["hello", "--name", "tests"]) == 0  # the example plugin's command
    assert capsys.readouterr().out == "hello, tests!\n"


def test_register_commands_task_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    class Plugin:
        @hookimpl
        def register_commands(self, cli: Any) -> None:
            def fail(args: Any) -> None:
                raise plugins.TaskError("nothing to do\nsecond line")

            cli.add_parser("fail").set_defaults(func=fail)

    _register(Plugin(), "fail")
    assert main(["fail"]) == 1
    assert capsys.readouterr().err == "pylstm: error: nothing to do\n"


def test_hook_register_backends() -> None:
    class FakeBackend:
        name = "fake-test-backend"

        def available(self) -> bool:
            return True

        def devices(self) -> list[str]:
            return ["nowhere"]

        def lstm(self, **kwargs: Any) -> Any:
            raise NotImplementedError

        def run_module(self, module: Any, x: Any, hx: Any, lengths: Any) -> Any:
            raise NotImplementedError

    class Plugin:
        @hookimpl
        def register_backends(self, register: Any) -> None:
            register(FakeBackend())

    _register(Plugin(), "fake-backend")
    rows = {r.name: r for r in pylstm.list_backends()}
    assert rows["fake-test-backend"].plugin == "fake-backend"
    assert rows["fake-test-backend"].devices == ["nowhere"]
    assert {"rust", "onnxruntime"} <= set(rows)  # the built-ins, through the same hook
    assert isinstance(pylstm.get_backend("fake-test-backend"), FakeBackend)


# ---------------------------------------------------------------------------- meta


def test_every_hookspec_has_a_test() -> None:
    """datasette's meta-test: each hook in hookspecs.py has a test_hook_<name> here."""
    specs = [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "pylstm_spec")
    ]
    assert sorted(specs) == ["register_backends", "register_commands", "register_tasks"]
    tests = {name for name in globals() if name.startswith("test_hook_")}
    missing = [s for s in specs if f"test_hook_{s}" not in tests]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"
