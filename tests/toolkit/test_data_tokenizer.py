"""pylstm.data.Tokenizer on Hugging Face tokenizers: round trips, unknowns, save/load, errors."""

from __future__ import annotations

import itertools
import json
import unicodedata

import numpy as np
import pytest
import tokenizers

import pylstm
from pylstm.data import DEFAULT_SPECIALS, Tokenizer, pad
from pylstm.errors import CheckpointError

# Word lists joined by "|" (one string each keeps the corpus readable).
DE_SUBJECTS = (
    "Der Bär|Die Katze|Das Mädchen|Der Bäcker|Die Ärztin|Unser Großvater|Das Kind|"
    "Die Lehrerin|Mein Bruder|Die Müllerin"
).split("|")
DE_VERBS = "läuft|schläft|isst|liest|fährt|spielt|schreibt|trägt|öffnet|grüßt".split("|")
DE_TIMES = "heute|morgen früh|gestern Abend|oft|nie".split("|")
DE_OBJECTS = (
    "über die Straße|im Garten|einen Apfel|ein Buch|nach München|mit dem Hund|am Fluss|"
    "die Tür|einen Brief|in der Küche"
).split("|")
EN_SUBJECTS = (
    "The bear|The cat|The girl|The baker|The doctor|Our grandfather|The child|The teacher|"
    "My brother|The miller"
).split("|")
EN_VERBS = "runs|sleeps|eats|reads|drives|plays|writes|carries|opens|greets".split("|")
EN_TIMES = "today|tomorrow morning|last night|often|never".split("|")
EN_OBJECTS = (
    "across the street|in the garden|an apple|a book|to Munich|with the dog|by the river|"
    "the door|a letter|in the kitchen"
).split("|")
ENDINGS = [".", "!", "?", ", oder?", "; ja."]


def sentences(subjects, verbs, times, objects, endings=ENDINGS):
    for s, v, t, o, e in itertools.product(subjects, verbs, times, objects, endings):
        yield f"{s} {v} {t} {o}{e}"


def split_corpus(seed: int = 0, n_train: int = 400, n_test: int = 60):
    """German and English sentences; train and held-out sets that share no sentence."""
    rng = np.random.default_rng(seed)
    de = list(sentences(DE_SUBJECTS, DE_VERBS, DE_TIMES, DE_OBJECTS))
    en = list(sentences(EN_SUBJECTS, EN_VERBS, EN_TIMES, EN_OBJECTS, [".", "!", "?"]))
    de_idx, en_idx = rng.permutation(len(de)), rng.permutation(len(en))
    train = [de[i] for i in de_idx[:n_train]] + [en[i] for i in en_idx[:n_train]]
    train += ["„Ja“, sagte der Bär.", "Die Kinder sagen: „Grüß Gott!“"]
    # Every word appears in training somewhere, so held-out sentences are covered.
    train += [" ".join(DE_SUBJECTS + DE_VERBS + DE_TIMES + DE_OBJECTS)]
    train += [" ".join(EN_SUBJECTS + EN_VERBS + EN_TIMES + EN_OBJECTS)]
    test = [de[i] for i in de_idx[-n_test:]] + [en[i] for i in en_idx[-n_test:]]
    return train, test


TRAIN, HELD_OUT = split_corpus()
SUBWORD = ["bpe", "unigram"]


@pytest.fixture(scope="module")
def trained():
    """One tokenizer per model, trained once for the module."""
    return {
        "bpe": Tokenizer.train(TRAIN, model="bpe", vocab_size=300),
        "unigram": Tokenizer.train(TRAIN, model="unigram", vocab_size=300),
        "wordlevel": Tokenizer.train(TRAIN, model="wordlevel", vocab_size=1000),
    }


@pytest.mark.parametrize("model", SUBWORD)
def test_subword_round_trip_on_held_out_german_and_english(trained, model):
    tok = trained[model]
    assert set(HELD_OUT).isdisjoint(TRAIN)
    for text in HELD_OUT:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert all(0 <= i < tok.vocab_size for i in ids) and tok.unk_id not in ids
    # Real subwords were learned: far fewer ids than characters (Unigram, pruning from a
    # small corpus, keeps a smaller vocabulary than BPE).
    n_ids = sum(len(tok.encode(t)) for t in HELD_OUT)
    assert n_ids < 0.6 * sum(len(t) for t in HELD_OUT)


