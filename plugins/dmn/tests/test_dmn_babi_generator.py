"""The bAbI generator, checked against an independent reading of its own text.

Each task has a reader here that knows only the published sentence forms (regular
expressions) and re-derives every answer from the story's sentences; it shares no code with
the generator. Every answer must match the reader on the whole story and again on the
supporting sentences alone (so the support ids really justify it), the support must name the
question's entities, yes/no answers must be balanced, and every sentence must parse (the
readers reject any other sentence form).
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import subprocess
import sys

import pytest
from pylstm_dmn.babi import TASK_NAMES, Story, format_babi, generate

MOVE = r"(\w+) (?:moved to|went to|went back to|travelled to|journeyed to) the (\w+)"
GET = re.compile(r"(\w+) (?:picked up|got|grabbed|took) the (\w+)(?: there)?\.")
DROP = re.compile(r"(\w+) (?:dropped|discarded|put down|left) the (\w+)(?: there)?\.")
GIVE = re.compile(r"(\w+) (?:gave|handed|passed) the (\w+) to (\w+)\.")
MOVE_S = re.compile(MOVE + r"\.")
THEN = r"(?:Then|After that|Afterwards|Following that)"
COUNT_WORDS = ["none", "one", "two", "three"]


def fail(sentence: str) -> AssertionError:
    return AssertionError(f"not a sentence form of this task: {sentence!r}")


class Actors:
    """Replays moves, pickups, drops and hand-overs (tasks 1-3 and 5-8)."""

    def __init__(self, sentences: list[str]) -> None:
        self.loc: dict[str, str] = {}
        self.holder: dict[str, str] = {}
        self.lies: dict[str, str | None] = {}
        self.trail: dict[str, list[str | None]] = collections.defaultdict(list)
        self.gives: list[tuple[str, str, str]] = []
        self.holds: dict[str, list[str]] = collections.defaultdict(list)
        for s in sentences:
            if m := MOVE_S.fullmatch(s):
                self.loc[m[1]] = m[2]
            elif m := GET.fullmatch(s):
                self._take(m[1], m[2])
            elif m := DROP.fullmatch(s):
                self._let_go(m[2])
                self.lies[m[2]] = self.loc.get(m[1])
            elif m := GIVE.fullmatch(s):
                self.gives.append((m[1], m[2], m[3]))
                self._take(m[3], m[2])
            else:
                raise fail(s)
            for obj in ("football", "apple", "milk"):
                place = self.where(obj)
                if obj in self.holder or obj in self.lies:
                    if not self.trail[obj] or self.trail[obj][-1] != place:
                        self.trail[obj].append(place)

    def _let_go(self, obj: str) -> None:
        if obj in self.holder:
            self.holds[self.holder.pop(obj)].remove(obj)

    def _take(self, actor: str, obj: str) -> None:
        self._let_go(obj)  # a subset of the story may skip the drop before this
        self.holder[obj] = actor
        self.lies.pop(obj, None)
        self.holds[actor].append(obj)

    def where(self, obj: str) -> str | None:
        if obj in self.holder:
            return self.loc.get(self.holder[obj])
        return self.lies.get(obj)


def answer_actors(task: int, sentences: list[str], q: str) -> str | None:
    w = Actors(sentences)
    if m := re.fullmatch(r"Where is (\w+)\?", q):
        return w.loc.get(m[1])
    if m := re.fullmatch(r"Is (\w+) in the (\w+)\?", q):
        return None if m[1] not in w.loc else "yes" if w.loc[m[1]] == m[2] else "no"
    if m := re.fullmatch(r"Where is the (\w+)\?", q):
        return w.where(m[1])
    if m := re.fullmatch(r"Where was the (\w+) before the (\w+)\?", q):
        trail = w.trail[m[1]]
        assert trail.count(m[2]) == 1, (trail, q)
        return trail[trail.index(m[2]) - 1] if trail.index(m[2]) > 0 else None
    if m := re.fullmatch(r"How many objects is (\w+) carrying\?", q):
        return COUNT_WORDS[len(w.holds[m[1]])]
    if m := re.fullmatch(r"What is (\w+) carrying\?", q):
        return ",".join(w.holds[m[1]]) or "nothing"
    forms = [(r"What did (\w+) give to (\w+)\?", lambda g, m: g[0] == m[1] and g[2] == m[2], 1),
             (r"Who gave the (\w+) to (\w+)\?", lambda g, m: g[1] == m[1] and g[2] == m[2], 0),
             (r"Who did (\w+) give the (\w+) to\?", lambda g, m: g[0] == m[1] and g[1] == m[2], 2),
             (r"Who gave the (\w+)\?", lambda g, m: g[1] == m[1], 0),
             (r"Who received the (\w+)\?", lambda g, m: g[1] == m[1], 2)]
    for form, matches, field in forms:
        if m := re.fullmatch(form, q):
            answers = {g[field] for g in w.gives if matches(g, m)}
            assert len(answers) <= 1, f"{q!r} has several answers {answers}"
            return answers.pop() if answers else None
    raise fail(q)


def answer_known(task: int, sentences: list[str], q: str) -> str | None:
    """Tasks 9 and 10: the latest statement about the person decides."""
    said: dict[str, tuple[str, tuple[str, ...]]] = {}
    for s in sentences:
        if m := re.fullmatch(r"(\w+) is in the (\w+)\.", s) or MOVE_S.fullmatch(s):
            said[m[1]] = ("at", (m[2],))
        elif m := re.fullmatch(r"(\w+) is (?:no longer|not) in the (\w+)\.", s):
            said[m[1]] = ("not", (m[2],))
        elif m := re.fullmatch(r"(\w+) is either in the (\w+) or the (\w+)\.", s):
            said[m[1]] = ("either", (m[2], m[3]))
        else:
            raise fail(s)
    m = re.fullmatch(r"Is (\w+) in the (\w+)\?", q)
    assert m, q
    kind, places = said[m[1]]
    if kind == "at":
        return "yes" if m[2] in places else "no"
    if kind == "either":
        return "maybe" if m[2] in places else "no"
    return "no" if m[2] in places else None  # elsewhere: the story does not say


GENDER = {"Mary": "she", "Sandra": "she", "John": "he", "Daniel": "he"}


def answer_where(task: int, sentences: list[str], q: str) -> str | None:
    """Tasks 11-13: plain moves, pairs, and he/she/they for the previous subject."""
    loc: dict[str, str] = {}
    subject: list[str] = []
    for s in sentences:
        if m := MOVE_S.fullmatch(s):
            subject = [m[1]]
        elif m := re.fullmatch(r"(\w+) and (\w+) " + MOVE[len(r"(\w+) "):] + r"\.", s):
            subject = [m[1], m[2]]
        elif m := re.fullmatch(THEN + r" (he|she|they) " + MOVE[len(r"(\w+) "):] + r"\.", s):
            pronoun = "they" if len(subject) == 2 else GENDER[subject[0]] if subject else None
            assert pronoun == m[1], f"{s!r} after {subject}"
        else:
            raise fail(s)
        for person in subject:
            loc[person] = m.groups()[-1]
    m = re.fullmatch(r"Where is (\w+)\?", q)
    assert m, q
    return loc.get(m[1])


TIMES = ["yesterday", "this morning", "this afternoon", "this evening"]
TIME = "(yesterday|this morning|this afternoon|this evening)"
TIME_MOVE = r"(\w+) (?:went to|went back to|journeyed to|travelled to) the (\w+)"


def answer_time(task: int, sentences: list[str], q: str) -> str | None:
    at: dict[tuple[str, int], str] = {}
    for s in sentences:
        if m := re.fullmatch(TIME + " " + TIME_MOVE + r"\.", s, re.IGNORECASE):
            time, person, place = m[1].lower(), m[2], m[3]
        elif m := re.fullmatch(TIME_MOVE + " " + TIME + r"\.", s):
            person, place, time = m[1], m[2], m[3]
        else:
            raise fail(s)
        at[(person, TIMES.index(time))] = place
    m = re.fullmatch(r"Where was (\w+) before the (\w+)\?", q)
    assert m, q
    times = [t for (p, t), place in at.items() if p == m[1] and place == m[2]]
    assert len(times) == 1, q
    return at.get((m[1], times[0] - 1))


SINGULAR = {"mice": "mouse", "sheep": "sheep", "wolves": "wolf", "cats": "cat"}


def answer_kinds(task: int, sentences: list[str], q: str) -> str | None:
    """Tasks 15 and 16: membership, fears and colours."""
    kind: dict[str, str] = {}
    fears: dict[str, str] = {}
    color: dict[str, str] = {}
    for s in sentences:
        if m := re.fullmatch(r"(\w+) is an? (\w+)\.", s):
            kind[m[1].lower()] = m[2]
        elif m := re.fullmatch(r"(\w+) are afraid of (\w+)\.", s):
            fears[SINGULAR[m[1].lower()]] = SINGULAR[m[2]]
        elif m := re.fullmatch(r"(\w+) is (white|green|yellow|gray)\.", s):
            color[m[1].lower()] = m[2]
        else:
            raise fail(s)
    if m := re.fullmatch(r"What is (\w+) afraid of\?", q):
        return fears.get(kind.get(m[1], ""))
    m = re.fullmatch(r"What color is (\w+)\?", q)
    assert m, q
    seen = {color[n] for n in color if kind.get(n) == kind[m[1].lower()]}
    assert len(seen) <= 1, f"{q}: induction is ambiguous {seen}"
    return seen.pop() if seen else None


SHAPE = r"(triangle|red square|blue square|red sphere|pink rectangle|yellow square)"
REL = {"to the left of": (-1, 0), "to the right of": (1, 0), "above": (0, 1), "below": (0, -1)}
REL_RE = "(" + "|".join(REL) + ")"
DIRS = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}


def place_on_grid(relations: list[tuple[str, tuple[int, int], str]]) -> dict[str, tuple]:
    """Cells from 'a is one step (dx, dy) from b' statements (all connected)."""
    cell = {relations[0][2]: (0, 0)}
    for _ in relations:
        for a, (dx, dy), b in relations:
            if b in cell and a not in cell:
                cell[a] = (cell[b][0] + dx, cell[b][1] + dy)
            elif a in cell and b not in cell:
                cell[b] = (cell[a][0] - dx, cell[a][1] - dy)
    return cell


def answer_space(task: int, sentences: list[str], q: str) -> str | None:
    """Tasks 4, 17 and 19: one-step relations on a grid."""
    relations = []
    for s in sentences:
        if m := re.fullmatch(rf"The {SHAPE} is {REL_RE} the {SHAPE}\.", s):
            relations.append((m[1], REL[m[2]], m[3]))
        elif m := re.fullmatch(r"The (\w+) is (north|south|east|west) of the (\w+)\.", s):
            relations.append((m[1], DIRS[m[2]], m[3]))
        else:
            raise fail(s)
    step = {(a, b): d for a, d, b in relations} | {
        (b, a): (-d[0], -d[1]) for a, d, b in relations}
    if m := re.fullmatch(rf"Is the {SHAPE} {REL_RE} the {SHAPE}\?", q):
        cell = place_on_grid(relations)
        if m[1] not in cell or m[3] not in cell:
            return None
        (ux, uy), p, r = REL[m[2]], cell[m[1]], cell[m[3]]
        return "yes" if (p[0] - r[0]) * ux > 0 or (p[1] - r[1]) * uy > 0 else "no"
    if m := re.fullmatch(r"What is (north|south|east|west) of the (\w+)\?", q):
        found = [a for (a, b), d in step.items() if b == m[2] and d == DIRS[m[1]]]
        return found[0] if len(found) == 1 else None
    if m := re.fullmatch(r"What is the (\w+) (north|south|east|west) of\?", q):
        found = [b for (a, b), d in step.items() if a == m[1] and d == DIRS[m[2]]]
        return found[0] if len(found) == 1 else None
    m = re.fullmatch(r"How do you go from the (\w+) to the (\w+)\?", q)
    assert m, q
    letters = {d: name[0] for name, d in DIRS.items()}
    paths = [[m[1]]]
    while paths:  # breadth first over the stated edges
        path = paths.pop(0)
        if path[-1] == m[2]:
            return ",".join(letters[step[(path[i + 1], path[i])]] for i in range(len(path) - 1))
        paths += [[*path, a] for (a, b) in step if b == path[-1] and a not in path]
    return None


BOX = r"(box of chocolates|box|chocolate|chest|container|suitcase)"


def answer_size(task: int, sentences: list[str], q: str) -> str | None:
    smaller: set[tuple[str, str]] = set()
    for s in sentences:
        if m := re.fullmatch(rf"The {BOX} fits inside the {BOX}\.", s):
            smaller.add((m[1], m[2]))
        elif m := re.fullmatch(rf"The {BOX} is bigger than the {BOX}\.", s):
            smaller.add((m[2], m[1]))
        else:
            raise fail(s)
    while True:  # transitive closure
        more = {(a, d) for a, b in smaller for c, d in smaller if b == c} - smaller
        if not more:
            break
        smaller |= more
    if m := re.fullmatch(rf"Does the {BOX} fit in the {BOX}\?", q):
        small, big = m[1], m[2]
    else:
        m = re.fullmatch(rf"Is the {BOX} bigger than the {BOX}\?", q)
        assert m, q
        small, big = m[2], m[1]
    assert (small, big) not in smaller or (big, small) not in smaller, "sizes contradict"
    return "yes" if (small, big) in smaller else "no" if (big, small) in smaller else None


MOTIVE = {"hungry": "kitchen", "thirsty": "kitchen", "tired": "bedroom", "bored": "garden"}


def answer_motive(task: int, sentences: list[str], q: str) -> str | None:
    state: dict[str, str] = {}
    for s in sentences:
        if m := re.fullmatch(r"(\w+) is (hungry|thirsty|tired|bored)\.", s):
            state[m[1].lower()] = m[2]
        elif not (MOVE_S.fullmatch(s) or GET.fullmatch(s)):
            raise fail(s)
    if m := re.fullmatch(r"Where will (\w+) go\?", q):
        return MOTIVE[state[m[1]]] if m[1] in state else None
    if m := re.fullmatch(r"Why did (\w+) go to the (\w+)\?", q):
        assert MOTIVE[state[m[1]]] == m[2]
        return state[m[1]]
    m = re.fullmatch(r"Why did (\w+) get the (\w+)\?", q)
    assert m, q
    return state.get(m[1])


READERS = {1: answer_actors, 2: answer_actors, 3: answer_actors, 4: answer_space,
           5: answer_actors, 6: answer_actors, 7: answer_actors, 8: answer_actors,
           9: answer_known, 10: answer_known, 11: answer_where, 12: answer_where,
           13: answer_where, 14: answer_time, 15: answer_kinds, 16: answer_kinds,
           17: answer_space, 18: answer_size, 19: answer_space, 20: answer_motive}
NAMES = {"Mary", "John", "Daniel", "Sandra", "Bill", "Fred", "Jeff", "Julie", "Sumit", "Yann",
         "Antoine", "Jason", "Gertrude", "Winona", "Jessica", "Emily", "Lily", "Bernhard",
         "Greg", "Julius", "Brian"}
THINGS = ["football", "apple", "milk", "pajamas", "triangle", "red square", "blue square",
          "red sphere", "pink rectangle", "yellow square", "box of chocolates", "box", "chocolate",
          "chest", "container", "suitcase"]
PLACES = ["bathroom", "bedroom", "garden", "hallway", "kitchen", "office", "cinema", "park",
          "school"]


@pytest.fixture(scope="module")
def samples() -> dict[int, list[Story]]:
    return {t: generate(t, "1k", "test", seed=0) for t in TASK_NAMES}


@pytest.mark.parametrize("task", sorted(TASK_NAMES))
def test_answers_follow_from_the_story(task: int, samples: dict[int, list[Story]]) -> None:
    for s in samples[task]:
        got = READERS[task](task, list(s.sentences), s.question.text)
        assert got == s.question.answer_text, (s.sentences, s.question)


@pytest.mark.parametrize("task", sorted(TASK_NAMES))
def test_the_support_alone_gives_the_answer(task: int, samples: dict[int, list[Story]]) -> None:
    for s in samples[task]:
        q = s.question
        support = [s.sentences[i] for i in q.support]
        assert q.support and list(q.support) == sorted(set(q.support))
        if q.answer_text in ("none", "nothing"):
            # Holding nothing: the support is the person letting go of what they had.
            who = re.search(r"is (\w+) carrying", q.text)[1]
            assert all(DROP.fullmatch(x) or GIVE.fullmatch(x) for x in support)
            assert all(x.startswith(who + " ") for x in support), (support, q)
            continue
        assert READERS[task](task, support, q.text) == q.answer_text, (support, q)


@pytest.mark.parametrize("task", sorted(TASK_NAMES))
def test_the_support_names_the_question_entities(task: int,
                                                 samples: dict[int, list[Story]]) -> None:
    for s in samples[task]:
        q = s.question
        text = " ".join(s.sentences[i] for i in q.support).lower()
        named = [w for w in re.findall(r"\w+", q.text) if w.capitalize() in NAMES]
        named += [t for t in THINGS if re.search(rf"\b{t}\b", q.text)]
        if q.answer_text != "no":  # "Is Mary in the kitchen?" no: the kitchen need not appear
            named += [p for p in PLACES if re.search(rf"\b{p}\b", q.text)]
        assert named, q
        for entity in named:
            assert re.search(rf"\b{entity.lower()}\b", text), (entity, q, text)


@pytest.mark.parametrize("task", [6, 9, 17, 18])
def test_yes_no_answers_are_balanced(task: int, samples: dict[int, list[Story]]) -> None:
    counts = collections.Counter(s.question.answer_text for s in samples[task])
    assert set(counts) == {"yes", "no"} and abs(counts["yes"] - counts["no"]) <= 20, counts


def test_indefinite_answers_and_counts_are_spread(samples: dict[int, list[Story]]) -> None:
    counts = collections.Counter(s.question.answer_text for s in samples[10])
    assert set(counts) == {"yes", "no", "maybe"} and min(counts.values()) >= 300, counts
    counts = collections.Counter(s.question.answer_text for s in samples[7])
    assert set(counts) == {"none", "one", "two", "three"}, counts
    assert max(counts.values()) <= 600 and counts["none"] >= 100 and counts["two"] >= 100
    lists = collections.Counter(len(s.question.answer) for s in samples[8]
                                if s.question.answer_text != "nothing")
    assert lists[1] >= 200 and lists[2] >= 100, lists


@pytest.mark.parametrize("task", sorted(TASK_NAMES))
def test_the_published_layout(task: int, samples: dict[int, list[Story]]) -> None:
    text = format_babi(samples[task])
    expected = 0
    for line in text.splitlines():
        line_id, rest = line.split(" ", 1)
        expected = 1 if line_id == "1" else expected + 1
        assert int(line_id) == expected, line
        if "\t" in rest:
            assert re.fullmatch(r"[A-Z][^\t]*\? \t[\w,]+\t\d+( \d+)*", rest), line
        else:
            assert re.fullmatch(r"[A-Z][\w ]*\.", rest), line
    words = {w for w in re.findall(r"\w+", text.lower()) if not w.isdigit()}
    assert len(words) <= 60, sorted(words)  # the published tasks have small vocabularies


def test_sizes_and_prefixes() -> None:
    for task in (4, 19):
        assert len(generate(task, "1k", "train")) == 1000
        assert len(generate(task, "10k", "test")) == 1000
    ten = generate(1, "10k", "train")
    assert len(ten) == 10000
    assert generate(1, "1k", "train") == ten[:1000]
    assert len(generate(3, 37, "train")) == 37


def test_train_and_test_differ_and_seeds_matter() -> None:
    train, test = generate(1, "1k", "train"), generate(1, "1k", "test")
    story = lambda s: (s.sentences, s.question)  # noqa: E731
    assert len({story(s) for s in train} & {story(s) for s in test}) < 10
    assert format_babi(generate(2, 200, "train", seed=1)) != format_babi(
        generate(2, 200, "train", seed=0))


def test_generation_is_deterministic_and_independent_of_hash_seed() -> None:
    def digest() -> str:
        return hashlib.sha256("".join(format_babi(generate(t, 300, "train", 3))
                                      for t in TASK_NAMES).encode()).hexdigest()

    code = ("import hashlib; from pylstm_dmn.babi import TASK_NAMES, format_babi, generate; "
            "print(hashlib.sha256(''.join(format_babi(generate(t, 300, 'train', 3)) "
            "for t in TASK_NAMES).encode()).hexdigest())")
    here = digest()
    assert here == digest()
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)
        assert out.stdout.strip() == here
