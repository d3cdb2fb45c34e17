"""The simulated world behind the generated bAbI stories, and the pieces every task shares.

A story is written while a small world is simulated: actors move between places, pick up, drop
and hand over objects, and every statement is both said (a numbered line) and applied to the
world state, which remembers which line established each fact. Questions are answered from that
state, and their support ids are the lines it remembers, so an answer is never guessed.

The world only knows what the story has said: an actor's place is unknown (``"?Mary"``, a
place of its own) until a statement puts them somewhere, and an object lies nowhere in
particular until someone picks it up. So everything the state can answer, a reader of the story
can answer too.

Randomness comes from :func:`task_rng`, one :class:`random.Random` per (task, split, seed) seeded
from a SHA-256 digest: no ``hash()`` and no set iteration anywhere, so the output does not
depend on ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pylstm_dmn.babi.format import Question, Story

__all__ = [
    "ACTORS", "DROP_VERBS", "GET_VERBS", "GIVE_VERBS", "MOVE_VERBS", "OBJECTS", "PLACES",
    "ActorWorld", "Balancer", "StoryWriter", "task_rng",
]

# The published vocabulary (tasks 1-3, 6-8, 11-13; tasks 5, 9, 10, 14 and 20 name their own).
ACTORS = ("Mary", "John", "Daniel", "Sandra")
PLACES = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
OBJECTS = ("football", "apple", "milk")
MOVE_VERBS = ("moved to", "went to", "went back to", "travelled to", "journeyed to")
GET_VERBS = ("picked up", "got", "grabbed", "took")
DROP_VERBS = ("dropped", "discarded", "put down", "left")
GIVE_VERBS = ("gave", "handed", "passed")

T = TypeVar("T")


def task_rng(task: int, split: str, seed: int) -> random.Random:
    """The random stream of one (task, split, seed): the same on every run and interpreter
    (seeded from a SHA-256 digest, never from ``hash()``); train and test never share one."""
    digest = hashlib.sha256(f"pylstm-dmn/babi/{task}/{split}/{seed}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class StoryWriter:
    """Numbers the lines of one story (from 1) and turns each question into a :class:`Story`."""

    def __init__(self, task: int, story_id: int) -> None:
        self.task = task
        self.story_id = story_id
        self.sentences: list[str] = []
        self.sentence_ids: list[int] = []
        self.samples: list[Story] = []
        self._next = 1
        self._index: dict[int, int] = {}

    def tell(self, sentence: str) -> int:
        """Say a statement; returns its line id."""
        line_id = self._next
        self._next += 1
        self._index[line_id] = len(self.sentences)
        self.sentences.append(sentence)
        self.sentence_ids.append(line_id)
        return line_id

    def ask(self, question: str, answer: str | Sequence[str], support: Iterable[int]) -> None:
        """Ask a question with its answer and the line ids of its supporting statements
        (written in increasing order)."""
        words = (answer,) if isinstance(answer, str) else tuple(answer)
        ids = sorted(dict.fromkeys(support))
        if not ids or any(i not in self._index for i in ids):
            raise AssertionError(f"support {ids} must name statements of this story")
        q = Question(question, words, tuple(self._index[i] for i in ids), self._next)
        self._next += 1
        self.samples.append(Story(self.task, tuple(self.sentences), q, self.story_id,
                                  tuple(self.sentence_ids)))


class Balancer:
    """Keeps answers balanced across a whole split: of the candidate questions, pick one whose
    answer has been given least often so far (ties broken at random)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def pick(self, rng: random.Random, candidates: Sequence[tuple[T, str]]) -> T:
        """``candidates`` are (question, answer) pairs; returns the chosen question."""
        least = min(self.counts.get(answer, 0) for _, answer in candidates)
        best = [c for c in candidates if self.counts.get(c[1], 0) == least]
        choice, answer = rng.choice(best)
        self.counts[answer] = least + 1
        return choice


def known(place: str) -> bool:
    """Whether a position is a real place (``"?Mary"`` is "wherever Mary started")."""
    return not place.startswith("?")


