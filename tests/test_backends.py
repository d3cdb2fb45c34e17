"""Backends chosen at run time: registry, selection, onnxruntime backend parity and fallback."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import pylstm
from pylstm.backends import onnxruntime_backend as ortb
from pylstm.hookspecs import hookimpl

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

CPU = ["CPUExecutionProvider"]
import pylstm.backends as B  # noqa: E402  (the subpackage: the listing is pylstm.list_backends)


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv(B.ENV_VAR, raising=False)
    B.set_backend(None)
    ortb._reset_for_tests()
    yield
    B.set_backend(None)
    ortb._reset_for_tests()


# ----------------------------------------------------------------------------- numpy reference

def _act(name, alpha, beta):
    n = name.lower()
    table = {
        "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
        "tanh": np.tanh,
        "relu": lambda x: np.maximum(x, 0),
        "affine": lambda x: alpha * x + beta,
        "leakyrelu": lambda x: np.where(x >= 0, x, alpha * x),
        "thresholdedrelu": lambda x: np.where(x > alpha, x, 0),
        "scaledtanh": lambda x: alpha * np.tanh(beta * x),
        "hardsigmoid": lambda x: np.clip(alpha * x + beta, 0, 1),
        "elu": lambda x: np.where(x >= 0, x, alpha * (np.exp(x) - 1)),
        "softsign": lambda x: x / (1 + np.abs(x)),
        "softplus": lambda x: np.logaddexp(0, x),
    }
    return table[n]


_TAKES = {"affine": "ab", "leakyrelu": "a", "thresholdedrelu": "a", "scaledtanh": "ab",
          "hardsigmoid": "ab", "elu": "a"}


def lstm_reference(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None,
                   *, hidden_size=None, direction="forward", activations=None,
                   activation_alpha=None, activation_beta=None, clip=None, input_forget=0,
                   layout=0):
    """ONNX LSTM in float64 numpy, one step at a time (alpha/beta consumed in order by the
    activations that take them, clip on each gate input after bias and peephole)."""
    X = np.asarray(X, np.float64)
    if layout:
        X = X.transpose(1, 0, 2)
        initial_h = None if initial_h is None else np.asarray(initial_h).transpose(1, 0, 2)
        initial_c = None if initial_c is None else np.asarray(initial_c).transpose(1, 0, 2)
    T, Bsz, _ = X.shape
    D = 2 if direction == "bidirectional" else 1
    H = R.shape[-1]
    acts = list(activations or ["Sigmoid", "Tanh", "Tanh"] * D)
    al, be = list(activation_alpha or []), list(activation_beta or [])
    fns, ia, ib = [], 0, 0
    for a in acts:
        t = _TAKES.get(a.lower(), "")
        av = bv = None
        if "a" in t:
            av, ia = al[ia], ia + 1
        if "b" in t:
            bv, ib = be[ib], ib + 1
        fns.append(_act(a, av, bv))
    lens = np.full(Bsz, T) if sequence_lens is None else np.asarray(sequence_lens)
    Y = np.zeros((T, D, Bsz, H))
    Yh = np.zeros((D, Bsz, H))
    Yc = np.zeros((D, Bsz, H))
    for d in range(D):
        rev = direction == "reverse" or d == 1
        f, g, h = fns[3 * d: 3 * d + 3]
        Wd, Rd = np.asarray(W[d], np.float64), np.asarray(R[d], np.float64)
        bd = np.zeros(8 * H) if B is None else np.asarray(B[d], np.float64)
        pd = np.zeros(3 * H) if P is None else np.asarray(P[d], np.float64)
        for b in range(Bsz):
            hs = np.zeros(H) if initial_h is None else np.asarray(initial_h[d, b], np.float64)
            cs = np.zeros(H) if initial_c is None else np.asarray(initial_c[d, b], np.float64)
            n = int(lens[b])
            for t in (range(n - 1, -1, -1) if rev else range(n)):
                z = Wd @ X[t, b] + Rd @ hs + bd[: 4 * H] + bd[4 * H:]
                zi, zo, zf, zc = np.split(z, 4)
                zi = zi + pd[:H] * cs
                zf = zf + pd[2 * H:] * cs
                if clip is not None:
                    zi, zf, zc = (np.clip(v, -clip, clip) for v in (zi, zf, zc))
                i = f(zi)
                ff = 1 - i if input_forget else f(zf)
                cs = ff * cs + i * g(zc)
                zo = zo + pd[H: 2 * H] * cs
                if clip is not None:
                    zo = np.clip(zo, -clip, clip)
                hs = f(zo) * h(cs)
                Y[t, d, b] = hs
            Yh[d, b], Yc[d, b] = hs, cs
    if layout:
        return Y.transpose(2, 0, 1, 3), Yh.transpose(1, 0, 2), Yc.transpose(1, 0, 2)
    return Y, Yh, Yc


# ThresholdedRelu is left out of random draws: it is discontinuous, so float32 rounding can
# flip a value across the threshold; it has its own deterministic test below.
_ACTS = ["Sigmoid", "Tanh", "Relu", "Affine", "LeakyRelu", "ScaledTanh", "HardSigmoid", "Elu",
         "Softsign", "Softplus"]


def random_lstm_args(rng, all_attributes=True):
    T, Bsz, n_in, H = (int(v) for v in (rng.integers(1, 6), rng.integers(1, 4), rng.integers(1, 5),
                                       rng.integers(1, 5)))
    direction = str(rng.choice(["forward", "reverse", "bidirectional"]))
    D = 2 if direction == "bidirectional" else 1

    def f32(*s):
        return (rng.standard_normal(s) * 0.7).astype(np.float32)

    args = dict(X=f32(T, Bsz, n_in), W=f32(D, 4 * H, n_in), R=f32(D, 4 * H, H), hidden_size=H,
                direction=direction)
    if rng.random() < 0.7:
        args["B"] = f32(D, 8 * H)
    if rng.random() < 0.5:
        args["sequence_lens"] = rng.integers(1, T + 1, size=Bsz).astype(np.int32)
    if rng.random() < 0.5:
        args["initial_h"] = f32(D, Bsz, H)
        args["initial_c"] = f32(D, Bsz, H)
    if all_attributes:
        if rng.random() < 0.4:
            args["P"] = f32(D, 3 * H)
        if rng.random() < 0.4:
            acts = [str(a) for a in rng.choice(_ACTS, size=3 * D)]
            n_alpha = sum("a" in _TAKES.get(a.lower(), "") for a in acts)
            n_beta = sum("b" in _TAKES.get(a.lower(), "") for a in acts)
            args["activations"] = acts
            # one value per activation that takes it (more is an error)
            args["activation_alpha"] = [float(v) for v in rng.uniform(0.1, 1.0, size=n_alpha)]
            args["activation_beta"] = [float(v) for v in rng.uniform(0.1, 1.0, size=n_beta)]
        if rng.random() < 0.3:
            args["clip"] = float(rng.uniform(0.5, 3))
        if rng.random() < 0.3:
            args["input_forget"] = 1
    return args


def to_layout1(args):
    args = dict(args)
    args["X"] = np.ascontiguousarray(args["X"].transpose(1, 0, 2))
    for k in ("initial_h", "initial_c"):
        if k in args:
            args[k] = np.ascontiguousarray(args[k].transpose(1, 0, 2))
    args["layout"] = 1
    return args


def maxdiff(a, b):
    """Largest ``|x - y| / (1 + |y|)`` over the pairs (relative for large values)."""
    out = 0.0
    for x, y in zip(a, b, strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        assert x.shape == y.shape, (x.shape, y.shape)
        if x.size:
            out = max(out, float((np.abs(x - y) / (1 + np.abs(y))).max()))
    return out


# ----------------------------------------------------------------------------- registry

def test_importing_pylstm_does_not_import_onnxruntime():
    code = (
        "import sys, pylstm, pylstm.backends, pylstm.interop\n"
        "from pylstm.backends import get_backend, list_backends\n"
        "assert get_backend().name == 'rust'\n"
        "assert get_backend('onnxruntime').available()\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported'\n"
        "assert 'onnx' not in sys.modules, 'onnx imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_backends_lists_builtins_with_providers():
    infos = {b.name: b for b in B.list_backends()}
    assert {"rust", "onnxruntime"} <= set(infos)
    o = infos["onnxruntime"]
    assert o.available
    assert o.devices[-1] == "CPUExecutionProvider"
    assert set(o.devices) <= set(ort.get_available_providers())
    assert str(o) == "onnxruntime: " + ", ".join(o.devices)
    assert o.plugin == "pylstm.backends.onnxruntime_backend"
    assert infos["rust"].plugin == "pylstm.backends.rust_backend"
    assert infos["rust"].available and infos["rust"].devices[0].startswith("cpu")


def test_selection_by_each_of_the_four_means(monkeypatch):
    assert B.get_backend().name == "rust"  # 5. default
    assert B.current_selection()[2] == "default"
    monkeypatch.setenv(B.ENV_VAR, "onnxruntime")  # 4. environment
    assert B.get_backend().name == "onnxruntime"
    assert B.current_selection()[2] == "env"
    B.set_backend("rust")  # 3. set_backend beats the environment
    assert B.get_backend().name == "rust"
    B.set_backend("onnxruntime", providers=CPU)
    assert B.get_backend().providers == tuple(CPU)
    with B.use_backend("rust") as used:  # 2. context beats set_backend
        assert used.name == "rust"
        assert B.get_backend().name == "rust"
        assert B.get_backend("onnxruntime").name == "onnxruntime"  # 1. explicit beats all
        with B.use_backend("onnxruntime:cpu"):
            assert B.get_backend().providers == ("CPUExecutionProvider",)
        assert B.get_backend().name == "rust"
    assert B.get_backend().name == "onnxruntime"
    B.set_backend(None)
    monkeypatch.setenv(B.ENV_VAR, "onnxruntime:cpu")
    assert B.get_backend().providers == ("CPUExecutionProvider",)


def test_use_backend_is_per_thread():
    seen = {}

    def other():
        seen["name"] = B.get_backend().name

    with B.use_backend("onnxruntime"):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert B.get_backend().name == "onnxruntime"
    assert seen["name"] == "rust"


def test_unknown_backend_is_a_backend_error(monkeypatch):
    with pytest.raises(pylstm.BackendError, match="unknown backend 'nope'.*onnxruntime"):
        B.get_backend("nope")
    with pytest.raises(pylstm.BackendError):
        B.set_backend("nope")
    monkeypatch.setenv(B.ENV_VAR, "nope")
    with pytest.raises(pylstm.BackendError, match="nope"):
        B.get_backend()
    monkeypatch.delenv(B.ENV_VAR)
    with pytest.raises(pylstm.BackendError, match="takes no execution providers"):
        B.get_backend("rust", providers=["CUDAExecutionProvider"])
    with pytest.raises(pylstm.BackendError, match="expected a backend name, got ''"):
        B.get_backend("")
    with pytest.raises(pylstm.BackendError, match="backend: expected a backend name or an "
                       "object.*int 5"):
        B.get_backend(5)
    with pytest.raises(pylstm.BackendError, match="providers: expected a list"):
        B.get_backend("onnxruntime", providers=[1, 2])
    assert issubclass(pylstm.BackendError, pylstm.PylstmError)


def test_pylstm_backends_is_the_subpackage():
    import pylstm.backends as backends_module

    assert backends_module is sys.modules["pylstm.backends"] is pylstm.backends
    assert pylstm.list_backends is B.list_backends
    assert not hasattr(B, "backends")  # the old name of the listing is gone
    rows = pylstm.list_backends()
    assert all(isinstance(r, B.BackendInfo) for r in rows)
    assert {"rust", "onnxruntime"} <= {r.name for r in rows}


def test_builtin_backends_never_load_plugins():
    """Computing on the built-in backends imports no plugin manager and no entry point."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import pylstm
        from pylstm import functional as F
        X = np.ones((3, 2, 4), np.float32)
        W = np.full((1, 8, 4), 0.1, np.float32)
        R = np.full((1, 8, 2), 0.1, np.float32)
        a = F.lstm(X, W, R, backend="onnxruntime")
        b = F.lstm(X, W, R)
        with pylstm.use_backend("onnxruntime:cpu"):
            pylstm.LSTM(4, 2, seed=0)(X)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
        loaded = sorted(m for m in sys.modules
                        if m.startswith(("pylstm.plugins", "pylstm_forecasting",
                                         "pylstm_plugin_example")))
        assert not loaded, loaded
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def _throwaway_distribution(root: Path, name: str, module_source: str,
                            entry_points: str) -> Path:
    """Install distribution ``name`` (one module ``<name>_mod``) into ``root`` by hand: a
    ``.dist-info`` folder with METADATA and entry_points.txt, as pip would write it."""
    module = name.replace("-", "_") + "_mod"
    (root / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{name.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points).format(module=module))
    return root


