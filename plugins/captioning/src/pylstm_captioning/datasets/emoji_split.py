"""The emoji dataset's held-out rule: valid and test are new combinations of trained parts.

Whole images are held out, never single captions. The rule, exactly:

**Base.** An emoji's *base* is the first of these that names another fully-qualified emoji:

1. the sequence without its skin-tone modifiers U+1F3FB..U+1F3FF
   ("woman kneeling: medium skin tone" -> "woman kneeling";
   "man: light skin tone, red hair" -> "man: red hair");
2. the sequence without a ZWJ gender sign (U+200D U+2640/U+2642)
   ("woman kneeling" -> "person kneeling", "man: beard" -> "person: beard");
3. the sequence with a leading MAN U+1F468 / WOMAN U+1F469 replaced by PERSON U+1F9D1
   ("woman office worker" -> "office worker", "man: red hair" -> "person: red hair");
4. the name's part before ": " ("family: man, woman, boy" -> "family",
   "kiss: woman, man" -> "kiss", "women holding hands: light skin tone, dark skin tone" ->
   "women holding hands").

U+FE0F is ignored when sequences are compared. Following bases from an emoji gives its
*ancestors* ("woman kneeling: medium skin tone" -> "woman kneeling" -> "person kneeling").

**Candidates.** An emoji may be held out only if it is a *variant* (it has a base) or its name
is qualified with ": " (flags "flag: Kosovo", keycaps "keycap: 7"), and it is not in
``keep_in_train`` (the loader passes emoji whose rendering is pixel-identical to another's, so
that no held-out image is one the model trained on under another name).

**Greedy selection.** Candidates fall into three kinds: *skin-tone variants* (the sequence
holds a modifier U+1F3FB..U+1F3FF), *other variants* (gender, hair, family and couple
members) and *qualified names* (no base). Each kind is a queue in :func:`~.base.seeded_order`
(SHA-256 of seed and sequence: hash-seed and file-order independent). The queues take turns
(skin tone, other, qualified, skin tone, ...; an empty queue drops out), so the rare kinds are
represented rather than swamped by the ~1,800 skin-tone variants (with 300 + 300 held out,
about a quarter are other variants and a dozen are flags and keycaps). A candidate is held out
when, with all emoji held out so far:

* none of its ancestors is held out (its base and the base's base stay in train),
* it is no held-out emoji's ancestor, and
* every word of its name (:func:`~.base.caption_words`) still occurs in the name of at least
  one training emoji once it leaves train ("flag: South Korea" qualifies through
  "flag: South Sudan" and "flag: North Korea", "flag: Turkey" through the bird "turkey";
  "flag: Kosovo" never does).

Otherwise it is passed over for good (these conditions only tighten as emoji leave train).
Selection stops at ``n_valid + n_test`` emoji. They are then ranked by kind (stable, so in
selection order within a kind) and the ``i``-th (from 0) goes to test when
``(i + 1) * n_test // total`` exceeds ``i * n_test // total``, else to valid, so valid and
test get the same mix of kinds.

Every held-out name's words are therefore in the training names (coverage 1.0 for primary
captions); CLDR keyword references are not constrained, and the loader measures and reports
their coverage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

from pylstm.plugins import TaskError
from pylstm_captioning.datasets.base import caption_words, seeded_order
from pylstm_captioning.datasets.unicode_data import EmojiEntry

__all__ = ["ancestors", "emoji_bases", "hold_out"]

_SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
_ZWJ, _FEMALE, _MALE = 0x200D, 0x2640, 0x2642
_MAN, _WOMAN, _PERSON = 0x1F468, 0x1F469, 0x1F9D1


def _key(cps: Sequence[int]) -> tuple[int, ...]:
    return tuple(cp for cp in cps if cp != 0xFE0F)


def _without_gender(cps: tuple[int, ...]) -> tuple[int, ...]:
    out: list[int] = []
    i = 0
    while i < len(cps):
        if cps[i] == _ZWJ and i + 1 < len(cps) and cps[i + 1] in (_FEMALE, _MALE):
            i += 2
            continue
        out.append(cps[i])
        i += 1
    return tuple(out)


def emoji_bases(entries: Sequence[EmojiEntry]) -> dict[str, str | None]:
    """Each emoji's base emoji (rules 1-4 of the module docstring), or ``None``."""
    by_key = {_key(e.codepoints): e.emoji for e in entries}
    by_name = {e.name: e.emoji for e in entries}
    bases: dict[str, str | None] = {}
    for e in entries:
        cps = _key(e.codepoints)
        tries = [tuple(cp for cp in cps if cp not in _SKIN_TONES), _without_gender(cps)]
        if cps and cps[0] in (_MAN, _WOMAN):
            tries.append((_PERSON, *cps[1:]))
        base = next((by_key[t] for t in tries if t != cps and t in by_key), None)
        if base is None and ": " in e.name:
            stem = by_name.get(e.name.split(": ", 1)[0])
            base = stem if stem != e.emoji else None
        bases[e.emoji] = base
    return bases


