"""A small ASL-like grammar: gloss sentences with their English text.

Gloss order follows common ASL patterns (time first, topic before comment, question word and
negation last): ``YESTERDAY ME STORE GO`` -> "I went to the store yesterday."
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUBJECTS = {"ME": ("I", "am", "was"), "YOU": ("you", "are", "were"), "HE": ("he", "is", "was"),
            "SHE": ("she", "is", "was"), "WE": ("we", "are", "were"), "THEY": ("they", "are", "were")}
TIMES = {"TODAY": ("present", "today"), "NOW": ("present", "now"), "YESTERDAY": ("past", "yesterday"),
         "TOMORROW": ("future", "tomorrow")}
PLACES = {"SCHOOL": "school", "HOME": "home", "STORE": "the store", "WORK": "work",
          "HOSPITAL": "the hospital", "PARK": "the park"}
FOODS = {"APPLE": "an apple", "BREAD": "bread", "SOUP": "soup"}
DRINKS = {"WATER": "water", "COFFEE": "coffee", "MILK": "milk"}
THINGS = {"BOOK": "a book", "CAR": "a car", "PHONE": "a phone", "HOUSE": "a house"}
PEOPLE = {"MOTHER": "my mother", "FATHER": "my father", "FRIEND": "a friend", "TEACHER": "the teacher",
          "DOCTOR": "the doctor"}
ADJECTIVES = {"HAPPY": "happy", "TIRED": "tired", "SICK": "sick", "HUNGRY": "hungry"}
# verb gloss -> (base, third person, past, object kinds)
VERBS = {
    "GO": ("go", "goes", "went", "place"),
    "SEE": ("see", "sees", "saw", "person thing"),
    "WANT": ("want", "wants", "wanted", "thing food drink"),
    "LIKE": ("like", "likes", "liked", "thing food drink person"),
    "EAT": ("eat", "eats", "ate", "food"),
    "DRINK": ("drink", "drinks", "drank", "drink"),
    "BUY": ("buy", "buys", "bought", "thing food drink"),
    "HELP": ("help", "helps", "helped", "person"),
}
FUNCTION = {"NOT", "WHERE", "WHAT"}


def base_glosses() -> list[str]:
    groups = (SUBJECTS, TIMES, PLACES, FOODS, DRINKS, THINGS, PEOPLE, ADJECTIVES, VERBS)
    return [g for group in groups for g in group] + sorted(FUNCTION)


@dataclass(frozen=True)
class Sentence:
    glosses: tuple[str, ...]
    text: str


class Grammar:
    """Samples sentences; ``extra_nouns`` grows the vocabulary with nouns of every kind
    (``PLACE-003`` -> "place 3", ``FOOD-017`` -> "food 17"...), so large vocabularies are used."""

    def __init__(self, extra_nouns: int = 0):
        self.objects = {"place": dict(PLACES), "food": dict(FOODS), "drink": dict(DRINKS), "person": dict(PEOPLE),
                        "thing": dict(THINGS)}
        kinds = list(self.objects)
        self.extra = []
        for i in range(extra_nouns):
            kind = kinds[i % len(kinds)]
            gloss = f"{kind.upper()}-{i:03d}"
            self.objects[kind][gloss] = f"{kind} {i}"
            self.extra.append(gloss)

    @property
    def glosses(self) -> list[str]:
        return base_glosses() + self.extra

    def sample(self, rng: np.random.Generator) -> Sentence:
        kind = rng.choice(["statement", "statement", "negation", "where", "what", "adjective"])
        subj = str(rng.choice(list(SUBJECTS)))
        time = str(rng.choice(list(TIMES))) if rng.random() < 0.6 or kind == "adjective" else None
        tense, when = TIMES[time] if time else ("present", "")
        lead = (time,) if time else ()
        if kind == "adjective":
            adj = str(rng.choice(list(ADJECTIVES)))
            text = _clause(subj, tense, None, ADJECTIVES[adj], when)
            return Sentence((*lead, subj, adj), text)
        if kind == "where":
            return Sentence((*lead, subj, "GO", "WHERE"), _question("where", subj, tense, "go", when))
        if kind == "what":
            verb = str(rng.choice(["WANT", "LIKE", "EAT", "BUY", "SEE"]))
            return Sentence((*lead, subj, verb, "WHAT"), _question("what", subj, tense, VERBS[verb][0], when))
        verb = str(rng.choice(list(VERBS)))
        options = [g for k in VERBS[verb][3].split() for g in self.objects[k]]
        obj = str(rng.choice(options))
        phrase = self._object_phrase(verb, obj)
        negated = kind == "negation"
        glosses = (*lead, subj, obj, verb, *(("NOT",) if negated else ()))
        return Sentence(glosses, _clause(subj, tense, verb if not negated else f"!{verb}", phrase, when))

    def sample_long(self, rng: np.random.Generator, shortest: int, longest: int) -> Sentence:
        """Clauses joined into one sentence of ``shortest`` to ``longest`` glosses, the way
        PHOENIX-2014-T's weather forecasts run several statements together."""
        while True:
            target, clauses = int(rng.integers(shortest, longest + 1)), []
            while sum(len(c.glosses) for c in clauses) < target:
                clauses.append(self.sample(rng))
            if sum(len(c.glosses) for c in clauses) <= longest:
                return Sentence(tuple(g for c in clauses for g in c.glosses), " ".join(c.text for c in clauses))

    def _object_phrase(self, verb: str, obj: str) -> str:
        kind = next(k for k, group in self.objects.items() if obj in group)
        phrase = self.objects[kind][obj]
        return f"to {phrase}" if verb == "GO" and obj != "HOME" else phrase


def _verb(subj: str, tense: str, verb: str) -> str:
    negated = verb.startswith("!")
    base, third, past, _ = VERBS[verb.lstrip("!")]
    he = subj in ("HE", "SHE")
    if tense == "future":
        return f"will not {base}" if negated else f"will {base}"
    if tense == "past":
        return f"did not {base}" if negated else past
    if negated:
        return f"does not {base}" if he else f"do not {base}"
    return third if he else base


def _clause(subj: str, tense: str, verb: str | None, complement: str, when: str) -> str:
    who, be_now, be_past = SUBJECTS[subj]
    if verb is None:
        be = {"present": be_now, "past": be_past, "future": "will be"}[tense]
        words = [who, be, complement]
    else:
        words = [who, _verb(subj, tense, verb), complement]
    if when:
        words.append(when)
    return _capitalise(" ".join(words)) + "."


def _question(wh: str, subj: str, tense: str, verb_base: str, when: str) -> str:
    who = SUBJECTS[subj][0]
    aux = {"past": "did", "future": "will"}.get(tense, "does" if subj in ("HE", "SHE") else "do")
    words = [wh, aux, who, verb_base] + ([when] if when else [])
    return _capitalise(" ".join(words)) + "?"


def _capitalise(s: str) -> str:
    return s[0].upper() + s[1:]
