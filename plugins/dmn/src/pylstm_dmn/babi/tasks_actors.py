"""Tasks whose stories are actors moving and handling objects: 1, 2, 3, 5, 6, 7, 8 and 20.

Each ``story_N(rng, writer, balancer)`` writes one story into ``writer`` while simulating an
:class:`~pylstm_dmn.babi.world.ActorWorld`; answers and support ids come from the world state.
"""

from __future__ import annotations

import random

from pylstm_dmn.babi.world import (
    ACTORS,
    MOVE_VERBS,
    OBJECTS,
    PLACES,
    ActorWorld,
    Balancer,
    Give,
    StoryWriter,
    known,
)

__all__ = ["story_1", "story_2", "story_3", "story_5", "story_6", "story_7", "story_8",
           "story_20"]

QUESTIONS_PER_STORY = 5
COUNTS = ("none", "one", "two", "three")
GIVERS = ("Bill", "Fred", "Jeff", "Mary")  # task 5's cast
# Task 20: a state, where it sends an actor, and what they fetch there.
MOTIVES = {"hungry": ("kitchen", "apple"), "thirsty": ("kitchen", "milk"),
           "tired": ("bedroom", "pajamas"), "bored": ("garden", "football")}
MOTIVATED = ("Sumit", "Yann", "Antoine", "Jason")


def _move_somewhere(world: ActorWorld, actor: str) -> None:
    world.move(actor, world.rng.choice([p for p in world.places if p != world.pos[actor]]))


