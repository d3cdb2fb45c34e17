"""Caption datasets: emoji parsing, rendering and grouped split; Flickr8k and COCO folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pylstm_captioning.datasets import (
    CaptionDataset,
    EmojiItem,
    audit_emoji,
    caption_tokens,
    caption_words,
    emoji_bases,
    is_blank,
    load_coco,
    load_emoji,
    load_flickr,
    normalize_caption,
    parse_annotations,
    parse_emoji_test,
    render_emoji,
)
from pylstm_captioning.datasets.emoji import FONT
from pylstm_captioning.datasets.emoji_split import ancestors, hold_out
from pylstm_captioning.datasets.unicode_data import ANNOTATIONS_EN, EMOJI_TEST

from pylstm.plugins import TaskError

needs_unicode = pytest.mark.skipif(
    not (FONT.is_file() and EMOJI_TEST.is_file() and ANNOTATIONS_EN.is_file()),
    reason="Debian fonts-noto-color-emoji, unicode-data and unicode-cldr-core not installed",
)

KOSOVO = "\U0001f1fd\U0001f1f0"
NUT_AND_BOLT = "\U0001f529"
WOMAN_KNEELING_MEDIUM = "\U0001f9ce\U0001f3fd\u200d\u2640\ufe0f"
FRANCE, ST_MARTIN, CLIPPERTON = (
    "\U0001f1eb\U0001f1f7",
    "\U0001f1f2\U0001f1eb",
    "\U0001f1e8\U0001f1f5",
)
NOT_IN_FONT = "\U0001fae9"  # Emoji 15.1 (after this font's data): a blank drawing


@pytest.fixture(scope="module")
def entries():
    return parse_emoji_test()


@pytest.fixture(scope="module")
def emoji_data(tmp_path_factory) -> CaptionDataset:
    # glyph-box check: no pixels drawn for the 3,655 emoji; items render on load()
    return load_emoji(tmp_path_factory.mktemp("emoji-cache"), seed=0, audit=False)


# ---------------------------------------------------------------- emoji: names and captions


def test_caption_normalisation():
    assert normalize_caption("Woman’s  hat: Medium-light skin tone, St. Lucia!") == (
        "woman's hat : medium-light skin tone , st . lucia !"
    )
    assert caption_tokens("A dog_runs") == ["a", "dog", "_", "runs"]
    assert caption_words("flag: St. Vincent & Grenadines") == [
        "flag", "st", "vincent", "grenadines",
    ]  # fmt: skip


@needs_unicode
def test_emoji_test_counts(entries):
    assert 3000 <= len(entries) <= 4000
    assert len({e.emoji for e in entries}) == len(entries)
    assert len({e.group for e in entries}) >= 9
    names = {e.name for e in entries}
    assert {"nut and bolt", "flag: Kosovo", "woman kneeling: medium skin tone"} <= names
    assert all("\ufe0f" != e.emoji[-1] or len(e.emoji) > 1 for e in entries)


@needs_unicode
def test_known_captions_and_references(emoji_data):
    items = {it.emoji: it for split in ("train", "valid", "test") for it in emoji_data.split(split)}
    assert items[NUT_AND_BOLT].captions == ["nut and bolt", "bolt", "nut", "tool"]
    assert items[KOSOVO].captions == ["flag: kosovo", "flag"]
    kneel = items[WOMAN_KNEELING_MEDIUM]
    assert kneel.captions[0] == "woman kneeling: medium skin tone"
    assert {"kneeling", "woman", "medium skin tone"} <= set(kneel.captions[1:])
    assert all(c == c.lower() for it in items.values() for c in it.captions)
    annotations = parse_annotations()
    assert annotations["\U0001f529"].tts == "nut and bolt"


@needs_unicode
def test_bases(entries):
    name = {e.emoji: e.name for e in entries}
    by_name = {e.name: e.emoji for e in entries}
    bases = emoji_bases(entries)

    def chain(n):
        return [name[a] for a in ancestors(by_name[n], bases)]

    assert chain("woman kneeling: medium skin tone") == ["woman kneeling", "person kneeling"]
    assert chain("man: light skin tone, red hair")[:2] == ["man: red hair", "person: red hair"]
    assert chain("woman office worker") == ["office worker"]
    assert chain("family: man, woman, boy") == ["family"]
    assert chain("women holding hands: light skin tone, dark skin tone") == ["women holding hands"]
    assert bases[by_name["flag: Kosovo"]] is None and bases[by_name["nut and bolt"]] is None


# ---------------------------------------------------------------- emoji: rendering


@needs_unicode
def test_rendered_emoji_has_colour():
    image = render_emoji("\U0001f600", size=224)  # grinning face
    assert image.size == (224, 224) and image.mode == "RGB"
    assert not is_blank(image)
    a = np.asarray(image).astype(int)
    assert (a.max(-1) - a.min(-1)).max() > 150  # saturated yellow, not gray
    assert (a[0, 0] == 255).all() and (a[-1, -1] == 255).all()  # white canvas around
    assert not is_blank(render_emoji(WOMAN_KNEELING_MEDIUM, size=64))
    assert is_blank(render_emoji(NOT_IN_FONT, size=64))


@needs_unicode
def test_item_renders_lazily_into_cache(emoji_data):
    item = emoji_data.test[0]
    assert isinstance(item, EmojiItem) and not item.path.exists()
    first = item.load()
    assert item.path.is_file() and first.size == (224, 224)
    assert np.array_equal(np.asarray(first), np.asarray(item.load()))  # now from the PNG


@needs_unicode
def test_audit_sample_finds_blank_and_identical():
    found = audit_emoji([FRANCE, ST_MARTIN, CLIPPERTON, KOSOVO, NOT_IN_FONT, NUT_AND_BOLT])
    assert found.blank == [NOT_IN_FONT]
    assert [sorted(g) for g in found.identical] == [sorted([FRANCE, ST_MARTIN, CLIPPERTON])]


@needs_unicode
def test_load_emoji_with_audit_skips_and_keeps_identical_in_train(tmp_path, entries):
    pick = {FRANCE, ST_MARTIN, CLIPPERTON, "\U0001f1f0\U0001f1f7", "\U0001f1f0\U0001f1f5"}
    kneel = {e.emoji for e in entries if "kneeling" in e.name}
    keep = [e for e in entries if e.emoji in pick | kneel]
    lines = [f"{' '.join(f'{ord(c):X}' for c in e.emoji)} ; fully-qualified # {e.emoji} "
             f"E{e.version} {e.name}" for e in keep]  # fmt: skip
    lines.append("1FAE9 ; fully-qualified # \U0001fae9 E15.1 hairy creature")
    small = tmp_path / "emoji-test.txt"
    small.write_text("# group: Test\n# subgroup: test\n" + "\n".join(lines) + "\n", "utf-8")
    data = load_emoji(tmp_path / "cache", valid_size=2, test_size=2, emoji_test=small)
    assert data.stats["fully_qualified"] == len(keep) + 1
    assert data.stats["skipped"] == 1 and data.stats["skipped_names"] == ["hairy creature"]
    assert "1 skipped" in data.description
    train = {it.emoji for it in data.train}
    assert {FRANCE, ST_MARTIN, CLIPPERTON} <= train
    assert data.stats["identical_groups"] == [["flag: Clipperton Island", "flag: France",
                                               "flag: St. Martin"]]  # fmt: skip


# ---------------------------------------------------------------- emoji: the split


@needs_unicode
def test_split_sizes_and_grouping_rule(emoji_data, entries):
    train, valid, test = emoji_data.train, emoji_data.valid, emoji_data.test
    assert (len(valid), len(test)) == (300, 300)
    ids = [it.image_id for it in train + valid + test]
    assert len(ids) == len(set(ids)) == emoji_data.stats["renderable"]
    in_train = {it.emoji for it in train}
    train_words = {w for it in train for w in caption_words(it.name)}
    bases = emoji_bases(entries)
    for it in valid + test:
        assert it.base is not None or ": " in it.name
        assert all(a in in_train for a in ancestors(it.emoji, bases)), it.name
        assert set(caption_words(it.name)) <= train_words, it.name
    assert emoji_data.stats["test_coverage_names"] == 1.0
    assert emoji_data.stats["test_coverage_all"] >= 0.9
    kinds = {"flag" if it.name.startswith("flag:") else "skin" if "skin tone" in it.name
             else "other" for it in test}  # fmt: skip
    assert kinds == {"flag", "skin", "other"}


@needs_unicode
def test_split_is_deterministic(entries, emoji_data):
    assert hold_out(entries, 300, 300, seed=0) == hold_out(entries, 300, 300, seed=0)
    assert hold_out(entries, 300, 300, seed=0) != hold_out(entries, 300, 300, seed=1)
    assert [it.emoji for it in emoji_data.test] == hold_out(entries, 300, 300, seed=0)[2]
    code = (
        "from pylstm_captioning.datasets import parse_emoji_test, hold_out\n"
        "print(hold_out(parse_emoji_test(), 50, 50, seed=3)[2])"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout  # fmt: skip
        for seed in ("1", "2")
    }
    assert len(outs) == 1


@needs_unicode
def test_emoji_errors(tmp_path, entries):
    with pytest.raises(TaskError, match=r"valid_size \+ test_size: expected at most \d+"):
        hold_out(entries, 1500, 1500, seed=0)
    with pytest.raises(TaskError, match="valid_size: expected a share in"):
        load_emoji(tmp_path, valid_size=1.5, audit=False)
    with pytest.raises(TaskError, match=r"nofont\.ttf: expected the Noto Color Emoji font"):
        load_emoji(tmp_path, font_path=tmp_path / "nofont.ttf", audit=False)
    bad = tmp_path / "emoji-test.txt"
    bad.write_text("# group: X\n1F600 ; fully-qualified # \U0001f600 E1.0 grinning face\n"
                   "1F603 fully-qualified\n", "utf-8")  # fmt: skip
    with pytest.raises(TaskError, match=r"emoji-test\.txt line 3: expected 'code points"):
        parse_emoji_test(bad)


# ---------------------------------------------------------------- the user's own images


def _write_images(folder: Path) -> dict[str, tuple[int, int]]:
    """Small images in several formats, modes and odd sizes; name -> (width, height)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    made = {}

    def save(name, image, **kw):
        image.save(folder / name, **kw)
        made[name] = image.size

    save("rgb.jpg", Image.fromarray(rng.integers(0, 255, (53, 37, 3), dtype=np.uint8)))
    save("gray.png", Image.fromarray(rng.integers(0, 255, (17, 91), dtype=np.uint8), "L"))
    rgba = np.zeros((30, 41, 4), dtype=np.uint8)
    rgba[:, :20] = (255, 0, 0, 255)  # left opaque red, right fully transparent
    save("alpha.png", Image.fromarray(rgba, "RGBA"))
    save("palette.gif", Image.new("P", (9, 13), 3))
    deep = (rng.integers(0, 65535, (12, 20))).astype(np.uint16)
    save("deep16.png", Image.fromarray(deep))
    (folder / "sub").mkdir(exist_ok=True)
    save("sub/cmyk.jpg", Image.new("CMYK", (25, 25), (0, 255, 255, 0)))
    return made


