"""Tags in everyday words: ImageNet-1k's classes rolled up WordNet's hierarchy into the words people
search and write ("dog", "cat", "pizza", "airplane"), each with the summed probability of its
classes and its most probable class: "dog 0.93 — golden retriever 0.61".

The table ``everyday_tags.json`` beside this module gives each class, in logit order, its everyday
word or none. It was made once by ``scripts/make_everyday_tags.py`` from Princeton WordNet 3.0 and
timm's list of the class ids (its ``provenance`` says which versions), so nothing is needed at run
time: no well-kept PyPI package ships WordNet's data.

The rule: a class takes the most specific of its everyday ancestors, the synsets of a curated
vocabulary (165 words, listed in the script: basic-level words such as "dog", "cat", "pizza",
"airplane", then broader ones, "bird", "food", "vehicle", "animal") found among the class itself
and its hypernyms: the one with no other everyday ancestor of the class below it, the nearest if
several, then the one listed first. Every dog breed is "dog", tabby and Persian are "cat" (a tiger
is "tiger"), espresso is "coffee", goldfish "fish", airliner "airplane"; the few placements that
mislead are overridden there (tusker: "elephant", hen: "chicken"). 229 classes (abacus, altar, ...)
have no everyday word and add to no tag.

For search, the table also maps synonyms to everyday words (:func:`synonym_words`): WordNet's other
names for a word's synsets ("automobile": car, "aeroplane": airplane) and of a few synsets below
them (puppy, doggy, hound: dog; kitty: cat), by the rule in the script.

    >>> everyday_tags(probabilities, k=3)  # (B, 1000) softmax rows -> per image, best first
    [[EverydayTag(word='dog', probability=0.93, label='golden retriever', label_probability=0.61), ...]]
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import blas

TABLE = Path(__file__).with_name("everyday_tags.json")


@dataclass(frozen=True)
class EverydayTag:
    word: str  # the everyday word ("dog")
    probability: float  # the summed probability of the ImageNet classes that roll up to it
    label: str  # its most probable ImageNet class ("golden retriever")
    label_probability: float  # that class's probability

    def __str__(self) -> str:
        return f"{self.word} {self.probability:.2f} — {self.label} {self.label_probability:.2f}"

    def asdict(self, digits: int = 4) -> dict[str, object]:
        """``{word, probability, label, label_probability}``, probabilities rounded: a record's entry."""
        return {"word": self.word, "probability": round(self.probability, digits), "label": self.label,
                "label_probability": round(self.label_probability, digits)}


@dataclass(frozen=True)
class EverydayOptions:
    """Which everyday tags are reported: the same flags in ``caption``, ``caption-images`` and ``tag-video``."""
    min_tag_probability: float = 0.0  # leave out everyday tags whose summed probability is below this
    exclude_tags: tuple[str, ...] = ()  # everyday words never reported, comma-separated (e.g. clothing,animal)

    def __post_init__(self) -> None:
        if not 0 <= self.min_tag_probability <= 1:
            raise ValueError("min_tag_probability must be in [0, 1]")
        words = tuple(w.strip().lower() for item in self.exclude_tags for w in item.split(",") if w.strip())
        object.__setattr__(self, "exclude_tags", words)  # "a,b" and ("a", "b") alike

    def recorded(self) -> dict[str, object]:
        """The options as a record's ``options`` holds them."""
        return {"min_tag_probability": self.min_tag_probability, "exclude_tags": list(self.exclude_tags)}


@dataclass(frozen=True)
class EverydayTable:
    words: tuple[str, ...]  # the everyday words used, in first-class order
    word_of_class: np.ndarray  # (1000,) index into words, -1 for a class without one
    names: tuple[str, ...]  # the ImageNet class names (torchvision's), in logit order
    wnids: tuple[str, ...]  # the classes' WordNet ids, in logit order
    members: np.ndarray  # (1000, W) 1 where a class rolls up to a word: probabilities @ members sums them
    provenance: dict
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)  # term -> the everyday words it names

    def classes_of(self, word: str) -> list[int]:
        """The ImageNet classes that roll up to ``word``."""
        return np.flatnonzero(self.word_of_class == self.words.index(word)).tolist()


@functools.lru_cache(maxsize=1)
def everyday_table() -> EverydayTable:
    """The committed table, read once on first use."""
    data = json.loads(TABLE.read_text())
    rows = data["classes"]
    words = tuple(dict.fromkeys(r[2] for r in rows if r[2]))
    index = {w: i for i, w in enumerate(words)}
    word_of_class = np.array([index.get(r[2], -1) for r in rows], dtype=np.int64)
    members = np.zeros((len(rows), len(words)))
    mapped = np.flatnonzero(word_of_class >= 0)
    members[mapped, word_of_class[mapped]] = 1.0
    return EverydayTable(words, word_of_class, tuple(r[1] for r in rows), tuple(r[0] for r in rows), members,
                         data["provenance"], {t: tuple(ws) for t, ws in data.get("synonyms", {}).items()})


def synonym_words(term: str) -> tuple[str, ...]:
    """The everyday words ``term`` names ("automobile": ("car",), "bike": ("motorcycle", "bicycle"));
    () for any other term, an everyday word itself included. Case-insensitive, exact (no plurals:
    the caller folds them)."""
    return everyday_table().synonyms.get(" ".join(term.lower().split()), ())


def roll_up(probabilities: np.ndarray) -> np.ndarray:
    """(B, 1000) class probabilities -> (B, W) summed probability of each everyday word."""
    with blas.one_thread():
        return np.asarray(probabilities, dtype=np.float64) @ everyday_table().members


def everyday_tags(probabilities: np.ndarray, *, k: int = 5, options: EverydayOptions = EverydayOptions()
                  ) -> list[list[EverydayTag]]:
    """The top-``k`` everyday tags of each row of (B, 1000) class probabilities, best first, less
    those under ``options.min_tag_probability`` or in ``options.exclude_tags``."""
    table = everyday_table()
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    sums = roll_up(probabilities)
    excluded = set(options.exclude_tags)
    result = []
    for row, word_sums in zip(probabilities, sums):
        tags: list[EverydayTag] = []
        for w in np.argsort(-word_sums, kind="stable"):
            if len(tags) >= k or word_sums[w] < max(options.min_tag_probability, 1e-12):
                break
            if table.words[w] in excluded:
                continue
            classes = np.flatnonzero(table.word_of_class == w)
            best = classes[np.argmax(row[classes])]
            tags.append(EverydayTag(table.words[w], float(word_sums[w]), table.names[best], float(row[best])))
        result.append(tags)
    return result