@pytest.mark.parametrize("model", SUBWORD)
def test_round_trip_gives_the_normalised_text(trained, model):
    tok = trained[model]
    decomposed = unicodedata.normalize("NFD", "Die Ärztin grüßt  den Bären\tüber die Straße!")
    assert decomposed != unicodedata.normalize("NFC", decomposed)
    norm = tok.normalize("  " + decomposed + " ")
    assert norm == "Die Ärztin grüßt den Bären über die Straße!"
    assert tok.decode(tok.encode(decomposed)) == norm
    # NFKC folds compatibility forms: the ligature "ﬁ" and full-width letters.
    assert tok.normalize("ﬁ Ｂär") == "fi Bär"
    assert tok.decode(tok.encode("„Ja“, sagte der Bär.")) == "„Ja“, sagte der Bär."


@pytest.mark.parametrize("model", SUBWORD)
def test_tokens_are_the_subword_strings(trained, model):
    tok = trained[model]
    text = HELD_OUT[0]
    pieces = tok.tokens(text)
    ids = tok.encode(text)
    assert len(pieces) == len(ids) > 1
    assert [tok.token_to_id(p) for p in pieces] == ids
    assert [tok.id_to_token(i) for i in ids] == pieces
    assert "".join(pieces).replace("▁", " ").strip() == text


@pytest.mark.parametrize("model", ["bpe", "unigram", "wordlevel"])
def test_unknown_characters_become_unk(trained, model):
    tok = trained[model]
    ids = tok.encode("Der Bär zahlt 5€ 🐻")
    assert tok.unk_id in ids
    assert "€" not in tok.decode(ids) and "🐻" not in tok.decode(ids)
    assert "<unk>" in tok.decode(ids, skip_specials=False)
    assert tok.token_to_id("€€€ not a token") == tok.unk_id
    assert "€€€ not a token" not in tok


@pytest.mark.parametrize("model", ["bpe", "unigram", "wordlevel"])
def test_specials_have_fixed_ids(trained, model):
    tok = trained[model]
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.specials == DEFAULT_SPECIALS
    assert [tok.token_to_id(s) for s in DEFAULT_SPECIALS] == [0, 1, 2, 3]
    assert [tok.id_to_token(i) for i in range(4)] == list(DEFAULT_SPECIALS)
    assert tok.encode("Der Bär") == tok.encode("Der Bär")  # no bos/eos added by encode
    assert tok.bos_id not in tok.encode("Der Bär") and tok.eos_id not in tok.encode("Der Bär")
    assert tok.model == model and len(tok) == tok.vocab_size
    assert tok.vocab_size <= (300 if model != "wordlevel" else 1000)


def test_extra_specials_follow_the_four():
    tok = Tokenizer.train(
        (t for t in TRAIN),  # any iterable, read once
        model="bpe",
        vocab_size=200,
        specials=["[PAD]", "[UNK]", "[BOS]", "[EOS]", "<2en>", "<2de>"],
    )
    assert tok.specials == ("[PAD]", "[UNK]", "[BOS]", "[EOS]", "<2en>", "<2de>")
    assert tok.token_to_id("<2de>") == 5 and tok.token_to_id("[UNK]") == tok.unk_id == 1
    assert tok.encode("<2de> Der Bär")[0] == 5
    assert tok.decode(tok.encode("<2de> Der Bär")) == "Der Bär"


def test_encode_batch_and_decode_batch_through_pad(trained):
    tok = trained["bpe"]
    texts = HELD_OUT[:7] + [""]
    batch = tok.encode_batch(texts)
    assert batch == [tok.encode(t) for t in texts]
    assert batch[-1] == []
    padded = pad(batch, tok.pad_id, add_bos=True, add_eos=True)
    assert tok.decode_batch(padded.ids) == texts
    assert tok.decode_batch(batch) == texts


def test_wordlevel_splits_words_and_punctuation(trained):
    tok = trained["wordlevel"]
    assert tok.tokens("Der Bär, oder?") == ["Der", "Bär", ",", "oder", "?"]
    assert tok.decode(tok.encode("Der Bär, oder?")) == "Der Bär , oder ?"
    text = HELD_OUT[1]
    assert tok.decode(tok.encode(text)) == " ".join(tok.tokens(text))


def test_wordlevel_vocab_size_and_min_frequency_keep_frequent_words():
    texts = ["Mary went to the kitchen .", "John went to the garden .", "Where is Mary ?"] * 3
    texts += ["Sandra journeyed to the hallway ."]
    small = Tokenizer.train(texts, model="wordlevel", vocab_size=4 + 3)
    assert {small.id_to_token(i) for i in range(4, 7)} == {"to", "the", "."}
    frequent = Tokenizer.train(texts, model="wordlevel", min_frequency=2)
    assert "Mary" in frequent and "Sandra" not in frequent
    assert frequent.encode("Sandra went")[0] == frequent.unk_id