BROKEN_PLUGIN = """
    raise RuntimeError("this plugin is broken on purpose")
"""


def test_a_plugin_that_raises_on_import_never_breaks_builtin_backends(tmp_path):
    site = _throwaway_distribution(tmp_path, "broken-pylstm-plugin", BROKEN_PLUGIN,
                                   "[pylstm]\nbroken = {module}\n")
    code = textwrap.dedent("""
        import numpy as np
        import pytest
        import pylstm
        from pylstm import functional as F
        X = np.ones((3, 2, 4), np.float32)
        W = np.full((1, 8, 4), 0.1, np.float32)
        R = np.full((1, 8, 2), 0.1, np.float32)
        y = F.lstm(X, W, R, backend="onnxruntime")[0]
        np.testing.assert_allclose(y, F.lstm(X, W, R)[0], rtol=1e-5, atol=1e-6)
        assert pylstm.get_backend("onnxruntime").name == "onnxruntime"
        # a name that is not built in loads the plugins: the error names the broken one
        with pytest.raises(pylstm.BackendError,
                           match="unknown backend 'gpu9'.*'broken-pylstm-plugin' failed to "
                                 "load.*RuntimeError: this plugin is broken on purpose"):
            pylstm.get_backend("gpu9")
        rows = {r.name: r for r in pylstm.list_backends()}
        assert rows["onnxruntime"].available and rows["rust"].available
        assert not rows["broken-pylstm-plugin"].available
        assert "broken on purpose" in rows["broken-pylstm-plugin"].error
        # and the built-ins still run after the plugins were loaded
        y2 = F.lstm(X, W, R, backend="onnxruntime")[0]
        np.testing.assert_array_equal(y, y2)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get(
        "PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_plugin_backend_that_fails_to_register_is_named(tmp_path, monkeypatch):
    source = """
        from pylstm.hookspecs import hookimpl

        class Half:
            name = "half"  # no available/devices/lstm/run_module

        @hookimpl
        def register_backends(register):
            register(Half())
    """
    site = _throwaway_distribution(tmp_path, "half-backend", source,
                                   "[pylstm]\nhalf = {module}\n")
    from pylstm import plugins

    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    plugins.reset_plugins()
    try:
        with pytest.raises(pylstm.BackendError, match="'half-backend'.*lacks available"):
            B.get_backend("half")
        assert B.get_backend("onnxruntime").name == "onnxruntime"
    finally:
        monkeypatch.undo()
        plugins.reset_plugins()


def test_a_plugin_cannot_replace_a_builtin_backend(tmp_path):
    class FakeRust(EchoBackend):
        name = "rust"

    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register(FakeRust())

    from pylstm import plugins

    pm = plugins.get_plugin_manager()
    pm.register(Plugin(), name="fake-rust")
    try:
        with pytest.warns(RuntimeWarning, match="'rust' registered twice"):
            rows = B.list_backends()
        assert [r.plugin for r in rows if r.name == "rust"] == ["pylstm.backends.rust_backend"]
        assert type(B.get_backend("rust")).__name__ == "RustBackend"
    finally:
        pm.unregister(name="fake-rust")


class EchoBackend:
    """A third-party backend: runs the module on the rust backend and counts calls."""

    name = "echo"

    def __init__(self):
        self.calls = 0

    def available(self):
        return True

    def devices(self):
        return ["echo-device"]

    def lstm(self, **args):
        self.calls += 1
        args.pop("requires_grad", None)
        return B.get_backend("rust").lstm(**args)

    def run_module(self, module, x, hx, lengths):
        self.calls += 1
        return B.get_backend("rust").run_module(module, x, hx, lengths)


class EchoPlugin:
    def __init__(self):
        self.backend = EchoBackend()

    @hookimpl
    def register_backends(self, register):
        register(self.backend)


@pytest.fixture
def echo_plugin():
    from pylstm import plugins

    pm = plugins.get_plugin_manager()
    plugin = EchoPlugin()
    pm.register(plugin, name="echo-plugin")
    try:
        yield plugin
    finally:
        pm.unregister(plugin)


def test_plugin_backend_appears_and_runs(echo_plugin):
    infos = {b.name: b for b in B.list_backends()}
    assert str(infos["echo"]) == "echo: echo-device"
    assert infos["echo"].plugin == "echo-plugin"
    assert B.get_backend("echo") is echo_plugin.backend
    m = pylstm.LSTM(3, 4, seed=1).eval()
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    with B.use_backend("echo"):
        y, _ = m(x)
    assert echo_plugin.backend.calls == 1
    np.testing.assert_allclose(y, m(x)[0], rtol=0, atol=0)
    rng = np.random.default_rng(2)
    args = random_lstm_args(rng, all_attributes=False)
    out = pylstm.functional.lstm(**args, backend="echo")
    assert echo_plugin.backend.calls == 2
    assert maxdiff(out, pylstm.functional.lstm(**args)) == 0


def test_plugin_backend_disappears_when_unregistered():
    from pylstm import plugins

    pm = plugins.get_plugin_manager()
    plugin = EchoPlugin()
    pm.register(plugin, name="echo-plugin-2")
    assert "echo" in {b.name for b in B.list_backends()}
    pm.unregister(plugin)
    assert "echo" not in {b.name for b in B.list_backends()}


# ----------------------------------------------------------------------------- functional

def test_onnxruntime_functional_matches_reference_all_attributes():
    be = B.get_backend("onnxruntime", providers=CPU)
    rng = np.random.default_rng(0)
    for _ in range(40):
        args = random_lstm_args(rng)
        if rng.random() < 0.3:
            args = to_layout1(args)
        out = be.lstm(**args)
        assert maxdiff(out, lstm_reference(**args)) < 2e-5, {
            k: v for k, v in args.items() if not isinstance(v, np.ndarray)}
    assert be.last_providers == CPU


def test_onnxruntime_thresholded_relu_alpha_order():
    be = B.get_backend("onnxruntime:cpu")
    rng = np.random.default_rng(3)
    args = dict(X=rng.standard_normal((4, 2, 3)).astype(np.float32),
                W=rng.standard_normal((1, 12, 3)).astype(np.float32),
                R=rng.standard_normal((1, 12, 3)).astype(np.float32),
                hidden_size=3, activations=["Sigmoid", "Tanh", "ThresholdedRelu"],
                activation_alpha=[0.3], activation_beta=[])
    assert maxdiff(be.lstm(**args), lstm_reference(**args)) < 1e-5


def test_rust_and_onnxruntime_functional_parity():
    F = pylstm.functional
    rng = np.random.default_rng(11)
    for _ in range(30):
        args = random_lstm_args(rng)
        if rng.random() < 0.3:
            args = to_layout1(args)
        a = F.lstm(**args, backend="rust")
        b = F.lstm(**args, backend="onnxruntime")
        assert maxdiff(a, b) < 2e-5
        for x, y in zip(a, b, strict=True):
            assert x.shape == y.shape and x.dtype == y.dtype


def test_functional_sessions_are_cached_across_shapes(monkeypatch):
    be = B.get_backend("onnxruntime:cpu")
    built = []
    real = ortb.OnnxRuntimeBackend._session

    def counting(self, model):
        built.append(model)
        return real(self, model)

    monkeypatch.setattr(ortb.OnnxRuntimeBackend, "_session", counting)
    rng = np.random.default_rng(0)
    H = 3
    for T, Bsz, n_in in [(2, 1, 4), (5, 3, 4), (1, 7, 2)]:
        args = dict(X=rng.standard_normal((T, Bsz, n_in)).astype(np.float32),
                    W=rng.standard_normal((1, 4 * H, n_in)).astype(np.float32),
                    R=rng.standard_normal((1, 4 * H, H)).astype(np.float32), hidden_size=H)
        assert maxdiff(be.lstm(**args), lstm_reference(**args)) < 1e-5
    assert len(built) == 1
    args["clip"] = 1.0  # another attribute set: another session
    be.lstm(**args)
    assert len(built) == 2


def test_onnxruntime_functional_float64_and_training_are_backend_errors():
    be = B.get_backend("onnxruntime")
    x = np.zeros((2, 1, 3))
    w = np.zeros((1, 8, 3))
    r = np.zeros((1, 8, 2))
    with pytest.raises(pylstm.BackendError, match="float64.*rust"):
        be.lstm(X=x, W=w, R=r, hidden_size=2)
    with pytest.raises(pylstm.BackendError, match="inference-only.*'rust'"):
        be.lstm(X=x.astype(np.float32), W=w.astype(np.float32), R=r.astype(np.float32),
                requires_grad=True)
    with pytest.raises(pylstm.BackendError, match="rust"):
        pylstm.functional.lstm(x.astype(np.float32), w.astype(np.float32),
                               r.astype(np.float32), backend="onnxruntime", requires_grad=True)


# ----------------------------------------------------------------------------- modules

def torch_reference(m, x, hx=None, lengths=None):
    """Run ``m``'s weights through torch.nn.LSTM / LSTMCell in float64."""
    sd = {k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in m.state_dict().items()}
    if "weight_ih" in sd:
        tm = torch.nn.LSTMCell(m.input_size, m.hidden_size, bias=m.bias).double()
        tm.load_state_dict(sd)
        with torch.no_grad():
            h, c = tm(torch.from_numpy(np.asarray(x, np.float64)),
                      None if hx is None else tuple(torch.from_numpy(np.asarray(a, np.float64))
                                                    for a in hx))
        return h.numpy(), (h.numpy(), c.numpy())
    tm = torch.nn.LSTM(m.input_size, m.hidden_size, num_layers=m.num_layers, bias=m.bias,
                       batch_first=m.batch_first, bidirectional=m.bidirectional,
                       proj_size=m.proj_size).double()
    tm.load_state_dict(sd)
    xt = torch.from_numpy(np.asarray(x, np.float64))
    hxt = None if hx is None else tuple(torch.from_numpy(np.asarray(a, np.float64)) for a in hx)
    with torch.no_grad():
        if lengths is None:
            y, (h, c) = tm(xt, hxt)
        else:
            T = x.shape[1 if m.batch_first else 0]
            pk = torch.nn.utils.rnn.pack_padded_sequence(
                xt, torch.as_tensor(lengths), batch_first=m.batch_first, enforce_sorted=False)
            y, (h, c) = tm(pk, hxt)
            y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=m.batch_first,
                                                          total_length=T)
    return y.numpy(), (h.numpy(), c.numpy())


