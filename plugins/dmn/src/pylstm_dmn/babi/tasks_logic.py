"""Tasks about relations rather than people moving: 4 (two-argument relations), 15 (deduction),
16 (induction), 17 (positions), 18 (sizes) and 19 (path finding).

Maps (4, 19) and shapes (17) live on a grid: ``The kitchen is north of the garden.`` puts the
kitchen on the cell just north of the garden, as in the published world, so every answer
follows from the statements. Sizes (18) are a hidden order of the objects; only what the
statements imply is asked.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pylstm_dmn.babi.world import PLACES, Balancer, StoryWriter

__all__ = ["story_4", "story_15", "story_16", "story_17", "story_18", "story_19"]

Cell = tuple[int, int]
DIRECTIONS: dict[str, Cell] = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}
ANIMALS = {"mouse": "mice", "sheep": "sheep", "wolf": "wolves", "cat": "cats"}  # task 15
FEARFUL = ("Gertrude", "Winona", "Jessica", "Emily")
SPECIES = ("swan", "lion", "frog", "rhino")  # task 16
COLORS = ("white", "green", "yellow", "gray")
COLORED = ("Lily", "Bernhard", "Greg", "Julius", "Brian")
SHAPES = ("triangle", "red square", "blue square", "red sphere", "pink rectangle",
          "yellow square")
RELATIONS: dict[str, Cell] = {"to the left of": (-1, 0), "to the right of": (1, 0),
                              "above": (0, 1), "below": (0, -1)}
INVERSE = {"to the left of": "to the right of", "to the right of": "to the left of",
           "above": "below", "below": "above"}
BOXES = ("box", "box of chocolates", "chocolate", "chest", "container", "suitcase")


def _add(a: Cell, b: Cell) -> Cell:
    return a[0] + b[0], a[1] + b[1]


def _grid_tree(rng: random.Random, names: Sequence[str], n: int) -> list[tuple[str, str, str]]:
    """``n`` of ``names`` on grid cells, each new one next to an earlier one: the edges
    ``(a, direction, b)`` meaning a is that direction of b, in the order they were placed."""
    nodes = rng.sample(list(names), n)
    cell = {nodes[0]: (0, 0)}
    taken = {(0, 0)}
    edges = []
    for node in nodes[1:]:
        options = [(b, d) for b in cell for d in DIRECTIONS
                   if _add(cell[b], DIRECTIONS[d]) not in taken]
        base, d = rng.choice(options)
        cell[node] = _add(cell[base], DIRECTIONS[d])
        taken.add(cell[node])
        edges.append((node, d, base))
    return edges


def _tell_edges(rng: random.Random, w: StoryWriter,
                edges: list[tuple[str, str, str]]) -> dict[tuple[str, str], int]:
    """Say the edges in random order, each either way round; line of each (a, b) and (b, a)."""
    order = list(edges)
    rng.shuffle(order)
    lines = {}
    for a, d, b in order:
        if rng.random() < 0.5:
            line = w.tell(f"The {a} is {d} of the {b}.")
        else:
            line = w.tell(f"The {b} is {OPPOSITE[d]} of the {a}.")
        lines[(a, b)] = lines[(b, a)] = line
    return lines


def story_4(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Two-argument relations: ``The office is north of the bedroom.`` then ``What is north of
    the bedroom?`` or ``What is the bedroom south of?``."""
    edges = _grid_tree(rng, PLACES, 3)
    lines = _tell_edges(rng, w, edges)
    a, d, b = rng.choice(edges)  # a is d of b
    question, answer = rng.choice([
        (f"What is {d} of the {b}?", a), (f"What is the {a} {d} of?", b),
        (f"What is {OPPOSITE[d]} of the {a}?", b), (f"What is the {b} {OPPOSITE[d]} of?", a)])
    w.ask(question, answer, [lines[(a, b)]])


