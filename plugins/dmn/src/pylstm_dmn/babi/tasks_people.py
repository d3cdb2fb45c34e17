"""Tasks about where people are, told in harder sentences: 9 (negation), 10 (indefinite
knowledge), 11 (coreference), 12 (conjunction), 13 (compound coreference) and 14 (time).

The state here is what the story has said about each person: the latest statement decides
(a later statement about someone replaces what was known), and it remembers which lines say it.
"""

from __future__ import annotations

import random

from pylstm_dmn.babi.world import ACTORS, MOVE_VERBS, PLACES, Balancer, StoryWriter

__all__ = ["story_9", "story_10", "story_11", "story_12", "story_13", "story_14"]

QUESTIONS_PER_STORY = 5
PEOPLE = ("Bill", "Fred", "Julie", "Mary")  # tasks 10 and 14
TOWN = ("bedroom", "cinema", "kitchen", "office", "park", "school")  # tasks 10 and 14
PRONOUN = {"Mary": "she", "Sandra": "she", "John": "he", "Daniel": "he"}
THEN = ("Then", "After that", "Afterwards", "Following that")
TIMES = ("yesterday", "this morning", "this afternoon", "this evening")
TIME_VERBS = ("went to", "went back to", "journeyed to", "travelled to")


def _other(rng: random.Random, places: tuple[str, ...], *not_these: str) -> str:
    return rng.choice([p for p in places if p not in not_these])