def random_module_case(rng, dtype=None):
    cfg = dict(
        num_layers=int(rng.integers(1, 4)),
        bias=bool(rng.random() < 0.8),
        batch_first=bool(rng.random() < 0.5),
        bidirectional=bool(rng.random() < 0.5),
        proj_size=0,
        dtype=dtype or (np.float64 if rng.random() < 0.25 else np.float32),
    )
    n_in, H = int(rng.integers(1, 6)), int(rng.integers(2, 6))
    if rng.random() < 0.3:
        cfg["proj_size"] = int(rng.integers(1, H))
    m = pylstm.LSTM(n_in, H, seed=int(rng.integers(1 << 30)), **cfg).eval()
    T, Bsz = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    dt = np.dtype(cfg["dtype"])
    x = rng.standard_normal((Bsz, T, n_in) if cfg["batch_first"] else (T, Bsz, n_in)).astype(dt)
    D = 2 if cfg["bidirectional"] else 1
    hx = None
    if rng.random() < 0.5:
        Hout = cfg["proj_size"] or H
        hx = (rng.standard_normal((cfg["num_layers"] * D, Bsz, Hout)).astype(dt),
              rng.standard_normal((cfg["num_layers"] * D, Bsz, H)).astype(dt))
    lengths = None
    if rng.random() < 0.4:
        lengths = rng.integers(1, T + 1, size=Bsz).astype(np.int64)
        lengths[int(rng.integers(Bsz))] = T  # PyTorch's padding needs one full sequence
    return m, x, hx, lengths