def story_1(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Single supporting fact: ``Where is Mary?`` after two moves per question."""
    world = ActorWorld(w, rng, ACTORS)
    for _ in range(QUESTIONS_PER_STORY):
        for _ in range(2):
            _move_somewhere(world, rng.choice(ACTORS))
        actor = rng.choice([a for a in ACTORS if a in world.moved_at])
        w.ask(f"Where is {actor}?", world.pos[actor], [world.moved_at[actor]])


def story_6(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Yes/no questions: ``Is Mary in the kitchen?``, object handling in between."""
    world = ActorWorld(w, rng, ACTORS)
    weights = {"move": 4.0, "get": 1.0, "drop": 1.0}
    for _ in range(QUESTIONS_PER_STORY):
        for _ in range(2):
            world.random_action(weights)
        while not world.moved_at:
            world.random_action(weights)
        candidates = []
        for actor in ACTORS:
            if actor in world.moved_at:
                here = world.pos[actor]
                other = rng.choice([p for p in PLACES if p != here])
                candidates.append(((actor, here), "yes"))
                candidates.append(((actor, other), "no"))
        actor, place = balancer.pick(rng, candidates)
        answer = "yes" if place == world.pos[actor] else "no"
        w.ask(f"Is {actor} in the {place}?", answer, [world.moved_at[actor]])


def story_2(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Two supporting facts: ``Where is the football?`` (who took it, where they went)."""
    world = ActorWorld(w, rng, ACTORS)
    weights = {"move": 4.0, "get": 2.0, "drop": 1.0}
    for _ in range(QUESTIONS_PER_STORY):
        for _ in range(rng.randint(1, 4)):
            world.random_action(weights)
        while not (askable := [o for o in OBJECTS if world.where_is(o)]):
            world.random_action(weights)
        obj = rng.choice(askable)
        found = world.where_is(obj)
        assert found is not None
        w.ask(f"Where is the {obj}?", found[0], found[1])


def story_3(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Three supporting facts: ``Where was the football before the kitchen?``."""
    world = ActorWorld(w, rng, ACTORS)
    weights = {"move": 5.0, "get": 2.0, "drop": 1.0}
    asked: list[str] = []
    for _ in range(QUESTIONS_PER_STORY):
        for _ in range(rng.randint(1, 3)):
            world.random_action(weights)
        while not (candidates := _before_questions(world, asked)):
            world.random_action(weights)
        question, answer, support = rng.choice(candidates)
        asked.append(question)
        w.ask(question, answer, support)


def _before_questions(world: ActorWorld,
                      asked: list[str]) -> list[tuple[str, str, tuple[int, ...]]]:
    """``Where was the O before the L?`` for an object's last two moves between known places,
    L a place it has been only once (so "before the L" names one moment)."""
    out = []
    for obj in world.objects:
        trail = world.trail[obj]
        places = [t.place for t in trail]
        for i in range(max(1, len(trail) - 2), len(trail)):
            prev, here = trail[i - 1], trail[i]
            if known(prev.place) and known(here.place) and places.count(here.place) == 1:
                question = f"Where was the {obj} before the {here.place}?"
                if question not in asked:
                    out.append((question, prev.place, (*prev.seen, *here.arrived)))
    return out


def story_7(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Counting: ``How many objects is Daniel carrying?`` (none, one, two, three)."""
    _holding_story(rng, w, balancer, lists=False)


def story_8(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Lists and sets: ``What is Daniel carrying?`` answered ``milk,apple`` or ``nothing``."""
    _holding_story(rng, w, balancer, lists=True)


def _holding_story(rng: random.Random, w: StoryWriter, balancer: Balancer, lists: bool) -> None:
    world = ActorWorld(w, rng, ACTORS)
    weights = {"move": 2.0, "get": 3.0, "drop": 1.5, "give": 1.5, "meet": 0.5}
    for _ in range(QUESTIONS_PER_STORY):
        for _ in range(rng.randint(1, 3)):
            world.random_action(weights)
        # Only actors who have held something: the lines that show what they hold.
        while not (actors := [a for a in ACTORS if world.carried(a)[1]]):
            world.random_action(weights)
        candidates = [(a, COUNTS[len(world.carried(a)[0])]) for a in actors]
        actor = balancer.pick(rng, candidates)
        held, support = world.carried(actor)
        if lists:
            w.ask(f"What is {actor} carrying?", held or "nothing", support)
        else:
            w.ask(f"How many objects is {actor} carrying?", COUNTS[len(held)], support)


def story_5(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Three-argument relations: ``Fred gave the milk to Jeff.`` then who gave, what, to whom."""
    world = ActorWorld(w, rng, GIVERS)
    weights = {"move": 3.0, "get": 2.0, "drop": 0.5, "give": 6.0, "meet": 0.7}
    for _ in range(QUESTIONS_PER_STORY):
        seen = len(world.gives)
        for _ in range(rng.randint(0, 2)):
            world.random_action(weights)
        while True:
            while len(world.gives) == seen:
                world.random_action(weights)
            if candidates := _give_questions(world.gives, world.gives[-1]):
                break
            seen = len(world.gives)
        question, answer, line = rng.choice(candidates)
        w.ask(question, answer, [line])


def _give_questions(gives: list[Give], g: Give) -> list[tuple[str, str, int]]:
    """The questions about hand-over ``g`` that the story answers one way only: every
    hand-over matching the question has the same answer (support: the latest of them)."""
    forms = [
        (f"What did {g.giver} give to {g.receiver}?",
         lambda x: x.giver == g.giver and x.receiver == g.receiver, lambda x: x.obj),
        (f"Who gave the {g.obj} to {g.receiver}?",
         lambda x: x.obj == g.obj and x.receiver == g.receiver, lambda x: x.giver),
        (f"Who did {g.giver} give the {g.obj} to?",
         lambda x: x.giver == g.giver and x.obj == g.obj, lambda x: x.receiver),
        (f"Who gave the {g.obj}?", lambda x: x.obj == g.obj, lambda x: x.giver),
        (f"Who received the {g.obj}?", lambda x: x.obj == g.obj, lambda x: x.receiver),
    ]
    out = []
    for question, matches, answer_of in forms:
        found = [x for x in gives if matches(x)]
        answers = {answer_of(x) for x in found}
        if len(answers) == 1:
            out.append((question, answer_of(found[-1]), found[-1].line))
    return out


def story_20(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Agent's motivations: ``Yann is hungry.`` then where he will go and why he went or
    took something. Names in the questions are lower-case, as in the published files."""
    state_line: dict[str, int] = {}
    state: dict[str, str] = {}
    steps = {a: ["state", "move", "get"] for a in MOTIVATED}
    while any(steps.values()):
        actor = rng.choice([a for a in MOTIVATED if steps[a]])
        step = steps[actor].pop(0)
        name = actor.lower()
        if step == "state":
            state[actor] = rng.choice(list(MOTIVES))
            state_line[actor] = w.tell(f"{actor} is {state[actor]}.")
            if rng.random() < 0.9:
                place = MOTIVES[state[actor]][0]
                w.ask(f"Where will {name} go?", place, [state_line[actor]])
        elif step == "move":
            place = MOTIVES[state[actor]][0]
            line = w.tell(f"{actor} {rng.choice(MOVE_VERBS)} the {place}.")
            if rng.random() < 0.9:
                w.ask(f"Why did {name} go to the {place}?", state[actor],
                      [state_line[actor], line])
        else:
            obj = MOTIVES[state[actor]][1]
            verb = rng.choice(("picked up", "got", "grabbed", "took"))
            line = w.tell(f"{actor} {verb} the {obj} there.")
            if rng.random() < 0.9:
                w.ask(f"Why did {name} get the {obj}?", state[actor], [state_line[actor], line])