def _flickr_lines(names, per_image=3):
    return "".join(
        f"{name}#{k}\tA picture of {name.split('.')[0]} number {k} .\n"
        for name in names
        for k in range(per_image)
    )


def test_flickr_images_of_every_kind(tmp_path):
    made = _write_images(tmp_path / "images")
    captions = tmp_path / "Flickr8k.token.txt"
    captions.write_text(_flickr_lines(made) + "\n", "utf-8")
    data = load_flickr(tmp_path / "images", captions, valid_size=1, test_size=1, seed=0)
    items = data.train + data.valid + data.test
    assert (len(data.train), len(data.valid), len(data.test)) == (len(made) - 2, 1, 1)
    assert data.stats["captions"] == 3 * len(made)
    for item in items:
        image = item.load()
        assert image.mode == "RGB" and image.size == made[item.image_id]
        assert item.captions[0].startswith("A picture of")
    alpha = np.asarray(next(it for it in items if it.image_id == "alpha.png").load())
    assert (alpha[:, :20] == (255, 0, 0)).all() and (alpha[:, 25:] == 255).all()  # on white
    deep = np.asarray(next(it for it in items if it.image_id == "deep16.png").load())
    assert deep.min() == 0 and deep.max() == 255
    again = load_flickr(tmp_path / "images", captions, valid_size=1, test_size=1, seed=0)
    assert [it.image_id for it in again.test] == [it.image_id for it in data.test]