def _tol(dtype):
    return 1e-10 if np.dtype(dtype) == np.float64 else 2e-5


def test_module_parity_rust_onnxruntime_torch():
    rng = np.random.default_rng(5)
    for _ in range(24):
        m, x, hx, lengths = random_module_case(rng)
        ref = torch_reference(m, x, hx, lengths)
        y_r, (h_r, c_r) = m(x, hx, lengths=lengths)
        with B.use_backend("onnxruntime", providers=CPU):
            y_o, (h_o, c_o) = m(x, hx, lengths=lengths)
        for a, b in ((y_r, y_o), (h_r, h_o), (c_r, c_o)):
            assert a.shape == b.shape and a.dtype == b.dtype == m.dtype
        tol = _tol(m.dtype)
        assert maxdiff((y_o, h_o, c_o), (ref[0], *ref[1])) < tol, m
        assert maxdiff((y_r, h_r, c_r), (y_o, h_o, c_o)) < tol * 2, m


def test_module_unbatched_input():
    rng = np.random.default_rng(8)
    m = pylstm.LSTM(3, 4, num_layers=2, bidirectional=True, seed=3).eval()
    x = rng.standard_normal((5, 3)).astype(np.float32)
    hx = (rng.standard_normal((4, 4)).astype(np.float32),
          rng.standard_normal((4, 4)).astype(np.float32))
    y, (h, c) = B.get_backend("onnxruntime:cpu").run_module(m, x, hx, None)
    assert y.shape == (5, 8) and h.shape == (4, 4)
    ref = torch_reference(m, x, hx)
    assert maxdiff((y, h, c), (ref[0], *ref[1])) < 2e-5