def ancestors(emoji: str, bases: dict[str, str | None]) -> list[str]:
    """Base, base's base, ... of ``emoji`` (nearest first)."""
    chain: list[str] = []
    cur = bases.get(emoji)
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = bases.get(cur)
    return chain


def hold_out(
    entries: Sequence[EmojiEntry],
    n_valid: int,
    n_test: int,
    seed: int,
    keep_in_train: Collection[str] = (),
) -> tuple[list[str], list[str], list[str]]:
    """Train, valid and test emoji under the module docstring's rule (each in ``entries``'
    order). Raises :class:`~pylstm.plugins.TaskError` when fewer emoji qualify than asked."""
    bases = emoji_bases(entries)
    words = {e.emoji: set(caption_words(e.name)) for e in entries}
    # document frequency of each word among the names still in train
    df: Counter[str] = Counter(w for ws in words.values() for w in ws)
    keep = set(keep_in_train)
    queues: list[list[str]] = [[], [], []]
    for e in entries:
        if e.emoji in keep or (bases[e.emoji] is None and ": " not in e.name):
            continue
        if bases[e.emoji] is None:
            queues[2].append(e.emoji)
        else:
            queues[0 if _SKIN_TONES.intersection(e.codepoints) else 1].append(e.emoji)
    kind = {em: k for k, q in enumerate(queues) for em in q}
    turns = [iter(seeded_order(q, seed)) for q in queues if q]
    want = n_valid + n_test
    held: list[str] = []
    held_set: set[str] = set()
    protected: set[str] = set()  # ancestors of held-out emoji: they must stay in train
    while turns and len(held) < want:
        for turn in list(turns):
            if len(held) == want:
                break
            for em in turn:
                chain = ancestors(em, bases)
                if em in protected or any(a in held_set for a in chain):
                    continue
                if any(df[w] < 2 for w in words[em]):
                    continue
                held.append(em)
                held_set.add(em)
                protected.update(chain)
                df.subtract(words[em])
                break
            else:
                turns.remove(turn)
    if len(held) < want:
        raise TaskError(
            f"valid_size + test_size: expected at most {len(held)} (emoji that qualify for "
            f"hold-out with seed {seed}), got {want}"
        )
    # kinds contiguous, then every (want / n_test)-th to test: each kind splits evenly
    ranked = sorted(held, key=lambda em: kind[em])
    test_set = {em for i, em in enumerate(ranked) if (i + 1) * n_test // want > i * n_test // want}
    valid_set = held_set - test_set
    order = [e.emoji for e in entries]
    train = [em for em in order if em not in held_set]
    valid = [em for em in order if em in valid_set]
    test = [em for em in order if em in test_set]
    return train, valid, test
