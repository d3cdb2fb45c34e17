"""Run-time settings: threads, SIMD kernel paths, fork safety, the GIL, ``pylstm.info()``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

import pylstm
from pylstm import functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def restore_runtime():
    threads, kern = pylstm.get_num_threads(), pylstm.kernel()
    yield
    pylstm.set_num_threads(threads)
    pylstm.set_kernel(kern)


def _problem(dtype=np.float32, T=12, nb=24, n_in=20, H=40, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        X=rng.standard_normal((T, nb, n_in)).astype(dtype),
        W=(rng.standard_normal((2, 4 * H, n_in)) * 0.3).astype(dtype),
        R=(rng.standard_normal((2, 4 * H, H)) * 0.3).astype(dtype),
        B=(rng.standard_normal((2, 8 * H)) * 0.3).astype(dtype),
        sequence_lens=rng.integers(1, T + 1, nb),
        initial_h=(rng.standard_normal((2, nb, H)) * 0.3).astype(dtype),
        initial_c=(rng.standard_normal((2, nb, H)) * 0.3).astype(dtype),
        P=(rng.standard_normal((2, 3 * H)) * 0.3).astype(dtype),
    )


def _everything(dtype):
    """Outputs and gradients of functional.lstm and of a deep LSTM module, as a dict."""
    a = _problem(dtype)
    X, W, R = a.pop("X"), a.pop("W"), a.pop("R")
    Y, Yh, Yc, tape = F.lstm(X, W, R, **a, direction="bidirectional", clip=3.0,
                             requires_grad=True)
    g = F.lstm_backward(tape, np.ones_like(Y), np.ones_like(Yh), np.ones_like(Yc))
    out = {"Y": Y, "Yh": Yh, "Yc": Yc, **{"g" + k: v for k, v in g.items()}}
    names = ["Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
             "HardSigmoid", "Elu", "Softsign", "Softplus"]
    # A gate function with values outside [0, 1] makes float32 results ill-conditioned (states
    # grow, rounding differences amplify): in float32 each function goes in the g and h slots,
    # in float64 in the gate slot too.
    gates = {"Sigmoid", "HardSigmoid"} if dtype == np.float32 else set(names)
    for name in names:  # each activation, with its backward
        acts = ["Sigmoid", name, name, name if name in gates else "HardSigmoid", "Tanh", name]
        # As many alpha/beta values as the activations consume (extras are an error).
        n_alpha = sum(a in ("Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
                            "HardSigmoid", "Elu") for a in acts)
        n_beta = sum(a in ("Affine", "ScaledTanh", "HardSigmoid") for a in acts)
        Y2, Yh2, _, t2 = F.lstm(X, W, R, direction="bidirectional", activations=acts,
                                activation_alpha=[0.6] * n_alpha, activation_beta=[0.4] * n_beta,
                                clip=2.0, requires_grad=True)
        g2 = F.lstm_backward(t2, np.ones_like(Y2), np.ones_like(Yh2))
        out.update({f"{name}_Y": Y2, f"{name}_gX": g2["X"], f"{name}_gW": g2["W"],
                    f"{name}_gR": g2["R"]})
    m = pylstm.LSTM(20, 33, num_layers=2, bidirectional=True, proj_size=17, dtype=dtype, seed=1)
    (y, (h, c)), mt = m.forward(X, requires_grad=True)
    dx, _ = m.backward(mt, np.ones_like(y))
    out.update(my=y, mh=h, mc=c, mdx=dx, **{"m" + k: p.grad for k, p in m.named_parameters()})
    return out


def _assert_same(a: dict, b: dict, tol: float, what: str):
    """Equal within ``tol`` relative to each array's scale (float32 gradients are sums of
    hundreds of terms of size up to ~100: their rounding is relative to that scale)."""
    assert set(a) == set(b)
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype, (what, k)
        scale = max(1.0, float(np.max(np.abs(b[k]))))
        np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol * scale, err_msg=f"{what}: {k}")


# ----------------------------------------------------------------------------- info


def test_info_keys():
    info = pylstm.info()
    assert set(info) >= {"version", "kernel", "detected_kernel", "supported_kernels",
                         "num_threads", "dtypes"}
    assert info["version"] == pylstm.__version__
    assert "scalar" in info["supported_kernels"]
    assert info["kernel"] in info["supported_kernels"]
    assert info["detected_kernel"] in info["supported_kernels"]
    assert info["kernel"] == pylstm.kernel()
    assert info["num_threads"] == pylstm.get_num_threads() >= 1
    assert set(info["dtypes"]) == {"float32", "float64"}
    json.dumps(info)  # plain data


# ----------------------------------------------------------------------------- threads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_two_and_three_threads_agree(dtype, restore_runtime):
    results = {}
    for n in (1, 2, 3):
        pylstm.set_num_threads(n)
        assert pylstm.get_num_threads() == n
        assert pylstm.info()["num_threads"] == n
        results[n] = _everything(dtype)
    _assert_same(results[1], results[2], 1e-6, "1 vs 2 threads")
    _assert_same(results[1], results[3], 1e-6, "1 vs 3 threads")


def test_small_calls_on_the_helper_team_match_one_thread_exactly(restore_runtime):
    """Single steps big enough for the helper team (hidden 256: the caller and lingering
    helpers split the weights) give exactly the one-thread results, back to back and after
    the helpers have parked; a forked child runs them too."""
    cell = pylstm.LSTMCell(256, 256, seed=4)
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((6, 1, 256)).astype(np.float32)  # one row: below the inline work

    def steps():
        state, out = None, []
        for x in xs:
            state = cell(x, state)
            out.append(state[0])
            if len(out) == 3:
                time.sleep(0.01)  # the helpers park; the next call wakes them
        return np.stack(out)

    results = {}
    for n in (1, 2, 3):
        pylstm.set_num_threads(n)
        results[n] = steps()
    np.testing.assert_array_equal(results[1], results[2])
    np.testing.assert_array_equal(results[1], results[3])
    if hasattr(os, "fork"):
        pylstm.set_num_threads(2)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if np.array_equal(steps(), results[1]) else 3
            finally:
                os._exit(code)
        status = _wait_child(pid)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-3, ValueError), (True, TypeError),
                                     (2.0, TypeError), ("2", TypeError), (None, TypeError)])
def test_set_num_threads_rejects(bad, exc, restore_runtime):
    before = pylstm.get_num_threads()
    with pytest.raises(exc) as err:
        pylstm.set_num_threads(bad)
    assert "n" in str(err.value) or "num_threads" in str(err.value)
    assert pylstm.get_num_threads() == before


def _run_py(code: str, env_extra: dict, timeout: float = 120):
    env = dict(os.environ, **env_extra)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_pylstm_num_threads_env():
    code = """
        import json, pylstm
        print(json.dumps([pylstm.get_num_threads(), pylstm.info()["num_threads"]]))
    """
    for n in ("1", "3", " 2 "):
        r = _run_py(code, {"PYLSTM_NUM_THREADS": n})
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout.strip().splitlines()[-1]) == [int(n), int(n)]
    r = _run_py(code, {"PYLSTM_NUM_THREADS": "lots"})
    assert r.returncode == 0, r.stderr
    assert "PYLSTM_NUM_THREADS" in r.stderr and "lots" in r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])[0] >= 1


def test_threads_env_results_match(tmp_path):
    code = f"""
        import numpy as np, sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        from test_runtime import _everything
        np.savez(sys.argv[1], **_everything(np.float32))
    """
    outs = {}
    for n in ("1", "2"):
        path = tmp_path / f"t{n}.npz"
        env = dict(os.environ, PYLSTM_NUM_THREADS=n)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(path)], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        outs[n] = dict(np.load(path))
    _assert_same(outs["1"], outs["2"], 1e-6, "PYLSTM_NUM_THREADS 1 vs 2")


# ----------------------------------------------------------------------------- kernels


SUPPORTED = pylstm.info()["supported_kernels"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_set_kernel_each_supported_path_matches_scalar(dtype, restore_runtime):
    pylstm.set_kernel("scalar")
    assert pylstm.kernel() == "scalar"
    want = _everything(dtype)
    for path in SUPPORTED:
        pylstm.set_kernel(path)
        assert pylstm.kernel() == path == pylstm.info()["kernel"]
        _assert_same(_everything(dtype), want, 1e-5, f"kernel {path} vs scalar")


def test_kernel_env_each_supported_path_matches_scalar(tmp_path):
    code = f"""
        import numpy as np, sys, pylstm
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        from test_runtime import _everything
        out = {{k + "_32": v for k, v in _everything(np.float32).items()}}
        out.update({{k + "_64": v for k, v in _everything(np.float64).items()}})
        np.savez(sys.argv[1], kernel=np.array(pylstm.kernel()), **out)
    """
    outs = {}
    for path in SUPPORTED:
        file = tmp_path / f"{path}.npz"
        env = dict(os.environ, PYLSTM_KERNEL=path)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(file)], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "RuntimeWarning" not in r.stderr, r.stderr
        data = dict(np.load(file))
        assert str(data.pop("kernel")) == path
        outs[path] = data
    for path in SUPPORTED:
        _assert_same(outs[path], outs["scalar"], 1e-5, f"PYLSTM_KERNEL={path} vs scalar")


def test_set_kernel_unknown(restore_runtime):
    before = pylstm.kernel()
    for bad in ("sse9", "", "AVX3"):
        with pytest.raises(pylstm.LstmValueError) as err:
            pylstm.set_kernel(bad)
        assert "kernel" in str(err.value) and "scalar" in str(err.value)
        assert repr(bad) in str(err.value) or f'"{bad}"' in str(err.value)
    unsupported = [k for k in ("scalar", "avx2", "avx512", "neon") if k not in SUPPORTED]
    for k in unsupported:
        with pytest.raises(ValueError, match=k):
            pylstm.set_kernel(k)
    assert pylstm.kernel() == before


def test_kernel_env_unknown_warns_and_falls_back():
    r = _run_py("import pylstm; print(pylstm.kernel())", {"PYLSTM_KERNEL": "bogus"})
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" in r.stderr and "bogus" in r.stderr
    assert r.stdout.strip() in SUPPORTED


# ----------------------------------------------------------------------------- fork, GIL


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
@pytest.mark.parametrize("threads", [1, 2])
def test_fork_after_use(threads, restore_runtime):
    pylstm.set_num_threads(threads)
    a = _problem(np.float64, T=6, nb=8, n_in=5, H=7)
    X, W, R = a.pop("X"), a.pop("W"), a.pop("R")
    want = F.lstm(X, W, R, **a, direction="bidirectional")[0]  # the pool is now running
    m = pylstm.LSTM(5, 7, num_layers=2, dtype=np.float64, seed=0)
    (y_parent, _), tape = m.forward(X, requires_grad=True)
    dx_parent, _ = m.backward(tape, np.ones_like(y_parent))
    pid = os.fork()
    if pid == 0:  # child: run the engine (forward and backward) and report through the status
        code = 1
        try:
            got = F.lstm(X, W, R, **a, direction="bidirectional")[0]
            (y, _), t = m.forward(X, requires_grad=True)
            dx, _ = m.backward(t, np.ones_like(y))
            ok = (np.array_equal(got, want) and np.array_equal(y, y_parent)
                  and np.allclose(dx, dx_parent, rtol=1e-12, atol=1e-14))
            pylstm.set_num_threads(2)
            ok = ok and np.array_equal(F.lstm(X, W, R, **a, direction="bidirectional")[0], want)
            code = 0 if ok else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("forked child hung running the engine")
        time.sleep(0.02)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    # The parent still works afterwards.
    np.testing.assert_array_equal(F.lstm(X, W, R, **a, direction="bidirectional")[0], want)


def _wait_child(pid: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("forked child hung running the engine")
        time.sleep(0.02)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_fork_while_another_thread_is_inside_the_engine(restore_runtime):
    """The child of a fork taken while a parent thread holds the engine's pool (and its lock)
    can still run the engine."""
    pylstm.set_num_threads(2)
    m = pylstm.LSTM(64, 128, num_layers=2, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((1500, 16, 64)).astype(np.float32)
    small = np.ascontiguousarray(x[:3, :2])
    want = m(small)[0]
    inside = threading.Event()

    def work():
        inside.set()
        m(x)

    t = threading.Thread(target=work)
    t.start()
    inside.wait()
    time.sleep(0.01)  # let it enter the engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if np.array_equal(m(small)[0], want) else 3
        finally:
            os._exit(code)
    status = _wait_child(pid)
    t.join()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def test_concurrent_python_threads(restore_runtime):
    """Two Python threads running long forwards (and backwards) at once both finish with the
    results a serial run gives."""
    pylstm.set_num_threads(2)
    m = pylstm.LSTM(32, 64, num_layers=2, bidirectional=True, dtype=np.float32, seed=0)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((60, 8, 32)).astype(np.float32) for _ in range(2)]
    serial = []
    for x in xs:
        (y, _), tape = m.forward(x, requires_grad=True)
        dx, _ = m.backward(tape, np.ones_like(y))
        serial.append((y, dx))
    results: dict[int, tuple] = {}
    errors: list[BaseException] = []

    def work(i):
        try:
            for _ in range(3):
                (y, _), tape = m.forward(xs[i], requires_grad=True)
                dx, _ = m.backward(tape, np.ones_like(y))
            results[i] = (y, dx)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    assert not errors, errors
    for i in range(2):
        np.testing.assert_array_equal(results[i][0], serial[i][0])
        np.testing.assert_allclose(results[i][1], serial[i][1], rtol=1e-5, atol=1e-6)


def test_gil_released_during_forward(restore_runtime):
    """While one thread is inside a long engine call, another Python thread keeps running: the
    main thread records when it runs, and it must run in the middle of the worker's call (a
    call holding the GIL would leave no main-thread timestamps there)."""
    pylstm.set_num_threads(1)
    m = pylstm.LSTM(64, 128, num_layers=2, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((1500, 16, 64)).astype(np.float32)
    want, _ = m(x[:10])
    out: dict = {}

    def work():
        out["t0"] = time.perf_counter()
        out["y"] = m(x)[0]
        out["t1"] = time.perf_counter()

    stamps = []
    t = threading.Thread(target=work)
    t.start()
    while t.is_alive():
        stamps.append(time.perf_counter())
    t.join()
    np.testing.assert_allclose(out["y"][:10], want, rtol=1e-6, atol=1e-7)
    t0, t1 = out["t0"], out["t1"]
    assert t1 - t0 > 0.06, "the call is too short to tell"
    stamps = np.array(stamps)
    middle = stamps[(stamps > t0 + 0.02) & (stamps < t1 - 0.02)]
    assert middle.size > 100, (middle.size, t1 - t0)


def test_fma_peak_measures_every_thread(restore_runtime):
    from pylstm import _core

    pylstm.set_num_threads(1)
    one = _core.fma_peak(0.05)
    assert np.isfinite(one) and one > 0.1
    pylstm.set_num_threads(2)
    two = _core.fma_peak(0.05)
    assert np.isfinite(two) and two > 0.1
    assert pylstm.get_num_threads() == 2


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), 61.0])
def test_fma_peak_rejects_bad_durations(seconds):
    from pylstm import _core

    with pytest.raises(pylstm.LstmValueError, match="seconds: expected a duration"):
        _core.fma_peak(seconds)


def _blas_counts():
    from threadpoolctl import threadpool_info

    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_blas_threads_limits_numpy_blas_and_the_engine_then_restores(restore_runtime):
    np.ones((64, 64)) @ np.ones((64, 64))  # BLAS loaded
    before = _blas_counts()
    assert before, "numpy's BLAS is not visible to threadpoolctl"
    pylstm.set_num_threads(2)
    with pylstm.blas_threads(1, engine=1):
        assert _blas_counts() == [1] * len(before)
        assert pylstm.get_num_threads() == 1
    assert _blas_counts() == before
    assert pylstm.get_num_threads() == 2


def test_blas_threads_restores_after_an_exception(restore_runtime):
    pylstm.set_num_threads(2)
    with pytest.raises(KeyError), pylstm.blas_threads(1, engine=1):
        raise KeyError("inside")
    assert pylstm.get_num_threads() == 2


@pytest.mark.parametrize("bad, error", [(0, pylstm.LstmValueError), (1.5, pylstm.DTypeError),
                                        (True, pylstm.DTypeError)])
def test_blas_threads_rejects_bad_counts(bad, error):
    with pytest.raises(error, match="^n: "), pylstm.blas_threads(bad):
        pass