def test_lstmcell_parity():
    rng = np.random.default_rng(9)
    for dtype in (np.float32, np.float64):
        for bias in (True, False):
            cell = pylstm.LSTMCell(4, 3, bias=bias, dtype=dtype, seed=2)
            x = rng.standard_normal((2, 4)).astype(dtype)
            hx = (rng.standard_normal((2, 3)).astype(dtype),
                  rng.standard_normal((2, 3)).astype(dtype))
            for state in (None, hx):
                h_r, c_r = cell(x, state)
                _, (h_o, c_o) = B.get_backend("onnxruntime:cpu").run_module(cell, x, state, None)
                with B.use_backend("onnxruntime:cpu"):
                    h_o2, c_o2 = cell(x, state)
                ref = torch_reference(cell, x, state)[1]
                assert maxdiff((h_o, c_o), ref) < _tol(dtype)
                assert maxdiff((h_o2, c_o2), (h_o, c_o)) == 0
                assert maxdiff((h_r, c_r), (h_o, c_o)) < 2 * _tol(dtype)
    one = rng.standard_normal(4).astype(np.float32)
    cell = pylstm.LSTMCell(4, 3, seed=1)
    h, (h2, c) = B.get_backend("onnxruntime:cpu").run_module(cell, one, None, None)
    assert h.shape == c.shape == (3,)