def test_coco_images_and_float_sizes(tmp_path):
    made = _write_images(tmp_path / "images")
    names = sorted(made)
    doc = {
        "info": {"description": "generated"},
        "images": [{"id": 100 + i, "file_name": n, "width": 1} for i, n in enumerate(names)],
        "annotations": [
            {"id": j, "image_id": 100 + i, "caption": f" Image {n}  caption {j}\n"}
            for i, n in enumerate(names)
            for j in range(2)
        ],
    }
    path = tmp_path / "captions_val.json"
    path.write_text(json.dumps(doc), "utf-8")
    data = load_coco(tmp_path / "images", path, valid_size=0.2, test_size=0.2)
    assert len(data.valid) == len(data.test) == round(0.2 * len(names))
    item = (data.train + data.valid + data.test)[0]
    assert item.captions == [f"Image {item.image_id} caption 0", f"Image {item.image_id} caption 1"]
    assert item.load().size == made[item.image_id]
    assert "COCO captions JSON" in data.description


def test_user_errors_missing_unreadable_empty_uncaptioned(tmp_path):
    made = _write_images(tmp_path / "images")
    captions = tmp_path / "captions.txt"
    ghosts = [f"ghost{i}.jpg" for i in range(7)]
    captions.write_text(_flickr_lines(list(made) + ghosts), "utf-8")
    with pytest.raises(TaskError, match=r"captions\.txt: expected images in .*, got 7 missing: "
                       r"ghost0\.jpg, ghost1\.jpg, .* and 2 more"):  # fmt: skip
        load_flickr(tmp_path / "images", captions)
    relaxed = load_flickr(tmp_path / "images", captions, valid_size=1, test_size=1, strict=False)
    assert relaxed.stats["missing_images"] == 7 and relaxed.stats["images"] == len(made)

    captions.write_text(_flickr_lines(list(made)[1:]), "utf-8")
    with pytest.raises(TaskError, match=r"expected a caption in captions\.txt for every image, "
                       r"got 1 without: rgb\.jpg"):  # fmt: skip
        load_flickr(tmp_path / "images", captions)

    (tmp_path / "images" / "broken.png").write_text("not a png", "utf-8")
    captions.write_text(_flickr_lines(list(made) + ["broken.png"]), "utf-8")
    with pytest.raises(TaskError, match=r"broken\.png: expected an image Pillow can read"):
        load_flickr(tmp_path / "images", captions)

    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskError, match=r"images_dir .*empty: expected image files .* empty"):
        load_flickr(tmp_path / "empty", captions)
    with pytest.raises(TaskError, match=r"images_dir .*nowhere: expected a folder"):
        load_flickr(tmp_path / "nowhere", captions)