def test_lowercase_option():
    tok = Tokenizer.train(TRAIN, model="wordlevel", lowercase=True)
    assert tok.normalize("Der BÄR") == "der bär"
    assert tok.encode("DER BÄR") == tok.encode("der bär")
    assert tok.unk_id not in tok.encode("DER BÄR")


def test_from_vocabulary_for_answers():
    answers = Tokenizer.from_vocabulary(["kitchen", "garden", "yes", "no", "kitchen", "<unk>"])
    assert answers.vocab_size == 8 and answers.model == "wordlevel"
    assert [answers.token_to_id(w) for w in ["kitchen", "garden", "yes", "no"]] == [4, 5, 6, 7]
    assert answers.encode("garden") == [5]
    assert answers.encode("the garden ?") == [answers.unk_id, 5, answers.unk_id]
    assert answers.token_to_id("hallway") == answers.unk_id and "hallway" not in answers
    assert "kitchen" in answers
    lower = Tokenizer.from_vocabulary(["Kitchen", "kitchen"], lowercase=True)
    assert lower.vocab_size == 5 and lower.encode("KITCHEN") == [4]
    with pytest.raises(pylstm.LstmValueError, match=r"words\[1\].*'apple,football'.*split_punct"):
        Tokenizer.from_vocabulary(["milk", "apple,football"])
    lists = Tokenizer.from_vocabulary(["milk", "apple,football"], split_punctuation=False)
    assert lists.encode("apple,football") == [5]
    with pytest.raises(pylstm.LstmValueError, match=r"words\[0\]: expected a single token"):
        Tokenizer.from_vocabulary(["two words"], split_punctuation=False)
    with pytest.raises(pylstm.LstmValueError, match=r"words\[0\]: expected a single token"):
        Tokenizer.from_vocabulary(["  "])
    with pytest.raises(pylstm.LstmValueError, match=r"words: expected at least one word"):
        Tokenizer.from_vocabulary([])


@pytest.mark.parametrize("model", ["bpe", "unigram", "wordlevel", "vocabulary"])
def test_save_load_round_trip(trained, tmp_path, model):
    tok = (
        Tokenizer.from_vocabulary(["yes", "no", "Bär"]) if model == "vocabulary" else trained[model]
    )
    path = tmp_path / "sub" / "tokenizer.json"
    path.parent.mkdir()
    tok.save(path)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    back = Tokenizer.load(path)
    assert back.model == tok.model and back.vocab_size == tok.vocab_size
    assert back.specials == tok.specials
    assert (back.pad_id, back.unk_id, back.bos_id, back.eos_id) == (0, 1, 2, 3)
    probes = HELD_OUT + ["Der Bär zahlt 5€ 🐻", "", "  Ärztin\tgrüßt ", "<eos> Der Bär <pad>"]
    assert back.encode_batch(probes) == tok.encode_batch(probes)
    assert [back.tokens(p) for p in probes] == [tok.tokens(p) for p in probes]
    ids = tok.encode_batch(probes)
    assert back.decode_batch(ids) == tok.decode_batch(ids)
    assert [back.id_to_token(i) for i in range(back.vocab_size)] == [
        tok.id_to_token(i) for i in range(tok.vocab_size)
    ]
    # It is the standard tokenizers file: the library itself reads it and agrees.
    plain = tokenizers.Tokenizer.from_file(str(path))
    assert [e.ids for e in plain.encode_batch(probes, add_special_tokens=False)] == ids


def test_load_errors_name_the_file(tmp_path, trained):
    assert issubclass(CheckpointError, (pylstm.PylstmError, ValueError))
    missing = tmp_path / "nope.json"
    with pytest.raises(CheckpointError, match=r"nope\.json.*not found"):
        Tokenizer.load(missing)
    good = tmp_path / "good.json"
    trained["bpe"].save(good)
    truncated = tmp_path / "truncated.json"
    truncated.write_text(good.read_text(encoding="utf-8")[:500], encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"truncated\.json.*not a valid tokenizers"):
        Tokenizer.load(truncated)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CheckpointError, match=r"binary\.json.*UTF-8"):
        Tokenizer.load(binary)
    not_tokenizer = tmp_path / "other.json"
    not_tokenizer.write_text(json.dumps({"weights": [1, 2, 3]}), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"other\.json.*not a valid tokenizers"):
        Tokenizer.load(not_tokenizer)
    foreign = tmp_path / "foreign.json"
    hf = tokenizers.Tokenizer(tokenizers.models.WordLevel({"a": 0, "b": 1}, unk_token="b"))
    hf.save(str(foreign))
    with pytest.raises(CheckpointError, match=r"foreign\.json.*special tokens.*ids 0-3"):
        Tokenizer.load(foreign)
    with pytest.raises(CheckpointError, match=r"tmp.*not valid|cannot be read"):
        Tokenizer.load(tmp_path)  # a directory
    with pytest.raises(pylstm.DTypeError, match=r"path: expected a str or os.PathLike, got int"):
        Tokenizer.load(5)
    with pytest.raises(pylstm.DTypeError, match=r"path: expected a str or os.PathLike, got None"):
        trained["bpe"].save(None)