def test_module_sessions_cached_and_invalidated(monkeypatch):
    built = []
    real = ortb.OnnxRuntimeBackend._session

    def counting(self, model):
        built.append(model)
        return real(self, model)

    monkeypatch.setattr(ortb.OnnxRuntimeBackend, "_session", counting)
    rng = np.random.default_rng(1)
    m = pylstm.LSTM(3, 4, num_layers=2, seed=1).eval()
    be = B.get_backend("onnxruntime:cpu")
    for T, Bsz in [(2, 1), (6, 3), (4, 2)]:
        x = rng.standard_normal((T, Bsz, 3)).astype(np.float32)
        be.run_module(m, x, None, None)
    assert len(built) == 1  # one session for every batch and sequence length
    lengths = np.array([4, 1], np.int64)
    be.run_module(m, x, None, lengths)
    assert len(built) == 2  # with lengths: another input signature
    # load_state_dict -> new weights are used
    m2 = pylstm.LSTM(3, 4, num_layers=2, seed=2)
    m.load_state_dict(m2.state_dict())
    y, _ = be.run_module(m, x, None, None)
    assert len(built) == 3
    assert maxdiff([y], [torch_reference(m, x)[0]]) < 2e-5
    # in-place optimiser step + mark_updated -> new weights are used
    for p in m.parameters():
        p.data *= 0.5
    m.mark_updated()
    y, _ = be.run_module(m, x, None, None)
    assert len(built) == 4
    assert maxdiff([y], [torch_reference(m, x)[0]]) < 2e-5
    y2, _ = be.run_module(m, x, None, None)
    assert len(built) == 4 and maxdiff([y], [y2]) == 0


