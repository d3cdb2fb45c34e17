"""Plugin manager: discovery, built-ins, check_pending, PYLSTM_PLUGINS, every hook.

Needs the example plugin and the forecasting plugin installed:
``pip install -e examples/plugin-example -e plugins/forecasting``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest

from pylstm import hookspecs, plugins
from pylstm.cli import main
from pylstm.hookspecs import hookimpl

INSTALL_HINT = (
    "install the test plugins: pip install -e examples/plugin-example -e plugins/forecasting"
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
    if set(pm.get_plugins()) != before:  # a test reset or restricted loading: reload
        plugins.reset_plugins()
        plugins.get_plugin_manager()


def _register(plugin: object, name: str) -> object:
    plugins.get_plugin_manager().register(plugin, name=name)
    return plugin


class _TinyTask:
    name = "tiny-test-task"
    description = "a task registered by a test"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--k", type=int, default=1)

    def train(self, args: Any, ctx: Any) -> dict[str, Any]:
        return {"k": args.k}

    def evaluate(self, args: Any, ctx: Any) -> dict[str, Any]:
        return {"k": args.k}

    def predict(self, args: Any, ctx: Any) -> Any:
        return {"k": [args.k]}

    def export_onnx(self, args: Any, ctx: Any, path: Path) -> Path:
        return path


# ---------------------------------------------------------------------------- discovery


def test_example_plugin_discovered_through_entry_point() -> None:
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="pylstm")}
    assert "example" in eps, INSTALL_HINT
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert "pylstm-plugin-example" in listed
    info = listed["pylstm-plugin-example"]
    assert info["version"] == "0.1.0"
    assert info["hooks"] == ["register_commands", "register_tasks"]
    assert info["builtin"] is False
    assert "ar-sine" in plugins.get_tasks()


def test_forecasting_plugin_is_an_entry_point_plugin() -> None:
    dists = {
        dist.metadata["name"]: plugin
        for plugin, dist in plugins.get_plugin_manager().list_plugin_distinfo()
    }
    assert "pylstm-forecasting" in dists, INSTALL_HINT
    assert dists["pylstm-forecasting"].__name__ == "pylstm_forecasting.plugin"
    assert "forecasting" in plugins.get_tasks()


def test_default_plugins_registered_like_third_party() -> None:
    pm = plugins.get_plugin_manager()
    assert plugins.DEFAULT_PLUGINS == (
        "pylstm.backends.rust_backend",
        "pylstm.backends.onnxruntime_backend",
    )
    for name in plugins.DEFAULT_PLUGINS:
        module = sys.modules[name]
        # registered as the module object under its module name, like an entry point
        assert pm.get_plugin(name) is module
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
    import json

    assert main(["plugins"]) == 0
    listed = json.loads(capsys.readouterr().out)
    names = [p["name"] for p in listed]
    assert "pylstm-plugin-example" in names and "pylstm-forecasting" in names
    assert not any(p["builtin"] for p in listed)
    assert main(["plugins", "--all"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {p["name"] for p in listed} >= set(plugins.DEFAULT_PLUGINS)


# ---------------------------------------------------------------------------- check_pending


class _Misspelled:
    __name__ = "misspelled"

    @hookimpl
    def register_task(self, register: Any) -> None:  # the spec is register_tasks
        register(_TinyTask())


def test_check_pending_catches_misspelled_hook() -> None:
    _register(_Misspelled(), "misspelled")
    with pytest.raises(pluggy.PluginValidationError, match="register_task"):
        plugins.get_plugin_manager().check_pending()


def test_load_plugins_runs_check_pending(capsys: pytest.CaptureFixture[str]) -> None:
    plugins.reset_plugins()
    plugins.pm.register(_Misspelled(), name="misspelled")  # present when loading starts
    with pytest.raises(pluggy.PluginValidationError, match="register_task"):
        plugins.load_plugins()
    # the CLI turns it into one line
    assert main(["plugins"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "register_task" in err and "Traceback" not in err


def test_wrong_hook_arguments_rejected_at_registration() -> None:
    class WrongArgs:
        @hookimpl
        def register_tasks(self, register: Any, extra: Any) -> None:
            pass

    with pytest.raises(pluggy.PluginValidationError, match="extra"):
        plugins.get_plugin_manager().register(WrongArgs(), name="wrong-args")


# ---------------------------------------------------------------------------- PYLSTM_PLUGINS


def _tasks_with_env(monkeypatch: pytest.MonkeyPatch, value: str | None) -> set[str]:
    if value is None:
        monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(plugins.ENV_VAR, value)
    plugins.reset_plugins()
    return set(plugins.get_tasks())


def test_pylstm_plugins_unset_loads_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _tasks_with_env(monkeypatch, None) >= {"forecasting", "ar-sine"}


def test_pylstm_plugins_empty_loads_only_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _tasks_with_env(monkeypatch, "") == set()
    names = {plugins.pm.get_name(p) for p in plugins.pm.get_plugins()}
    assert names == set(plugins.DEFAULT_PLUGINS)


def test_pylstm_plugins_restricts_by_entry_point_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _tasks_with_env(monkeypatch, "example") == {"ar-sine"}


def test_pylstm_plugins_restricts_by_distribution_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _tasks_with_env(monkeypatch, " Pylstm_Forecasting ") == {"forecasting"}
    assert _tasks_with_env(monkeypatch, "pylstm-forecasting,example") == {"forecasting",
                                                                          "ar-sine"}


def test_pylstm_plugins_unknown_name_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _tasks_with_env(monkeypatch, "no-such-plugin,example") == {"ar-sine"}
    assert "no-such-plugin" in capsys.readouterr().err


def test_pylstm_plugins_in_a_fresh_process() -> None:
    import os
    import subprocess

    env = {**os.environ, plugins.ENV_VAR: ""}
    code = "from pylstm.plugins import get_tasks; print(sorted(get_tasks()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------- every hook


def test_hook_register_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class Plugin:
        @hookimpl
        def register_tasks(self, register: Any) -> None:
            register(_TinyTask())

    _register(Plugin(), "tiny-tasks")
    tasks = plugins.get_tasks()
    assert isinstance(tasks["tiny-test-task"], _TinyTask)
    assert isinstance(tasks["tiny-test-task"], plugins.Task)  # runtime-checkable protocol
    assert main(["-q", "--out", str(tmp_path / "run"), "train", "tiny-test-task", "--k", "7"]) == 0
    assert (tmp_path / "run" / "metrics.json").read_text().strip().endswith("}")
    assert main(["-q", "evaluate", str(tmp_path / "run")]) == 0
    assert '"k": 7' in capsys.readouterr().out  # the saved option is the default


def test_register_tasks_rejects_duplicates_and_bad_objects() -> None:
    class Dup:
        @hookimpl
        def register_tasks(self, register: Any) -> None:
            register(_TinyTask())
            register(_TinyTask())

    _register(Dup(), "dup")
    with pytest.raises(plugins.PluginError, match="tiny-test-task"):
        plugins.get_tasks()
    plugins.pm.unregister(name="dup")

    class NoMethods:
        name = "hollow"

    class Bad:
        @hookimpl
        def register_tasks(self, register: Any) -> None:
            register(NoMethods())

    _register(Bad(), "bad")
    with pytest.raises(plugins.PluginError, match="hollow.*add_arguments"):
        plugins.get_tasks()


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
    # the example plugin's command
    assert main(["hello", "--name", "tests"]) == 0
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
    found = plugins.get_backends()
    assert isinstance(found["fake-test-backend"], FakeBackend)
    assert {"rust", "onnxruntime"} <= set(found)  # the built-ins, through the same hook
    backends = importlib.import_module("pylstm.backends")
    assert backends.get_backend("fake-test-backend").name == "fake-test-backend"


def test_register_backends_rejects_duplicates() -> None:
    class Plugin:
        @hookimpl
        def register_backends(self, register: Any) -> None:
            class Rust:
                name = "rust"

            register(Rust())

    _register(Plugin(), "second-rust")
    with pytest.raises(plugins.PluginError, match="rust"):
        plugins.get_backends()


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