def test_truncated_image_fails_on_load(tmp_path):
    folder = tmp_path / "images"
    _write_images(folder)
    whole = (folder / "rgb.jpg").read_bytes()
    (folder / "rgb.jpg").write_bytes(whole[: len(whole) // 3])
    captions = tmp_path / "c.txt"
    captions.write_text(_flickr_lines(sorted(p.name for p in folder.glob("*.*"))
                                      + ["sub/cmyk.jpg"]), "utf-8")  # fmt: skip
    data = load_flickr(folder, captions, valid_size=0, test_size=0)  # header still reads
    item = next(it for it in data.train if it.image_id == "rgb.jpg")
    with pytest.raises(TaskError, match=r"rgb\.jpg: expected an image Pillow can read"):
        item.load()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.jpg#0\tfine\nno tab here\n", r" line 2: expected 'image\.jpg#N<TAB>caption', got "),
        ("a.jpg\tno index\n", r" line 1: expected 'image\.jpg#N<TAB>caption'"),
        ("a.jpg#x\tbad index\n", r" line 1: expected"),
        ("\n\na.jpg#0\t   \n", r" line 3: expected a caption after the tab"),
        ("\n\n", r": expected 'image\.jpg#N<TAB>caption' lines, got none"),
    ],
)
def test_flickr_malformed_lines(tmp_path, text, message):
    _write_images(tmp_path / "images")
    captions = tmp_path / "tokens.txt"
    captions.write_text(text, "utf-8")
    with pytest.raises(TaskError, match=r"tokens\.txt" + message):
        load_flickr(tmp_path / "images", captions)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ('{"images": [', r" line 1 column \d+: expected JSON"),
        ('{"images": []}', r": expected an object with 'images' and 'annotations' lists"),
        ('{"images": [{"file_name": "rgb.jpg"}], "annotations": []}',
         r" images\[0\]: expected an object with an 'id' and a 'file_name'"),
        ('{"images": [{"id": 1, "file_name": "rgb.jpg"}], '
         '"annotations": [{"image_id": 2, "caption": "x"}]}',
         r" annotations\[0\]: expected an image_id among images' ids, got 2"),
        ('{"images": [{"id": 1, "file_name": "rgb.jpg"}], "annotations": [{"image_id": 1}]}',
         r" annotations\[0\]: expected an object with an 'image_id' and a 'caption'"),
        ('{"images": [{"id": 1, "file_name": "rgb.jpg"}, {"id": 1, "file_name": "gray.png"}], '
         '"annotations": []}', r" images\[1\]: expected a new id, got 1 again"),
    ],
)  # fmt: skip
def test_coco_malformed(tmp_path, doc, message):
    _write_images(tmp_path / "images")
    path = tmp_path / "caps.json"
    path.write_text(doc, "utf-8")
    with pytest.raises(TaskError, match=r"caps\.json" + message):
        load_coco(tmp_path / "images", path)