def test_module_training_is_a_backend_error_naming_rust():
    m = pylstm.LSTM(3, 4, num_layers=2, dropout=0.5, seed=1)
    x = np.zeros((2, 1, 3), np.float32)
    be = B.get_backend("onnxruntime")
    with pytest.raises(pylstm.BackendError, match="inference-only.*'rust'"):
        be.run_module(m.eval(), x, None, None, requires_grad=True)
    with pytest.raises(pylstm.BackendError, match="dropout.*eval"):
        be.run_module(m.train(), x, None, None)
    with B.use_backend("onnxruntime"), pytest.raises(pylstm.BackendError, match="rust"):
        m.eval().forward(x, requires_grad=True)


# ----------------------------------------------------------------------------- providers

def _small_case():
    m = pylstm.LSTM(3, 4, seed=1).eval()
    x = np.random.default_rng(0).standard_normal((3, 2, 3)).astype(np.float32)
    return m, x


def test_cuda_requested_without_cuda_warns_once_and_runs_on_cpu(capfd):
    m, x = _small_case()
    be = B.get_backend("onnxruntime", providers=["CUDAExecutionProvider"])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for _ in range(3):
            y, _ = be.run_module(m, x, None, None)
            be.lstm(X=x, W=np.zeros((1, 16, 3), np.float32), R=np.zeros((1, 16, 4), np.float32))
        m2 = pylstm.LSTM(3, 4, seed=2).eval()
        be.run_module(m2, x, None, None)
    msgs = [str(w.message) for w in rec]
    if "CUDAExecutionProvider" in ort.get_available_providers():  # a real GPU build
        assert be.last_providers[0] in ("CUDAExecutionProvider", "CPUExecutionProvider")
    else:
        assert len(msgs) == 1, msgs
        assert "CUDAExecutionProvider" in msgs[0] and "CPUExecutionProvider" in msgs[0]
        assert issubclass(rec[0].category, RuntimeWarning)
        assert be.last_providers == ["CPUExecutionProvider"]
    assert maxdiff([y], [torch_reference(m, x)[0]]) < 2e-5
    assert "[E:onnxruntime" not in capfd.readouterr().err


