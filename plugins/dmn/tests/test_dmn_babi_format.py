"""The bAbI text format (parser and writer, byte for byte), the task files and load_tasks, and
their one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pylstm_dmn.babi import (
    TASK_NAMES,
    Question,
    Story,
    format_babi,
    generate,
    load_tasks,
    parse_babi,
    read_task_file,
    task_file_name,
    tokenize,
    write_tasks,
)

from pylstm.plugins import TaskError

# Hand-written in the published layout: a space before the first tab, support ids by spaces,
# list answers joined by ",", capitalised names in answers, two stories.
PUBLISHED = (
    "1 Mary moved to the bathroom.\n"
    "2 John went to the hallway.\n"
    "3 Where is Mary? \tbathroom\t1\n"
    "4 Daniel went back to the hallway.\n"
    "5 Sandra moved to the garden.\n"
    "6 Where is Daniel? \thallway\t4\n"
    "1 Mary got the milk there.\n"
    "2 Mary passed the milk to Fred.\n"
    "3 Who received the milk? \tFred\t2\n"
    "4 Fred took the apple there.\n"
    "5 What is Fred carrying? \tmilk,apple\t2 4\n"
)


def test_a_published_snippet_reads_and_writes_back_byte_for_byte() -> None:
    samples = parse_babi(PUBLISHED, 1)
    assert format_babi(samples) == PUBLISHED
    assert [s.story_id for s in samples] == [0, 0, 1, 1]
    first, last = samples[0], samples[-1]
    assert first.sentences == ("Mary moved to the bathroom.", "John went to the hallway.")
    assert first.question == Question("Where is Mary?", ("bathroom",), (0,), 3)
    assert last.question.answer == ("milk", "apple") and last.question.support == (1, 2)
    assert last.support_ids == (2, 4) and last.sentence_ids == (1, 2, 4)
    assert samples[2].question.answer_text == "Fred"


def test_tokens_are_lower_case_words_and_punctuation() -> None:
    assert tokenize("Where is Mary?") == ["where", "is", "mary", "?"]
    samples = parse_babi(PUBLISHED, 1)
    assert samples[0].tokens[0] == ["mary", "moved", "to", "the", "bathroom", "."]
    assert samples[0].question.tokens == ["where", "is", "mary", "?"]


@pytest.mark.parametrize("task", sorted(TASK_NAMES))
def test_generated_files_round_trip(task: int) -> None:
    samples = generate(task, 200, "test", seed=5)
    text = format_babi(samples)
    back = parse_babi(text, task)
    assert back == samples
    assert format_babi(back).encode() == text.encode()


def test_the_reader_takes_lenient_variants_and_the_writer_writes_the_published_layout() -> None:
    lenient = ("1 Mary moved to the bathroom.\r\n\r\n2 John went to the hallway.\r\n"
               "3 Where is Mary?\tbathroom\t1\r\n4 Where is John? \thallway\r\n")
    samples = parse_babi(lenient, 1)
    assert samples[0].question.text == "Where is Mary?" and samples[1].question.support == ()
    assert format_babi(samples) == ("1 Mary moved to the bathroom.\n2 John went to the hallway.\n"
                                    "3 Where is Mary? \tbathroom\t1\n"
                                    "4 Where is John? \thallway\t\n")


def test_the_writer_renumbers_a_story_with_questions_left_out() -> None:
    samples = parse_babi(PUBLISHED, 1)
    kept = [samples[1]]  # its story without the first question: line ids 1 2 4 5 6
    assert format_babi(kept) == ("1 Mary moved to the bathroom.\n2 John went to the hallway.\n"
                                 "3 Daniel went back to the hallway.\n"
                                 "4 Sandra moved to the garden.\n"
                                 "5 Where is Daniel? \thallway\t3\n")
    assert parse_babi(format_babi(kept), 1)[0].question.answer == ("hallway",)


def test_samples_without_line_ids_are_stories_of_their_own() -> None:
    q = Question("Where is Mary?", ("office",), (1,), 0)
    sample = Story(1, ("John went to the garden.", "Mary went to the office."), q)
    text = format_babi([sample, sample])
    assert text == ("1 John went to the garden.\n2 Mary went to the office.\n"
                    "3 Where is Mary? \toffice\t2\n") * 2
    assert [s.story_id for s in parse_babi(text, 1)] == [0, 1]


def test_the_writer_rejects_samples_that_disagree() -> None:
    a, b = parse_babi(PUBLISHED, 1)[:2]
    changed = Story(1, ("Mary moved to the kitchen.", *b.sentences[1:]), b.question, 0,
                    b.sentence_ids)
    with pytest.raises(TaskError, match="two different lines with id 1"):
        format_babi([a, changed])


# (text, line number, what the message says)
MALFORMED = [
    ("Mary moved to the bathroom.\n", 1, r"expected 'ID text'.*got 'Mary moved"),
    ("1 Mary moved to the bathroom.\n2\n", 2, r"expected 'ID text'.*got '2'"),
    ("1 Where is Mary? \tbathroom\t\n", 1,
     r"expected a statement before the first question of a story, got the question"),
    ("1 Mary moved to the bathroom.\n2 Where is Mary? \tbathroom\t1\n1 John went.\n"
     "3 Where is John? \toffice\t1\n", 4, r"expected line id 2 \(or 1 to start a new story\), "
     r"got 3"),
    ("1 Mary moved to the bathroom.\n1 John went.\n1 Sandra went.\n5 Daniel went.\n", 4,
     r"expected line id 2 .*got 5"),
    ("2 Mary moved to the bathroom.\n", 1, r"expected line id 1 .*got 2"),
    ("1 Mary moved.\n2 Where is Mary? \tbathroom\t1\textra\n", 2,
     r"expected 'question<TAB>answer<TAB>support ids'.*got 4 tab-separated fields"),
    ("1 Mary moved.\n2 Where is Mary? \t\t1\n", 2, r"expected an answer .*got ''"),
    ("1 Mary moved.\n2 Where is Mary? \tbathroom\tone\n", 2,
     r"expected support ids \(line ids separated by spaces\), got 'one'"),
    ("1 Mary moved.\n2 Where is Mary? \tbathroom\t2\n", 2,
     r"expected support ids of statements earlier in this story \(1\), got 2"),
    ("1 Mary moved.\n2 Where is Mary? \tbathroom\t7\n", 2, r"got 7"),
    ("1 \n", 1, r"expected a sentence after the line id, got ''"),
    ("1 ...\n", 1, r"expected a sentence after the line id, got '...'"),
]


@pytest.mark.parametrize(("text", "line", "message"), MALFORMED)
def test_malformed_lines_name_the_file_line_expected_and_actual(text: str, line: int,
                                                                message: str) -> None:
    with pytest.raises(TaskError) as info:
        parse_babi(text, 1, source="qa1_train.txt")
    assert str(info.value).startswith(f"qa1_train.txt:{line}: expected")
    assert re.search(message, str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


def test_task_files_have_the_published_names_and_read_back(tmp_path: Path) -> None:
    assert task_file_name(1, "train") == "qa1_single-supporting-fact_train.txt"
    assert task_file_name(20, "test") == "qa20_agents-motivations_test.txt"
    paths = write_tasks(tmp_path, [8, 19])
    assert sorted(p.name for p in paths) == [
        "qa19_path-finding_test.txt", "qa19_path-finding_train.txt",
        "qa8_lists-sets_test.txt", "qa8_lists-sets_train.txt"]
    assert read_task_file(tmp_path / "qa8_lists-sets_train.txt", 8) == generate(8, "1k")
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_load_tasks_generates_and_caches(tmp_path: Path) -> None:
    data = load_tasks([1, 15])
    assert sorted(data) == [1, 15] and data[15].name == "basic-deduction"
    assert data[1].train == generate(1, "1k", "train") and len(data[1].test) == 1000
    cached = load_tasks([1], cache_dir=tmp_path)
    files = sorted(tmp_path.rglob("*.txt"))
    assert [f.name for f in files] == ["qa1_single-supporting-fact_test.txt",
                                       "qa1_single-supporting-fact_train.txt"]
    stamps = [f.stat().st_mtime_ns for f in files]
    again = load_tasks([1], cache_dir=tmp_path)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # read back, not regenerated
    assert again[1] == cached[1] == data[1]


def test_load_tasks_reads_a_users_folder(tmp_path: Path) -> None:
    published = tmp_path / "tasks_1-20_v1-2"
    (published / "en").mkdir(parents=True)
    for split in ("train", "test"):
        (published / "en" / task_file_name(1, split)).write_text(PUBLISHED)
    # Any qaN_*_split.txt name is found too.
    (tmp_path / "qa2_mine_train.txt").write_text(PUBLISHED)
    (tmp_path / "qa2_mine_test.txt").write_text(PUBLISHED)
    data = load_tasks([1], "1k", data_dir=published)
    assert data[1].train == parse_babi(PUBLISHED, 1) == data[1].test
    assert len(load_tasks([2], "10k", data_dir=tmp_path)[2].train) == 4


def test_load_tasks_errors(tmp_path: Path) -> None:
    (tmp_path / task_file_name(3, "train")).write_text(PUBLISHED)
    with pytest.raises(TaskError, match=r"qa3_three-supporting-facts_test.txt: expected the "
                                        r"task 3 test file, got no such file \(qa\*_\*.txt "
                                        r"files there: qa3_three"):
        load_tasks([3], data_dir=tmp_path)
    with pytest.raises(TaskError, match=r"expected a folder of bAbI task files, got nothing"):
        load_tasks([3], data_dir=tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / task_file_name(4, "train")).write_text("1 The office is north of the garden.\n3 x\n")
    (bad / task_file_name(4, "test")).write_text(PUBLISHED)
    with pytest.raises(TaskError, match=r"qa4_two-arg-relations_train.txt:2: expected line id 2"):
        load_tasks([4], data_dir=bad)
    (bad / task_file_name(4, "train")).write_bytes(b"1 The office\xff.\n")
    with pytest.raises(TaskError, match=r"qa4_two-arg-relations_train.txt: expected UTF-8"):
        load_tasks([4], data_dir=bad)
    for task in (0, 21, "1", True):
        with pytest.raises(TaskError, match=rf"task: expected a bAbI task number 1-20, got "
                                            rf"{re.escape(repr(task))}"):
            load_tasks([task])  # type: ignore[list-item]
    with pytest.raises(TaskError, match=r"size: expected '1k' or '10k', got '5k'"):
        load_tasks([1], "5k")  # type: ignore[arg-type]
    with pytest.raises(TaskError, match=r"size: expected '1k' or '10k', got '5k'"):
        generate(1, "5k", "test")  # type: ignore[arg-type]
    with pytest.raises(TaskError, match=r"split: expected 'train' or 'test', got 'valid'"):
        generate(1, "1k", "valid")  # type: ignore[arg-type]
    with pytest.raises(TaskError, match=r"size: expected a number of questions >= 1, got 0"):
        generate(1, 0)
