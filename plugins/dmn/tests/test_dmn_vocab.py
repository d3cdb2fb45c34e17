"""Words to ids: the vocabulary, list answers as word sequences, the fact window, batches,
stories given as text or lists, and the options' one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from pylstm_dmn.babi import parse_babi
from pylstm_dmn.options import AnswerRequest, DMNOptions, parse_tasks
from pylstm_dmn.predictor import story_sentences
from pylstm_dmn.task import split_validation
from pylstm_dmn.vocab import END, Vocab, encode, make_batch

from pylstm.plugins import TaskError

TEXT = ("1 Mary picked up the milk.\n2 Mary got the apple there.\n"
        "3 What is Mary carrying? \tmilk,apple\t1 2\n4 Mary went to the Kitchen.\n"
        "5 Where is Mary? \tkitchen\t4\n")


def test_vocabulary_and_list_answers() -> None:
    samples = parse_babi(TEXT, 8)
    vocab = Vocab.build(samples)
    assert vocab.words[:4] == ["<pad>", "<unk>", "<bos>", "<end>"]
    assert "kitchen" in vocab.index and "." not in vocab.index and "?" not in vocab.index
    enc = encode(samples, vocab, 2, 50)
    assert vocab.decode_answer(enc[0].answer) == ["milk", "apple"]
    assert enc[1].answer[1] == END and vocab.decode_answer(enc[1].answer) == ["kitchen"]
    assert enc[1].support == (2,) and len(enc[1].facts) == 3
    assert Vocab.from_json(vocab.to_json(), "v").words == vocab.words


def test_the_fact_window_keeps_the_last_statements_and_shifts_support() -> None:
    samples = parse_babi(TEXT, 8)
    vocab = Vocab.build(samples)
    enc = encode(samples, vocab, 2, max_facts=1)
    assert enc[1].support == (0,) and len(enc[1].facts) == 1
    assert enc[0].support == (0,)  # fact 1 fell out of the window, fact 2 is now index 0
    batch = make_batch(enc)
    assert batch.facts.shape[:2] == (2, 1) and batch.fact_mask.all()


def test_unknown_words_read_as_unk_but_unknown_answers_are_errors() -> None:
    vocab = Vocab.build(parse_babi(TEXT, 8))
    assert vocab.ids(["mary", "zebra"])[1] == 1 and vocab.unknown(["zebra", "mary"]) == ["zebra"]
    with pytest.raises(TaskError, match="'zebra'"):
        vocab.answer_ids(["zebra"], 1, "q")
    with pytest.raises(TaskError, match="at most 1 words"):
        vocab.answer_ids(["milk", "apple"], 1, "q")


def test_batches_pad_facts_words_and_questions() -> None:
    samples = parse_babi(TEXT, 8)
    vocab = Vocab.build(samples)
    b = make_batch(encode(samples, vocab, 2, 50))
    assert b.facts.shape == (2, 3, 5) and b.n_facts.tolist() == [2, 3]
    assert np.all(b.facts[0, 2] == 0) and b.q_len.tolist() == [4, 3]


def test_stories_as_text_with_ids_or_as_lists() -> None:
    assert story_sentences("1 Mary went home.\n\n2 John left. Sandra came.") == [
        "Mary went home.", "John left.", "Sandra came."]
    assert story_sentences(["A b.", " C d. "]) == ["A b.", "C d."]
    for bad, msg in (("", "at least one"), ("1 Mary.\n2 Where? \tx\t1", "question line"),
                     ("3\n", "story line 1"), ([""], "story\\[0\\]"), (3, "text or a list")):
        with pytest.raises(TaskError, match=msg):
            story_sentences(bad)


def test_validation_holds_out_whole_stories() -> None:
    samples = parse_babi(TEXT * 20, 8)
    train, valid = split_validation(samples, 0.1, 0)
    assert len(valid) == 2 * 2 and len(train) + len(valid) == len(samples)
    assert not {s.story_id for s in train} & {s.story_id for s in valid}


def test_options_name_the_flag() -> None:
    assert parse_tasks("all") == list(range(1, 21)) and parse_tasks("3,1-2") == [1, 2, 3]
    for text in ("0", "x", "1,22", "5-3"):
        with pytest.raises(TaskError, match="--tasks"):
            parse_tasks(text)
    with pytest.raises(TaskError, match="--passes"):
        DMNOptions(passes=0)
    with pytest.raises(TaskError, match="--valid-share"):
        DMNOptions(valid_share=1.0)
    with pytest.raises(TaskError, match="--question"):
        AnswerRequest(text="Mary went home.")
    with pytest.raises(TaskError, match="exactly one"):
        AnswerRequest(question="Where?")