def test_simulated_onnxruntime_gpu_without_cuda_falls_back_once(monkeypatch, capfd):
    """onnxruntime-gpu on a machine without CUDA lists CUDAExecutionProvider as available, but
    the session comes up on CPU: simulate that listing with the CPU-only package."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a real CUDA provider is installed: covered by benchmarks/gpu_check.py")
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    be = B.get_backend("onnxruntime")  # auto: prefers CUDA
    assert be.devices() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    m, x = _small_case()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for _ in range(3):
            be.run_module(m, x, None, None)
        be.lstm(X=x, W=np.zeros((1, 16, 3), np.float32), R=np.zeros((1, 16, 4), np.float32))
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 1, msgs
    assert "falling back" in msgs[0] and "CUDAExecutionProvider" in msgs[0]
    assert be.last_providers == ["CPUExecutionProvider"]
    assert "[E:onnxruntime" not in capfd.readouterr().err


def test_onnxruntime_module_validates_like_rust():
    m = pylstm.LSTM(3, 4, batch_first=True, seed=1).eval()
    x = np.zeros((2, 5, 3), np.float32)
    for backend in ("rust", "onnxruntime"):
        with B.use_backend(backend):
            with pytest.raises(pylstm.ShapeError, match="input_size"):
                m(np.zeros((2, 5, 4), np.float32))
            with pytest.raises(pylstm.LstmValueError, match="lengths"):
                m(x, lengths=[6, 1])
            y, (h, c) = m(x, lengths=[5, 2])
            assert y.shape == (2, 5, 4) and not y[1, 2:].any()
    cell = pylstm.LSTMCell(3, 4)
    with pytest.raises(pylstm.ShapeError):
        B.get_backend("onnxruntime").run_module(cell, np.zeros((2, 5), np.float32), None, None)
