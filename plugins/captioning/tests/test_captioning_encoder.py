"""The captioning plugin's image encoder: the restricted unpickler (refuses code, reads both
``torch.save`` formats), the real EfficientNet-Lite0 weights and their safetensors cache, the
ONNX graph against the numpy reference, ImageNet classification of scikit-image's photos, the
input kinds and the errors for bad ones."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import skimage.data
from PIL import Image
from pylstm_captioning.encoder import (
    FEATURES,
    ImageEncoder,
    UnsafePickleError,
    build_network,
    cache_dir,
    find_checkpoint,
    load_torch_checkpoint,
    load_weights,
    preprocess,
    reference_forward,
)
from pylstm_captioning.encoder import images as images_module
from pylstm_captioning.encoder import weights as weights_module

from pylstm.plugins import TaskError

CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
CUP = {967, 968, 504}  # espresso, cup, coffee mug
TRIPOD = 872
SKIMAGE_DATA = Path(skimage.data.__file__).parent


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("captioning-cache")


@pytest.fixture(scope="module")
def encoder(cache: Path) -> ImageEncoder:
    return ImageEncoder(cache_dir=cache, providers=["CPUExecutionProvider"])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --- the restricted unpickler ------------------------------------------------------------------

class _RunsCode:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (os.system, (f"echo pwned > {self.target}",))


class _Evals:
    def __reduce__(self) -> tuple:
        return (eval, ("1 + 1",))


def _legacy_prefix() -> bytes:
    out = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(obj, out, protocol=2)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
@pytest.mark.parametrize("payload, refused", [("system", "posix.system"),
                                               ("eval", "builtins.eval")])
def test_unpickler_refuses_code(tmp_path: Path, fmt: str, payload: str, refused: str) -> None:
    marker = tmp_path / "pwned"
    evil = _RunsCode(marker) if payload == "system" else _Evals()
    data = pickle.dumps({"weight": evil}, protocol=2)
    path = tmp_path / "evil.pth"
    if fmt == "legacy":
        path.write_bytes(_legacy_prefix() + data)
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", data)
    if os.name != "posix":
        refused = refused.replace("posix", "nt")
    with pytest.raises(UnsafePickleError, match=f"refusing to unpickle {refused}"):
        load_torch_checkpoint(path)
    assert not marker.exists()


def test_unpickler_refuses_setting_attributes_on_allowed_functions(tmp_path: Path) -> None:
    # GLOBAL torch._utils._rebuild_tensor_v2; BUILD (None, {"__defaults__": None})
    data = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__Ns"
            b"\x86b.")
    path = tmp_path / "build.pth"
    path.write_bytes(_legacy_prefix() + data)
    with pytest.raises(UnsafePickleError, match="refusing to set '__defaults__'"):
        load_torch_checkpoint(path)


def test_unpickler_rejects_files_that_are_not_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(UnsafePickleError, match="not a PyTorch checkpoint"):
        load_torch_checkpoint(path)
    path.write_bytes(pickle.dumps(12345, protocol=2))
    with pytest.raises(UnsafePickleError, match="magic number"):
        load_torch_checkpoint(path)
    path.write_bytes(_legacy_prefix() + pickle.dumps({"a": 1}, protocol=2)[:-3])
    with pytest.raises(UnsafePickleError, match=r"not a PyTorch checkpoint \(the object"):
        load_torch_checkpoint(path)


class _FakeStorage:
    def __init__(self, key: str, array: np.ndarray) -> None:
        self.key, self.array = key, array


class _FakeTensor:
    """Pickles as torch does (``_rebuild_tensor_v2`` over a persistent storage), so files in
    both formats can be written here without torch."""

    def __init__(self, storage: _FakeStorage, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self) -> tuple:
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


def _fake_torch(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: object) -> None: ...

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    for name in ("FloatStorage", "LongStorage", "HalfStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _fake_save(obj: object, storages: list[_FakeStorage], path: Path, zip_format: bool,
               torch: types.ModuleType) -> None:
    kinds = {"<f4": torch.FloatStorage, "<i8": torch.LongStorage, "<f2": torch.HalfStorage}

    class Pickler(pickle.Pickler):
        def persistent_id(self, o: object) -> object:
            if not isinstance(o, _FakeStorage):
                return None
            pid = ("storage", kinds[o.array.dtype.str], o.key, "cpu", o.array.size)
            return pid if zip_format else pid + (None,)

    body = io.BytesIO()
    Pickler(body, protocol=2).dump(obj)
    if zip_format:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", body.getvalue())
            zf.writestr("archive/byteorder", "little")
            for s in storages:
                zf.writestr(f"archive/data/{s.key}", s.array.tobytes())
        return
    with open(path, "wb") as f:
        f.write(_legacy_prefix() + body.getvalue())
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(struct.pack("<q", s.array.size) + s.array.tobytes())


@pytest.mark.parametrize("zip_format", [False, True])
def test_unpickler_reads_both_formats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      zip_format: bool) -> None:
    torch = _fake_torch(monkeypatch)
    a = _FakeStorage("0", np.arange(12, dtype="<f4"))
    b = _FakeStorage("1", np.array([7, 8, 9], dtype="<i8"))
    h = _FakeStorage("2", np.array([0.5, -2.0], dtype="<f2"))
    state = collections.OrderedDict([
        ("w", _FakeTensor(a, 0, (3, 4), (4, 1))),
        ("w_t", _FakeTensor(a, 0, (4, 3), (1, 4))),  # a transposed view of the same storage
        ("tail", _FakeTensor(a, 10, (2,), (1,))),
        ("count", _FakeTensor(b, 1, (), ())),
        ("half", _FakeTensor(h, 0, (2,), (1,))),
    ])
    path = tmp_path / "fake.pth"
    _fake_save(state, [a, b, h], path, zip_format, torch)
    monkeypatch.undo()  # the reader must not need the fake torch either
    got = load_torch_checkpoint(path)
    assert isinstance(got, collections.OrderedDict) and list(got) == list(state)
    np.testing.assert_array_equal(got["w"], np.arange(12).reshape(3, 4))
    np.testing.assert_array_equal(got["w_t"], np.arange(12).reshape(3, 4).T)
    np.testing.assert_array_equal(got["tail"], [10, 11])
    assert got["count"].shape == () and got["count"] == 8 and got["count"].dtype == np.int64
    assert got["half"].dtype == np.float16 and list(got["half"]) == [0.5, -2.0]


def test_unpickler_rejects_tensors_past_their_storage(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    torch = _fake_torch(monkeypatch)
    a = _FakeStorage("0", np.arange(4, dtype="<f4"))
    path = tmp_path / "bad.pth"
    _fake_save({"w": _FakeTensor(a, 2, (3,), (1,))}, [a], path, False, torch)
    monkeypatch.undo()
    with pytest.raises(UnsafePickleError, match="reaches past its storage"):
        load_torch_checkpoint(path)


def test_unpickler_matches_torch_load(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")  # an extra reference only
    state = {"a": torch.randn(3, 5).t(), "b": torch.arange(10)[2:7],
             "p": torch.nn.Parameter(torch.ones(2)), "bf": torch.randn(4).bfloat16()}
    for zip_format in (True, False):
        path = tmp_path / f"t{zip_format}.pt"
        torch.save(state, path, _use_new_zipfile_serialization=zip_format)
        got = load_torch_checkpoint(path)
        for k, v in state.items():
            np.testing.assert_array_equal(got[k], v.detach().float().numpy()
                                          if k == "bf" else v.detach().numpy())
    real = torch.load(find_checkpoint(), weights_only=True)
    ours = load_torch_checkpoint(find_checkpoint())
    assert list(real) == list(ours)
    for k, v in real.items():
        np.testing.assert_array_equal(ours[k], v.numpy())


# --- the weights and their cache ---------------------------------------------------------------

def test_loads_the_real_weights() -> None:
    state = load_torch_checkpoint(find_checkpoint())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, FEATURES)
    learned = sum(v.size for k, v in state.items()
                  if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert 4.6e6 < learned < 4.7e6  # the 4.65M parameters of Lite0
    assert all(np.isfinite(v).all() for v in state.values())


def test_safetensors_cache_is_written_once_and_reused(encoder: ImageEncoder, cache: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(p.name for p in cache.iterdir())
    assert files == [find_checkpoint().stem + ".safetensors"]  # no temp file left behind
    target = cache / files[0]
    stamp = target.stat().st_mtime_ns

    def no_conversion(path: object) -> None:
        raise AssertionError("the checkpoint was read again")

    monkeypatch.setattr(weights_module, "load_torch_checkpoint", no_conversion)
    weights = load_weights(cache)
    assert target.stat().st_mtime_ns == stamp
    assert not any(k.endswith("num_batches_tracked") for k in weights)
    assert len(weights) == 296 - 49  # one counter per batch norm: stem, 47 in blocks, head
    np.testing.assert_array_equal(weights["_fc.bias"], encoder.network.fc_bias)


def test_a_broken_cache_file_is_rebuilt(tmp_path: Path) -> None:
    target = tmp_path / (find_checkpoint().stem + ".safetensors")
    target.write_bytes(b"\x00garbage")
    weights = load_weights(tmp_path)
    assert weights["_conv_head.weight"].shape == (FEATURES, 320, 1, 1)
    assert target.stat().st_size > 18_000_000


def test_cache_dir_default_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYLSTM_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path / "captioning"
    monkeypatch.delenv("PYLSTM_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "pylstm" / "captioning"
    assert cache_dir(tmp_path / "x") == tmp_path / "x"


def test_weights_that_disagree_with_the_configuration(cache: Path) -> None:
    weights = dict(load_weights(cache))
    missing = {k: v for k, v in weights.items() if k != "_blocks.7._bn1.running_var"}
    with pytest.raises(ValueError, match=r"_blocks\.7\._bn1\.running_var is missing"):
        build_network(missing)
    wrong = dict(weights, **{"_blocks.3._depthwise_conv.weight": np.zeros((144, 1, 3, 3))})
    with pytest.raises(ValueError, match=r"_blocks\.3\._depthwise_conv\.weight has shape "
                                         r"\(144, 1, 3, 3\).*\(144, 1, 5, 5\)"):
        build_network(wrong)


# --- the graph and the numpy reference ---------------------------------------------------------

def test_onnx_graph_equals_the_numpy_reference(encoder: ImageEncoder) -> None:
    # a small photo (odd sizes exercise the asymmetric "same" padding) and random inputs;
    # float32 onnxruntime against the float64 reference: measured within 2e-5
    photo = Image.fromarray(skimage.data.chelsea()).resize((72, 56))
    x = np.stack([(np.asarray(photo, np.float32).transpose(2, 0, 1) - 127.0) / 128.0,
                  np.random.default_rng(0).uniform(-1, 1, (3, 56, 72)).astype(np.float32)])
    session = ort.InferenceSession(encoder.model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    grid, mean, logits = session.run(["grid", "mean", "logits"], {"image": x})
    ref = reference_forward(encoder.network, x)
    assert grid.shape == (2, 2 * 3, FEATURES) and logits.shape == (2, 1000)
    np.testing.assert_allclose(grid, ref["grid"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(mean, ref["mean"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(logits, ref["logits"], rtol=0, atol=5e-4)


def _torch_forward(torch: types.ModuleType, w: dict, x: np.ndarray) -> np.ndarray:
    """Lite0 from the raw (unfolded) weights with torch's conv2d and batch_norm."""
    from torch.nn import functional as F

    def same(t: object, k: int, s: int) -> object:
        def pads(n: int) -> tuple[int, int]:
            total = max((-(-n // s) - 1) * s + k - n, 0)
            return total // 2, total - total // 2
        (t0, t1), (l0, l1) = pads(t.shape[2]), pads(t.shape[3])
        return F.pad(t, (l0, l1, t0, t1))

    def cbr(t: object, conv: str, bn: str, s: int = 1, groups: int = 1, act: bool = True):
        wt = torch.from_numpy(w[conv + ".weight"])
        t = F.conv2d(same(t, wt.shape[-1], s), wt, stride=s, groups=groups)
        t = F.batch_norm(t, torch.from_numpy(w[bn + ".running_mean"]),
                         torch.from_numpy(w[bn + ".running_var"]),
                         torch.from_numpy(w[bn + ".weight"]), torch.from_numpy(w[bn + ".bias"]),
                         eps=1e-3)
        return F.relu6(t) if act else t

    strides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    t = cbr(torch.from_numpy(x), "_conv_stem", "_bn0", 2)
    for i, s in enumerate(strides):
        p = f"_blocks.{i}."
        y = cbr(t, p + "_expand_conv", p + "_bn0") if p + "_expand_conv.weight" in w else t
        y = cbr(y, p + "_depthwise_conv", p + "_bn1", s, groups=y.shape[1])
        y = cbr(y, p + "_project_conv", p + "_bn2", act=False)
        t = t + y if s == 1 and t.shape == y.shape else y
    t = cbr(t, "_conv_head", "_bn1")
    return F.linear(t.mean((2, 3)), torch.from_numpy(w["_fc.weight"]),
                    torch.from_numpy(w["_fc.bias"])).numpy()


def test_graph_matches_torch_on_unfolded_weights(encoder: ImageEncoder, cache: Path) -> None:
    torch = pytest.importorskip("torch")  # an extra reference only: checks the BN folding
    x = preprocess(skimage.data.chelsea())[None]
    with torch.no_grad():
        expected = _torch_forward(torch, load_weights(cache), x)
    np.testing.assert_allclose(encoder.classify(skimage.data.chelsea()), expected, atol=1e-3)


# --- ImageNet classification -------------------------------------------------------------------

def test_cat_photo_is_a_cat(encoder: ImageEncoder) -> None:
    logits = encoder.classify(skimage.data.chelsea())  # Chelsea, a tabby
    top5 = np.argsort(-logits[0])[:5]
    assert top5[0] in CATS and CATS & set(top5.tolist())
    assert _softmax(logits[0])[list(CATS)].sum() > 0.85  # measured 0.92


def test_coffee_photo_is_a_cup(encoder: ImageEncoder) -> None:
    logits = encoder.classify(skimage.data.coffee())
    top5 = set(np.argsort(-logits[0])[:5].tolist())
    assert int(np.argmax(logits[0])) in CUP  # 967 espresso (0.95), then 968 cup, 504 mug
    assert {968, 504} & top5


def test_cameraman_has_a_tripod(encoder: ImageEncoder) -> None:
    # grey-level PNG: also checks "L" images become three equal channels
    assert int(np.argmax(encoder.classify(SKIMAGE_DATA / "camera.png"))) == TRIPOD


def test_the_normalisation_is_the_one_the_model_was_trained_with(
        encoder: ImageEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    # ImageNet's 0.485/0.229 statistics classify these photos too, but less surely
    photos = [skimage.data.chelsea(), skimage.data.coffee(), SKIMAGE_DATA / "camera.png",
              skimage.data.rocket(), SKIMAGE_DATA / "motorcycle_left.png"]
    classes = [CATS, CUP, {TRIPOD}, {657, 744, 812}, {665, 670}]  # missile, projectile,
    # space shuttle; moped, motor scooter

    def log_likelihood() -> float:
        p = _softmax(encoder.classify(photos))
        return float(np.mean([np.log(p[i, list(c)].sum()) for i, c in enumerate(classes)]))

    ours = log_likelihood()
    monkeypatch.setattr(images_module, "MEAN", np.array([123.675, 116.28, 103.53], "f4"))
    monkeypatch.setattr(images_module, "STD", np.array([58.395, 57.12, 57.375], "f4"))
    imagenet_stats = log_likelihood()
    assert ours > imagenet_stats + 0.1  # measured -0.25 against -0.47


# --- inputs, outputs, errors -------------------------------------------------------------------

def test_features_shapes_and_mean(encoder: ImageEncoder) -> None:
    grid, mean = encoder.features([skimage.data.chelsea(), skimage.data.astronaut()])
    assert grid.shape == (2, 49, FEATURES) and mean.shape == (2, FEATURES)
    assert grid.dtype == mean.dtype == np.float32
    assert grid.min() >= 0.0 and grid.max() <= 6.0  # after the head's ReLU6
    np.testing.assert_allclose(grid.mean(axis=1), mean, atol=1e-5)
    assert not np.allclose(grid[0], grid[1])


def test_every_input_kind_gives_the_same_features(encoder: ImageEncoder, tmp_path: Path) -> None:
    rgb = skimage.data.chelsea()
    path = tmp_path / "chelsea.png"
    Image.fromarray(rgb).save(path)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    kinds = [rgb, rgb.astype(np.float64) / 255.0, Image.fromarray(rgb), path, str(path),
             rgba, Image.fromarray(rgba)]
    grid, mean = encoder.features(kinds, batch_size=3)  # chunks of 3, 3 and 1
    for i in range(1, len(kinds)):
        np.testing.assert_allclose(grid[i], grid[0], atol=1e-5, err_msg=f"input kind {i}")
    one, _ = encoder.features(rgb)
    np.testing.assert_allclose(one[0], grid[0], atol=1e-5)
    batch, _ = encoder.features(np.stack([rgb, rgb]))  # a 4-D array is a batch
    assert batch.shape[0] == 2


def test_other_pillow_modes(encoder: ImageEncoder) -> None:
    rgb = Image.fromarray(skimage.data.coffee())
    grey = np.asarray(rgb.convert("L"))
    modes = [rgb.convert("L"), rgb.convert("P"), rgb.convert("CMYK"), rgb.convert("LA"),
             Image.fromarray(grey.astype(np.uint16) * 257), grey[:, :, None],
             Image.fromarray(np.zeros((40, 30, 4), np.uint8))]  # fully transparent: white
    grid, _ = encoder.features(modes)
    assert grid.shape == (len(modes), 49, FEATURES) and np.isfinite(grid).all()
    np.testing.assert_allclose(grid[4], grid[0], atol=1e-5)  # 16-bit grey == 8-bit grey
    np.testing.assert_allclose(grid[5], grid[0], atol=1e-5)
    white, _ = encoder.features(np.full((40, 30, 3), 255, np.uint8))
    np.testing.assert_allclose(grid[6], white[0], atol=1e-5)


def test_empty_batch(encoder: ImageEncoder) -> None:
    grid, mean = encoder.features([])
    assert grid.shape == (0, 49, FEATURES) and mean.shape == (0, FEATURES)
    assert encoder.classify([]).shape == (0, 1000)


def test_providers(encoder: ImageEncoder) -> None:
    assert encoder.providers == ["CPUExecutionProvider"]


def test_unreadable_images_name_the_file(encoder: ImageEncoder, tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    cut = tmp_path / "cut.png"
    Image.fromarray(skimage.data.coffee()).save(cut)
    cut.write_bytes(cut.read_bytes()[:5000])
    for bad in (tmp_path / "missing.png", text, cut, tmp_path):
        with pytest.raises(TaskError) as info:
            encoder.features([skimage.data.chelsea(), bad])
        message = str(info.value)
        assert str(bad) in message and "\n" not in message and "cannot read image" in message


@pytest.mark.parametrize("bad, match", [
    (np.zeros((10, 10, 2), np.uint8), r"must be \[H, W\], \[H, W, 3\] or \[H, W, 4\]"),
    (np.zeros((0, 10, 3), np.uint8), "has no pixels"),
    (np.full((10, 10, 3), 2.0), r"float image array must hold values in \[0, 1\]"),
    (np.zeros((10, 10, 3), np.int32), "must be uint8 or float"),
    (42, "an image must be a path, a PIL image or an array, got int"),
])
def test_bad_arrays_and_types(encoder: ImageEncoder, bad: object, match: str) -> None:
    with pytest.raises(TaskError, match=match):
        encoder.features([bad])


def test_bad_batch_size(encoder: ImageEncoder) -> None:
    with pytest.raises(TaskError, match="batch_size must be a positive integer"):
        encoder.features(skimage.data.chelsea(), batch_size=0)
