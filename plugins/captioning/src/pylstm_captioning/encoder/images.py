"""Images in (paths, PIL images, uint8 or float arrays) -> the network's input.

The evaluation preprocessing the Lite models were trained with (TensorFlow's EfficientNet
``preprocessing.py``): the centred square of side 224/256 of the shorter side, resized to
224x224 bicubic, then ``(x - 127) / 128`` per channel (``efficientnet_lite_builder``'s
MEAN_RGB/STDDEV_RGB, not the 0.485/0.229 ImageNet statistics of the PyTorch B0-B7 ports; the
ImageNet checks in the tests tell the two apart).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeAlias

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pylstm.plugins import TaskError

__all__ = ["CROP_FRACTION", "IMAGE_SIZE", "MEAN", "STD", "ImageLike", "as_batch", "load_rgb",
           "preprocess"]

IMAGE_SIZE = 224
CROP_FRACTION = IMAGE_SIZE / (IMAGE_SIZE + 32)
MEAN = 127.0
STD = 128.0

ImageLike: TypeAlias = "str | os.PathLike[str] | Image.Image | np.ndarray"
"""One image: a file path, a PIL image, or an array [H, W], [H, W, 3] or [H, W, 4] (uint8, or
float in [0, 1])."""


def _from_pil(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N"):  # 16-bit grey: keep the top byte
        img = Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8), "L")
    elif img.mode in ("I", "F"):  # 32-bit: stretch its own range to 0..255
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        img = Image.fromarray(np.round(a).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # transparent pixels hold arbitrary colours (often black): show them on white instead
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _from_array(a: np.ndarray) -> Image.Image:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise TaskError(f"an image array must be [H, W], [H, W, 3] or [H, W, 4], "
                        f"got shape {list(a.shape)}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise TaskError(f"an image array of shape {list(a.shape)} has no pixels")
    if a.dtype == np.uint8:
        pass
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or a.min() < 0.0 or a.max() > 1.0:
            raise TaskError("a float image array must hold values in [0, 1] "
                            f"(got {float(np.nanmin(a)):.3g} .. {float(np.nanmax(a)):.3g})")
        a = np.round(a * 255.0).astype(np.uint8)
    else:
        raise TaskError(f"an image array must be uint8 or float, got {a.dtype}")
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[a.shape[2] if a.ndim == 3 else 2]
    return _from_pil(Image.fromarray(np.ascontiguousarray(a), mode))


def load_rgb(image: ImageLike) -> Image.Image:
    """``image`` as an RGB PIL image (alpha composited on white, EXIF orientation applied to
    files). Raises :class:`pylstm.plugins.TaskError` on one line naming the file when it cannot
    be read."""
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            with Image.open(path) as img:
                img.load()  # decode now: a truncated file fails here, inside the try
                return _from_pil(ImageOps.exif_transpose(img))
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if isinstance(e, FileNotFoundError):
                reason = "no such file"
            elif isinstance(e, UnidentifiedImageError):
                reason = "not an image Pillow can read"
            elif isinstance(e, OSError) and e.strerror:  # without the path repeated
                reason = e.strerror
            raise TaskError(f"{path}: cannot read image ({reason})") from None
    raise TaskError(f"an image must be a path, a PIL image or an array, "
                    f"got {type(image).__name__}")


def preprocess(image: ImageLike, size: int = IMAGE_SIZE) -> np.ndarray:
    """One image as the network's input, float32 [3, size, size]: centre crop of
    :data:`CROP_FRACTION` of the shorter side, bicubic resize, ``(x - 127) / 128``."""
    img = load_rgb(image)
    w, h = img.size
    side = CROP_FRACTION * min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    # resize's box crops and resamples in one step (sub-pixel box, no double resampling)
    img = img.resize((size, size), Image.Resampling.BICUBIC,
                     box=(left, top, left + side, top + side))
    x = np.asarray(img, dtype=np.float32)
    return ((x - MEAN) / STD).transpose(2, 0, 1)


def as_batch(images: ImageLike | Sequence[ImageLike] | Iterable[ImageLike]) -> list[ImageLike]:
    """The images of ``images``: one image (path, PIL image, 2-D or 3-D array) becomes a list
    of one; a 4-D array [N, H, W, C] is N images; any other iterable is taken as a batch."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        return [images]
    try:
        return list(images)
    except TypeError:
        raise TaskError(f"images must be an image or a sequence of images, "
                        f"got {type(images).__name__}") from None
