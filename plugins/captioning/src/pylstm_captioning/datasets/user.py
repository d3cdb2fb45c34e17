"""The user's own captioned images: a folder plus Flickr8k token lines or COCO captions JSON.

* **Flickr8k / Flickr30k token format**: one caption a line, ``image.jpg#0<TAB>caption``
  (``#0``..``#4`` number an image's captions; blank lines are ignored).
* **COCO captions JSON** (``captions_train2014.json``): ``{"images": [{"id", "file_name"}, ...],
  "annotations": [{"image_id", "caption"}, ...]}``; other keys are ignored.

Image names are paths relative to ``images_dir``; any file Pillow opens, in any size or mode,
is loaded as 8-bit RGB (:func:`~.base.open_rgb`). The split is by image, seeded and
hash-seed independent (:func:`~.base.seeded_order`): the first ``valid_size`` images of that
order are valid, the next ``test_size`` test, the rest train.

With ``strict`` (the default) these are errors, each a one-line
:class:`~pylstm.plugins.TaskError` naming the file: a captions file naming images not in the
folder, images in the folder that have no caption, a malformed line (file and line number) or
entry, an empty folder, an image Pillow cannot open. ``strict=False`` skips the first two and
counts them in ``stats``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from pylstm.plugins import TaskError
from pylstm_captioning.datasets.base import (
    CaptionDataset,
    CaptionItem,
    clean_caption,
    resolve_split_sizes,
    seeded_order,
)

__all__ = ["image_extensions", "load_coco", "load_flickr", "parse_coco", "parse_flickr"]

_SHOW = 5  # names listed in an error before "and N more"


def image_extensions() -> frozenset[str]:
    """File suffixes (lower-case, with the dot) of the formats this Pillow can open."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _listing(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:_SHOW])
    return shown + (f" and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def _clip(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def parse_flickr(captions_file: Path | str) -> dict[str, list[str]]:
    """Captions by image name from a Flickr8k-style token file, in file order."""
    path = Path(captions_file)
    if not path.is_file():
        raise TaskError(f"{path}: expected a Flickr8k captions file, got no such file")
    captions: dict[str, list[str]] = {}
    try:
        with path.open(encoding="utf-8-sig") as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    continue
                key, tab, text = line.partition("\t")
                name, hash_, index = key.strip().rpartition("#")
                if not tab or not hash_ or not name or not index.isdigit():
                    raise TaskError(
                        f"{path} line {lineno}: expected 'image.jpg#N<TAB>caption', "
                        f"got {_clip(line)}"
                    )
                caption = clean_caption(text, lower=False)
                if not caption:
                    raise TaskError(
                        f"{path} line {lineno}: expected a caption after the tab, got nothing"
                    )
                captions.setdefault(name, []).append(caption)
    except UnicodeDecodeError as exc:
        raise TaskError(f"{path}: expected UTF-8 text, got {exc}") from exc
    if not captions:
        raise TaskError(f"{path}: expected 'image.jpg#N<TAB>caption' lines, got none")
    return captions


def parse_coco(captions_json: Path | str) -> dict[str, list[str]]:
    """Captions by image file name from a COCO captions JSON file, in ``images`` order.

    An image without annotations maps to an empty list (the loaders reject or skip it); an
    annotation of an id not among ``images`` is an error."""
    path = Path(captions_json)
    if not path.is_file():
        raise TaskError(f"{path}: expected a COCO captions JSON file, got no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise TaskError(
            f"{path} line {exc.lineno} column {exc.colno}: expected JSON, got {exc.msg}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise TaskError(f"{path}: expected UTF-8 JSON, got {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations")
    ):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise TaskError(
            f"{path}: expected an object with 'images' and 'annotations' lists, got {got}"
        )
    files: dict[Any, str] = {}
    for i, im in enumerate(data["images"]):
        ok = isinstance(im, dict) and isinstance(im.get("file_name"), str) and im["file_name"]
        ident = im.get("id") if isinstance(im, dict) else None
        if not ok or not isinstance(ident, (int, str)) or isinstance(ident, bool):
            raise TaskError(
                f"{path} images[{i}]: expected an object with an 'id' and a 'file_name', "
                f"got {_clip(json.dumps(im))}"
            )
        if im["id"] in files:
            raise TaskError(f"{path} images[{i}]: expected a new id, got {im['id']!r} again")
        files[im["id"]] = im["file_name"]
    captions: dict[str, list[str]] = {name: [] for name in files.values()}
    for i, ann in enumerate(data["annotations"]):
        ok = isinstance(ann, dict) and isinstance(ann.get("caption"), str) and "image_id" in ann
        if not ok:
            raise TaskError(
                f"{path} annotations[{i}]: expected an object with an 'image_id' and a "
                f"'caption' string, got {_clip(json.dumps(ann))}"
            )
        if ann["image_id"] not in files:
            raise TaskError(
                f"{path} annotations[{i}]: expected an image_id among images' ids, "
                f"got {ann['image_id']!r}"
            )
        caption = clean_caption(ann["caption"], lower=False)
        if not caption:
            raise TaskError(f"{path} annotations[{i}]: expected a caption, got an empty one")
        captions[files[ann["image_id"]]].append(caption)
    if not captions:
        raise TaskError(f"{path}: expected at least one image, got an empty 'images' list")
    return captions


def _assemble(
    images_dir: Path | str,
    captions: dict[str, list[str]],
    source: Path,
    kind: str,
    valid_size: int | float,
    test_size: int | float,
    seed: int,
    strict: bool,
    check_images: bool,
) -> CaptionDataset:
    root = Path(images_dir)
    if not root.is_dir():
        raise TaskError(f"images_dir {root}: expected a folder of images, got no such folder")
    exts = image_extensions()
    on_disk = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() in exts
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.is_file()
    }
    if not on_disk:
        raise TaskError(
            f"images_dir {root}: expected image files (.jpg, .png, ...), got an empty folder"
            if not any(root.iterdir())
            else f"images_dir {root}: expected image files (.jpg, .png, ...), got none"
        )
    named = {Path(name).as_posix(): name for name in captions}
    missing = [name for key, name in named.items() if not (root / key).is_file()]
    if missing and strict:
        raise TaskError(
            f"{source}: expected images in {root}, got {len(missing)} missing: "
            f"{_listing(missing)} (strict=False skips them)"
        )
    uncaptioned = sorted(on_disk - named.keys())
    if uncaptioned and strict:
        raise TaskError(
            f"images_dir {root}: expected a caption in {source.name} for every image, got "
            f"{len(uncaptioned)} without: {_listing(uncaptioned)} (strict=False skips them)"
        )
    bare = [name for name, caps in captions.items() if not caps]
    if bare and strict:
        raise TaskError(
            f"{source}: expected captions for every image, got {len(bare)} without: "
            f"{_listing(bare)} (strict=False skips them)"
        )
    uncaptioned += bare
    skip = set(missing) | set(bare)
    items = {
        key: CaptionItem(image_id=key, captions=list(captions[name]), path=root / key)
        for key, name in named.items()
        if name not in skip
    }
    if not items:
        raise TaskError(f"{source}: expected captions of images in {root}, got none that exist")
    if check_images:
        for key in items:
            try:  # the header only: cheap, and catches files that are no image at all
                with Image.open(root / key):
                    pass
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise TaskError(
                    f"{root / key}: expected an image Pillow can read, got {exc}"
                ) from exc
    n_valid, n_test = resolve_split_sizes(len(items), valid_size, test_size)
    order = seeded_order(items, seed)
    held_valid, held_test = set(order[:n_valid]), set(order[n_valid : n_valid + n_test])
    keys = list(items)
    data = CaptionDataset(
        train=[items[k] for k in keys if k not in held_valid and k not in held_test],
        valid=[items[k] for k in keys if k in held_valid],
        test=[items[k] for k in keys if k in held_test],
        description="",
    )
    n_captions = sum(len(it.captions) for it in items.values())
    data.stats = {
        "images": len(items),
        "captions": n_captions,
        "missing_images": len(missing),
        "uncaptioned_images": len(uncaptioned),
        "train": len(data.train),
        "valid": len(data.valid),
        "test": len(data.test),
        "seed": seed,
        "test_coverage_all": data.coverage("test"),
    }
    skipped = (
        f"; skipped {len(missing)} named but missing and {len(uncaptioned)} uncaptioned images"
        if missing or uncaptioned
        else ""
    )
    data.description = (
        f"{len(items)} images of {root} with {n_captions} captions ({kind}, {source.name})"
        f"{skipped}. Random split by image (seed {seed}): train {len(data.train)} / valid "
        f"{len(data.valid)} / test {len(data.test)}; test words in the training vocabulary: "
        f"{data.stats['test_coverage_all']:.1%}."
    )
    return data


def load_flickr(
    images_dir: Path | str,
    captions_file: Path | str,
    valid_size: int | float = 0.1,
    test_size: int | float = 0.1,
    seed: int = 0,
    strict: bool = True,
    check_images: bool = True,
) -> CaptionDataset:
    """Images of ``images_dir`` captioned by a Flickr8k token file (``image.jpg#0<TAB>text``).

    ``valid_size`` / ``test_size``: image counts (``int``) or shares (``float``).
    ``check_images`` opens each image's header once (decoding happens on
    :meth:`~.base.CaptionItem.load`). See the module docstring for ``strict`` and the errors.
    """
    source = Path(captions_file)
    captions = parse_flickr(source)
    return _assemble(
        images_dir, captions, source, "Flickr8k token format",
        valid_size, test_size, seed, strict, check_images,
    )  # fmt: skip


def load_coco(
    images_dir: Path | str,
    captions_json: Path | str,
    valid_size: int | float = 0.1,
    test_size: int | float = 0.1,
    seed: int = 0,
    strict: bool = True,
    check_images: bool = True,
) -> CaptionDataset:
    """Images of ``images_dir`` captioned by a COCO captions JSON file; arguments as
    :func:`load_flickr`. Item ids are the images' ``file_name``."""
    source = Path(captions_json)
    captions = parse_coco(source)
    return _assemble(
        images_dir, captions, source, "COCO captions JSON",
        valid_size, test_size, seed, strict, check_images,
    )  # fmt: skip