@pytest.mark.parametrize(
    ("texts", "kwargs", "exc", "pattern"),
    [
        ([], {}, pylstm.LstmValueError, r"texts: expected at least one non-empty text, got 0"),
        (["", "  \n"], {}, pylstm.LstmValueError, r"texts: .*non-empty text, got 2 text\(s\) all"),
        ("Der Bär läuft.", {}, pylstm.DTypeError, r"texts: expected an iterable of str, got a sin"),
        (["ok", 5], {}, pylstm.DTypeError, r"texts\[1\]: expected a str, got int"),
        (5, {}, pylstm.DTypeError, r"texts: expected an iterable of str, got int"),
        (TRAIN, {"vocab_size": 4}, pylstm.LstmValueError, r"vocab_size: expected more than the 4"),
        (TRAIN, {"vocab_size": 2}, pylstm.LstmValueError, r"vocab_size: .*4 special.*got 2"),
        (TRAIN, {"vocab_size": 1e4}, pylstm.DTypeError, r"vocab_size: expected an int, got float"),
        (TRAIN, {"model": "bpf"}, pylstm.LstmValueError, r"model: expected one of .*got 'bpf'"),
        (
            TRAIN,
            {"model": "unigram", "min_frequency": 2},
            pylstm.LstmValueError,
            r"min_frequency: not a setting of model='unigram'",
        ),
        (TRAIN, {"min_frequency": -1}, pylstm.LstmValueError, r"min_frequency: .*>= 0, got -1"),
        (
            TRAIN,
            {"model": "unigram", "vocab_size": 20},
            pylstm.LstmValueError,
            r"vocab_size: model='unigram' needs room for every character.*got 20",
        ),
        (TRAIN, {"lowercase": "yes"}, pylstm.DTypeError, r"lowercase: expected a bool, got str"),
        (
            TRAIN,
            {"specials": ["<pad>", "<unk>", "<bos>"]},
            pylstm.LstmValueError,
            r"specials: expected at least the 4 tokens",
        ),
        (
            TRAIN,
            {"specials": ["a", "b", "c", "a"]},
            pylstm.LstmValueError,
            r"specials: expected distinct tokens",
        ),
        (TRAIN, {"specials": ["a", "", "c", "d"]}, pylstm.LstmValueError, r"specials\[1\]"),
    ],
)
def test_train_bad_input(texts, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        Tokenizer.train(texts, **kwargs)


def test_encode_decode_bad_input(trained):
    tok = trained["bpe"]
    with pytest.raises(pylstm.DTypeError, match=r"text: expected a str, got bytes"):
        tok.encode("Der Bär".encode())
    with pytest.raises(pylstm.DTypeError, match=r"texts: expected an iterable of str, got a sin"):
        tok.encode_batch("Der Bär")
    with pytest.raises(pylstm.LstmValueError, match=r"ids\[1\]: expected an id below vocab_size"):
        tok.decode([5, tok.vocab_size])
    with pytest.raises(pylstm.LstmValueError, match=r"ids\[0\]: expected id >= 0, got -1"):
        tok.decode([-1])
    with pytest.raises(pylstm.DTypeError, match=r"ids\[0\]: expected an int id, got float"):
        tok.decode([1.0])
    with pytest.raises(pylstm.LstmValueError, match=r"sequences\[1\]\[0\]: expected an id below"):
        tok.decode_batch([[4], [10**6]])
    with pytest.raises(pylstm.LstmValueError, match=r"id: expected an id below vocab_size"):
        tok.id_to_token(tok.vocab_size)
    with pytest.raises(pylstm.DTypeError, match=r"token: expected a str, got int"):
        tok.token_to_id(5)
    with pytest.raises(pylstm.DTypeError, match=r"hf_tokenizer: expected a tokenizers.Tokenizer"):
        Tokenizer("not a tokenizer")