def story_19(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Path finding: five ``The kitchen is north of the garden.`` statements, then ``How do you
    go from the kitchen to the garden?`` answered with the steps, e.g. ``s,e``."""
    edges = _grid_tree(rng, PLACES, 6)
    lines = _tell_edges(rng, w, edges)
    step: dict[str, dict[str, str]] = {}  # place -> neighbour -> direction to walk
    for a, d, b in edges:
        step.setdefault(b, {})[a] = d
        step.setdefault(a, {})[b] = OPPOSITE[d]
    paths = [(s, m, t) for s in step for m in step[s] for t in step[m] if t != s]
    start, middle, end = rng.choice(paths)
    answer = [step[start][middle][0], step[middle][end][0]]
    w.ask(f"How do you go from the {start} to the {end}?", answer,
          [lines[(start, middle)], lines[(middle, end)]])


def story_15(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Basic deduction: ``Sheep are afraid of wolves. Gertrude is a sheep.`` then ``What is
    gertrude afraid of?`` (lower-case name, as published) answered ``wolf``."""
    kinds = list(ANIMALS)
    fears = {k: rng.choice([x for x in kinds if x != k]) for k in kinds}
    kind_of = {name: rng.choice(kinds) for name in FEARFUL}
    facts = [("rule", k) for k in kinds] + [("member", name) for name in FEARFUL]
    rng.shuffle(facts)
    line: dict[tuple[str, str], int] = {}
    for kind, x in facts:
        if kind == "rule":
            plural = ANIMALS[x]
            sentence = f"{plural[0].upper()}{plural[1:]} are afraid of {ANIMALS[fears[x]]}."
        else:
            sentence = f"{x} is a {kind_of[x]}."
        line[(kind, x)] = w.tell(sentence)
    for name in rng.sample(FEARFUL, len(FEARFUL)):
        w.ask(f"What is {name.lower()} afraid of?", fears[kind_of[name]],
              [line[("member", name)], line[("rule", kind_of[name])]])


def story_16(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Basic induction: ``Lily is a swan. Lily is white. Greg is a swan.`` then ``What color
    is Greg?`` answered ``white`` (in one story, animals of one species share a colour)."""
    color_of = {s: rng.choice(COLORS) for s in SPECIES}
    *others, target = rng.sample(COLORED, len(COLORED))
    species = {name: rng.choice(SPECIES) for name in others}
    witness = rng.choice(others)
    species[target] = species[witness]
    # A random interleaving of the names' facts, each name's species before its colour.
    todo = {name: ["is", "color"] for name in others}
    facts = []
    while todo:
        name = rng.choice(list(todo))
        facts.append((name, todo[name].pop(0)))
        if not todo[name]:
            del todo[name]
    line: dict[tuple[str, str], int] = {}
    for name, fact in facts:
        word = f"a {species[name]}" if fact == "is" else color_of[species[name]]
        line[(name, fact)] = w.tell(f"{name} is {word}.")
    target_line = w.tell(f"{target} is a {species[target]}.")
    w.ask(f"What color is {target}?", color_of[species[target]],
          [target_line, line[(witness, "is")], line[(witness, "color")]])


def story_17(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Positional reasoning: two statements about three shapes, then yes/no questions about the
    pair no statement relates (``Is the red square to the left of the triangle?``), as many
    yes as no."""
    a, b, c = rng.sample(SHAPES, 3)
    cell = {b: (0, 0)}
    rel1 = rng.choice(list(RELATIONS))
    cell[a] = RELATIONS[rel1]
    anchor = rng.choice([a, b])
    rel2 = rng.choice([r for r in RELATIONS
                       if _add(cell[anchor], RELATIONS[r]) not in cell.values()])
    cell[c] = _add(cell[anchor], RELATIONS[rel2])
    first = _relation_sentence(rng, a, rel1, b)
    second = _relation_sentence(rng, c, rel2, anchor)
    lines = [w.tell(first), w.tell(second)]
    other = b if anchor == a else a
    yes: list[str] = []
    no: list[str] = []
    for p, q in ((other, c), (c, other)):
        dx, dy = cell[p][0] - cell[q][0], cell[p][1] - cell[q][1]
        for rel, (ux, uy) in RELATIONS.items():
            holds = dx * ux > 0 or dy * uy > 0  # p lies on that side of q
            (yes if holds else no).append(f"Is the {p} {rel} the {q}?")
    k = min(len(yes), len(no))
    chosen = [(q, "yes") for q in rng.sample(yes, k)] + [(q, "no") for q in rng.sample(no, k)]
    rng.shuffle(chosen)
    for question, answer in chosen:
        w.ask(question, answer, lines)


def _relation_sentence(rng: random.Random, p: str, rel: str, q: str) -> str:
    """``p`` is ``rel`` of ``q``, said either way round."""
    if rng.random() < 0.5:
        return f"The {p} is {rel} the {q}."
    return f"The {q} is {INVERSE[rel]} the {p}."


def story_18(rng: random.Random, w: StoryWriter, balancer: Balancer) -> None:
    """Size reasoning: ``The box is bigger than the chocolate.`` / ``The chocolate fits inside
    the box.``, then ``Does the chocolate fit in the suitcase?`` or ``Is the box bigger than
    the chest?`` where a chain of statements decides it (support: the chain)."""
    size = dict(zip(BOXES, rng.sample(range(len(BOXES)), len(BOXES)), strict=True))
    smaller: dict[str, list[tuple[str, int]]] = {o: [] for o in BOXES}  # o -> (bigger, line)
    stated: list[tuple[str, str]] = []
    asked: list[tuple[str, str]] = []
    for _ in range(5):
        for _ in range(rng.randint(1, 2) if stated else 2):
            fresh = [(s, t) for s in BOXES for t in BOXES
                     if size[s] < size[t] and _chain(smaller, s, t) is None]
            if not fresh:
                break
            s, t = rng.choice(fresh)
            if rng.random() < 0.5:
                line = w.tell(f"The {s} fits inside the {t}.")
            else:
                line = w.tell(f"The {t} is bigger than the {s}.")
            smaller[s].append((t, line))
            stated.append((s, t))
        pairs = [(s, t) for s in BOXES for t in BOXES
                 if (s, t) not in asked and (chain := _chain(smaller, s, t)) and len(chain) >= 2]
        if not pairs:
            pairs = [(s, t) for s, t in stated if (s, t) not in asked]
        if not pairs:
            return
        candidates = [((s, t, a), a) for s, t in pairs for a in ("yes", "no")]
        s, t, answer = balancer.pick(rng, candidates)
        chain = _chain(smaller, s, t)
        assert chain
        asked.append((s, t))
        if answer == "yes":
            question = rng.choice([f"Does the {s} fit in the {t}?",
                                   f"Is the {t} bigger than the {s}?"])
        else:
            question = rng.choice([f"Does the {t} fit in the {s}?",
                                   f"Is the {s} bigger than the {t}?"])
        w.ask(question, answer, chain)


def _chain(smaller: dict[str, list[tuple[str, int]]], s: str, t: str) -> list[int] | None:
    """The lines of a shortest chain of statements showing ``s`` is smaller than ``t``."""
    frontier: list[tuple[str, list[int]]] = [(s, [])]
    seen = [s]
    while frontier:
        nxt = []
        for node, path in frontier:
            for bigger, line in smaller[node]:
                if bigger == t:
                    return [*path, line]
                if bigger not in seen:
                    seen.append(bigger)
                    nxt.append((bigger, [*path, line]))
        frontier = nxt
    return None