def story_9(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Simple negation: ``Sandra is no longer in the bathroom.`` then ``Is Sandra in ...?``.

    A negative statement leaves the person's place unknown except for the place it excludes,
    so only that place is asked about."""
    said: dict[str, tuple[bool, str, int]] = {}  # person -> (is there, place, line)
    for _ in range(QUESTIONS_PER_STORY):
        for _ in range(2):
            person = rng.choice(ACTORS)
            last = said.get(person)
            if rng.random() < 0.5:
                place = _other(rng, PLACES, *(last[1:2] if last and last[0] else ()))
                form = rng.choice(["{} is in the {}.", "{} " + rng.choice(MOVE_VERBS) + " the {}."])
                said[person] = (True, place, w.tell(form.format(person, place)))
            elif last and last[0]:
                form = rng.choice(["{} is no longer in the {}.", "{} is not in the {}."])
                said[person] = (False, last[1], w.tell(form.format(person, last[1])))
            else:
                place = _other(rng, PLACES, *(last[1:2] if last else ()))
                said[person] = (False, place, w.tell(f"{person} is not in the {place}."))
        candidates = []
        for person, (there, place, line) in said.items():
            if there:
                candidates.append(((person, place, line), "yes"))
                candidates.append(((person, _other(rng, PLACES, place), line), "no"))
            else:
                candidates.append(((person, place, line), "no"))
        person, place, line = balancer.pick(rng, candidates)
        there, at, _ = said[person]
        w.ask(f"Is {person} in the {place}?", "yes" if there and at == place else "no", [line])


def story_10(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Indefinite knowledge: ``Julie is either in the school or the park.`` answered
    ``maybe`` for those two places, ``no`` for the others."""
    said: dict[str, tuple[tuple[str, ...], int]] = {}  # person -> (possible places, line)
    for _ in range(QUESTIONS_PER_STORY):
        for _ in range(2):
            person = rng.choice(PEOPLE)
            if rng.random() < 0.5:
                first, second = rng.sample(TOWN, 2)
                line = w.tell(f"{person} is either in the {first} or the {second}.")
                said[person] = ((first, second), line)
            else:
                place = rng.choice(TOWN)
                form = rng.choice(["{} is in the {}.", "{} " + rng.choice(MOVE_VERBS) + " the {}."])
                said[person] = ((place,), w.tell(form.format(person, place)))
        candidates = []
        for person, (places, line) in said.items():
            for place in places:
                candidates.append(((person, place, line), "yes" if len(places) == 1 else "maybe"))
            candidates.append(((person, _other(rng, TOWN, *places), line), "no"))
        person, place, line = balancer.pick(rng, candidates)
        places = said[person][0]
        answer = "no" if place not in places else "yes" if len(places) == 1 else "maybe"
        w.ask(f"Is {person} in the {place}?", answer, [line])


def story_11(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Basic coreference: ``Daniel went to the bathroom. Afterwards he moved to the hallway.``
    (the pronoun is the previous statement's subject; support: both lines)."""
    where: dict[str, tuple[str, tuple[int, ...]]] = {}  # person -> (place, lines)
    for _ in range(QUESTIONS_PER_STORY):
        plan = [rng.choice(ACTORS)]
        plan.append(plan[0] if rng.random() < 0.6 else rng.choice(ACTORS))
        previous: tuple[str, int] | None = None
        for person in plan:
            place = _other(rng, PLACES, *(where[person][0:1] if person in where else ()))
            verb = rng.choice(MOVE_VERBS)
            if previous and previous[0] == person:
                line = w.tell(f"{rng.choice(THEN)} {PRONOUN[person]} {verb} the {place}.")
                where[person] = (place, (previous[1], line))
            else:
                line = w.tell(f"{person} {verb} the {place}.")
                where[person] = (place, (line,))
            previous = (person, line)
        person = rng.choice(list(where))
        w.ask(f"Where is {person}?", where[person][0], where[person][1])


def story_12(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Conjunction: ``Mary and Daniel went to the bathroom.`` then ``Where is Daniel?``."""
    where: dict[str, tuple[str, int]] = {}
    for _ in range(QUESTIONS_PER_STORY):
        for _ in range(2):
            first, second = rng.sample(ACTORS, 2)
            place = rng.choice(PLACES)
            line = w.tell(f"{first} and {second} {rng.choice(MOVE_VERBS)} the {place}.")
            where[first] = where[second] = (place, line)
        person = rng.choice(list(where))
        w.ask(f"Where is {person}?", where[person][0], [where[person][1]])


def story_13(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Compound coreference: ``Mary and Daniel went to the bathroom. Then they journeyed to
    the hallway.`` (``they`` is the previous statement's pair; support: both lines)."""
    where: dict[str, tuple[str, tuple[int, ...]]] = {}
    for _ in range(QUESTIONS_PER_STORY):
        first, second = rng.sample(ACTORS, 2)
        place = rng.choice(PLACES)
        line = w.tell(f"{first} and {second} {rng.choice(MOVE_VERBS)} the {place}.")
        where[first] = where[second] = (place, (line,))
        if rng.random() < 0.6:
            place = _other(rng, PLACES, place)
            then = w.tell(f"{rng.choice(THEN)} they {rng.choice(MOVE_VERBS)} the {place}.")
            where[first] = where[second] = (place, (line, then))
        else:
            first, second = rng.sample(ACTORS, 2)
            place = rng.choice(PLACES)
            line = w.tell(f"{first} and {second} {rng.choice(MOVE_VERBS)} the {place}.")
            where[first] = where[second] = (place, (line,))
        person = rng.choice(list(where))
        w.ask(f"Where is {person}?", where[person][0], where[person][1])


def story_14(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Time reasoning: ``Yesterday Julie went to the park.`` ... ``This afternoon ...``, told
    out of order; ``Where was Julie before the school?`` is the place of the time before."""
    timeline: dict[str, list[str]] = {}
    for person in rng.sample(PEOPLE, rng.randint(2, 4)):
        timeline[person] = rng.sample(TOWN, rng.randint(2, 4))  # distinct: "before" is one time
    facts = [(p, t) for p, places in timeline.items() for t in range(len(places))]
    rng.shuffle(facts)
    told: dict[tuple[str, int], int] = {}
    pending: list[tuple[str, int]] = []
    asked = 0
    for n, (person, t) in enumerate(facts):
        place, time, verb = timeline[person][t], TIMES[t], rng.choice(TIME_VERBS)
        if rng.random() < 0.5:
            sentence = f"{time[0].upper()}{time[1:]} {person} {verb} the {place}."
        else:
            sentence = f"{person} {verb} the {place} {time}."
        told[(person, t)] = w.tell(sentence)
        pending += [(p, s) for p, s in ((person, t), (person, t + 1))
                    if s >= 1 and (p, s) in told and (p, s - 1) in told]
        last = n == len(facts) - 1
        while pending and asked < QUESTIONS_PER_STORY and (last or rng.random() < 0.5):
            person_q, s = pending.pop(rng.randrange(len(pending)))
            places = timeline[person_q]
            w.ask(f"Where was {person_q} before the {places[s]}?", places[s - 1],
                  [told[(person_q, s - 1)], told[(person_q, s)]])
            asked += 1
            if not last:
                break