def test_coco_image_without_captions(tmp_path):
    made = _write_images(tmp_path / "images")
    names = sorted(made)
    doc = {
        "images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
        "annotations": [{"image_id": i, "caption": "c"} for i in range(1, len(names))],
    }
    path = tmp_path / "caps.json"
    path.write_text(json.dumps(doc), "utf-8")
    with pytest.raises(TaskError, match=rf"caps\.json: expected captions for every image, got 1 "
                       rf"without: {names[0]}"):  # fmt: skip
        load_coco(tmp_path / "images", path)
    data = load_coco(tmp_path / "images", path, valid_size=1, test_size=1, strict=False)
    assert data.stats["uncaptioned_images"] == 1 and data.stats["images"] == len(names) - 1


def test_split_size_errors(tmp_path):
    made = _write_images(tmp_path / "images")
    captions = tmp_path / "c.txt"
    captions.write_text(_flickr_lines(made), "utf-8")
    with pytest.raises(TaskError, match=r"valid_size \+ test_size: expected fewer than the 6"):
        load_flickr(tmp_path / "images", captions, valid_size=3, test_size=3)
    with pytest.raises(TaskError, match=r"test_size: expected a count >= 0, got -1"):
        load_flickr(tmp_path / "images", captions, test_size=-1)
    with pytest.raises(TaskError, match=r"valid_size: expected an int count or a float share"):
        load_flickr(tmp_path / "images", captions, valid_size="10%")  # type: ignore[arg-type]