@dataclass
class Trail:
    """Where an object has been: a place, the lines that show how it got there, and the latest
    lines that show it was there (a later pickup there is shorter evidence)."""

    place: str
    arrived: tuple[int, ...]
    seen: tuple[int, ...]


@dataclass
class Give:
    """One hand-over: its line, who gave what to whom."""

    line: int
    giver: str
    obj: str
    receiver: str


@dataclass
class ActorWorld:
    """Actors, places and objects, with each fact's line (tasks 1-3, 5-8 and 20).

    Actions say their sentence through ``writer`` and update the state; a precondition that
    fails is a bug in the task's policy and raises ``AssertionError``.
    """

    writer: StoryWriter
    rng: random.Random
    actors: Sequence[str]
    places: Sequence[str] = PLACES
    objects: Sequence[str] = OBJECTS
    pos: dict[str, str] = field(default_factory=dict)  # actor -> place or "?actor"
    moved_at: dict[str, int] = field(default_factory=dict)  # actor -> line of the last move
    holding: dict[str, list[str]] = field(default_factory=dict)  # actor -> objects, in order
    holder: dict[str, str | None] = field(default_factory=dict)
    lies_at: dict[str, str | None] = field(default_factory=dict)  # free object -> position
    acquired_at: dict[str, int] = field(default_factory=dict)  # object -> line it was taken
    dropped: dict[str, tuple[int, ...]] = field(default_factory=dict)  # lines: where it lies
    released: dict[str, dict[str, int]] = field(default_factory=dict)  # actor -> obj -> line
    trail: dict[str, list[Trail]] = field(default_factory=dict)
    gives: list[Give] = field(default_factory=list)

    def __post_init__(self) -> None:
        for a in self.actors:
            self.pos[a] = "?" + a
            self.holding[a] = []
            self.released[a] = {}
        for o in self.objects:
            self.holder[o] = None
            self.lies_at[o] = None
            self.trail[o] = []

    # -- actions -----------------------------------------------------------------------------

    def move(self, actor: str, place: str, verb: str | None = None) -> int:
        """``Mary moved to the bathroom.``"""
        assert place != self.pos[actor]
        line = self.writer.tell(f"{actor} {verb or self.rng.choice(MOVE_VERBS)} the {place}.")
        self.pos[actor] = place
        self.moved_at[actor] = line
        for o in self.holding[actor]:
            ids = (self.acquired_at[o], line)
            self.trail[o].append(Trail(place, ids, ids))
        return line

    def _there(self, actor: str) -> str:
        # "there" only where the story has said where the actor is.
        return " there" if known(self.pos[actor]) and self.rng.random() < 0.5 else ""

    def _where_shown(self, actor: str) -> tuple[int, ...]:
        return (self.moved_at[actor],) if actor in self.moved_at else ()

    def can_get(self, actor: str, obj: str) -> bool:
        """A free object that has never been placed, or lies where the actor is."""
        return self.holder[obj] is None and self.lies_at[obj] in (None, self.pos[actor])

    def get(self, actor: str, obj: str) -> int:
        """``John picked up the football there.``"""
        assert self.can_get(actor, obj)
        verb = self.rng.choice(GET_VERBS)
        line = self.writer.tell(f"{actor} {verb} the {obj}{self._there(actor)}.")
        self._take(actor, obj, line)
        place = self.pos[actor]
        ids = (*self._where_shown(actor), line) if known(place) else ()
        trail = self.trail[obj]
        if trail and trail[-1].place == place:
            if ids:
                trail[-1].seen = ids
        else:
            trail.append(Trail(place, ids, ids))
        return line

    def _take(self, actor: str, obj: str, line: int) -> None:
        self.holder[obj] = actor
        self.lies_at[obj] = None
        self.holding[actor].append(obj)
        self.acquired_at[obj] = line
        self.released[actor].pop(obj, None)

    def _release(self, actor: str, obj: str, line: int) -> None:
        self.holding[actor].remove(obj)
        self.holder[obj] = None
        self.released[actor][obj] = line

    def drop(self, actor: str, obj: str) -> int:
        """``Sandra discarded the milk.``"""
        assert self.holder[obj] == actor and known(self.pos[actor])
        verb = self.rng.choice(DROP_VERBS)
        line = self.writer.tell(f"{actor} {verb} the {obj}{self._there(actor)}.")
        self._release(actor, obj, line)
        self.lies_at[obj] = self.pos[actor]
        self.dropped[obj] = (*self._where_shown(actor), line)
        return line

    def can_give(self, giver: str, receiver: str) -> bool:
        """Both in one known place, and the giver holds something."""
        return (giver != receiver and bool(self.holding[giver])
                and known(self.pos[giver]) and self.pos[giver] == self.pos[receiver])

    def give(self, giver: str, obj: str, receiver: str) -> int:
        """``Fred gave the milk to Jeff.``"""
        assert self.can_give(giver, receiver) and self.holder[obj] == giver
        verb = self.rng.choice(GIVE_VERBS)
        line = self.writer.tell(f"{giver} {verb} the {obj} to {receiver}.")
        self._release(giver, obj, line)
        self._take(receiver, obj, line)
        self.gives.append(Give(line, giver, obj, receiver))
        return line

    # -- what the story says -----------------------------------------------------------------

    def where_is(self, obj: str) -> tuple[str, tuple[int, ...]] | None:
        """The object's place and the lines that show it, if the story has said it."""
        actor = self.holder[obj]
        if actor is not None:
            if not known(self.pos[actor]):
                return None
            return self.pos[actor], (self.acquired_at[obj], self.moved_at[actor])
        place = self.lies_at[obj]
        if place is None or not known(place):
            return None
        return place, self.dropped[obj]

    def carried(self, actor: str) -> tuple[list[str], tuple[int, ...]]:
        """What the actor holds (in the order taken) and the lines that show it: the lines of
        taking what they hold, or where they hold nothing, the lines of letting go."""
        held = list(self.holding[actor])
        if held:
            return held, tuple(self.acquired_at[o] for o in held)
        return [], tuple(self.released[actor].values())

    # -- a random policy ---------------------------------------------------------------------

    def random_action(self, weights: dict[str, float], actor: str | None = None) -> int:
        """One random action among those possible: ``weights`` maps ``move``, ``get``,
        ``drop``, ``give`` to relative weights. Moves sometimes join another actor, so that
        hand-overs become possible."""
        rng = self.rng
        actor = actor or rng.choice(self.actors)
        options: list[tuple[str, float]] = [("move", weights.get("move", 0.0))]
        gettable = [o for o in self.objects if self.can_get(actor, o)]
        if gettable:
            options.append(("get", weights.get("get", 0.0)))
        if self.holding[actor] and known(self.pos[actor]):
            # Dropped where the story never said, an object could never be found again.
            options.append(("drop", weights.get("drop", 0.0)))
        receivers = [r for r in self.actors if self.can_give(actor, r)]
        if receivers:
            options.append(("give", weights.get("give", 0.0)))
        kind = _weighted(rng, options)
        if kind == "get":
            return self.get(actor, rng.choice(gettable))
        if kind == "drop":
            return self.drop(actor, rng.choice(self.holding[actor]))
        if kind == "give":
            return self.give(actor, rng.choice(self.holding[actor]), rng.choice(receivers))
        others = [self.pos[a] for a in self.actors if a != actor and known(self.pos[a])
                  and self.pos[a] != self.pos[actor]]
        if others and rng.random() < weights.get("meet", 0.0):
            return self.move(actor, rng.choice(others))
        return self.move(actor, rng.choice([p for p in self.places if p != self.pos[actor]]))


def _weighted(rng: random.Random, options: Sequence[tuple[str, float]]) -> str:
    total = sum(w for _, w in options)
    r = rng.random() * total
    for name, w in options:
        r -= w
        if r < 0:
            return name
    return options[0][0]
