"""Words for search: content nouns from captions, and matching queries to tag labels.

No NLP dependency: captions from this model are short, simple English ("a black dog runs
on the grass"), so a small stopword list (function words, colours, numbers, common
caption verbs and adjectives) plus dropping "-ing" forms leaves mostly the nouns
("dog", "grass"). Words are lower-cased and plurals folded ("dogs" -> "dog"), and queries
go through the same folding, so "Dogs" finds "dog". A query that is a synonym of an everyday
word (:func:`captioning.everyday.synonym_words`, from WordNet) also finds that word: "puppies",
"doggy" and "hound" find "dog", "automobile" finds "car".
"""
from __future__ import annotations

import re

from captioning.everyday import synonym_words

_WORD = re.compile(r"[a-z]+")

_FUNCTION = """a an the and or but of in on at to for from with without by over under into onto out up down
off through across along around near next behind front top bottom beside between while as is are was were be
been being has have had do does did it its this that these those there here their his her him he she they them
we you i me my our your who what which where when how some any each other another one two three four five six
seven eight nine ten many several few all both very just only also then than too not no yes about above below
against after before during toward towards away back side another onto inside outside together alone"""
_COLOURS = """black white brown red blue green yellow orange pink purple gray grey dark light colorful colored
golden tan silver"""
_VERBS = """runs run sits sit stands stand walks walk jumps jump plays play rides ride holds hold looks look wears
wear lies lie lays lay swims swim climbs climb catches catch carries carry throws throw kicks kick stares stare
waits wait watches watch poses pose smiles smile talks talk eats eat drinks drink pulls pull pushes push leans
lean dives dive crosses cross races race chases chase hangs hang dressed covered
filled made sitting standing walking running playing lying"""
_ADJECTIVES = """big small large little young old tall long short high wet dry snowy grassy sandy rocky muddy
busy empty open other several lots lot group front middle different same close closeup wooden striped blond
blonde bald curly fluffy furry shaggy pretty happy funny shirtless"""
STOPWORDS = frozenset(" ".join((_FUNCTION, _COLOURS, _VERBS, _ADJECTIVES)).split()) | {"unk", "pad", "start", "end"}

# nouns that end in -ing (other -ing words in captions are verbs: "running", "playing")
_ING_NOUNS = frozenset("""building buildings clothing ceiling railing ring rings string swing swings wedding painting
spring king wing wings morning evening stocking sibling pudding icing""".split())
_IRREGULAR = {"men": "man", "women": "woman", "children": "child", "feet": "foot", "teeth": "tooth",
              "mice": "mouse", "geese": "goose", "wolves": "wolf", "knives": "knife", "leaves": "leaf"}
_KEEP_S = frozenset("""grass glass bus dress canvas cactus octopus walrus bass chess mattress compass iris
gas lens""".split())


def singular(word: str) -> str:
    """Fold a lower-case plural to its singular with simple English rules."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) <= 3 or word in _KEEP_S or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def caption_words(text: str) -> list[str]:
    """Content words of a caption, singular, in order, without repeats."""
    words: list[str] = []
    for w in _WORD.findall(text.lower()):
        if len(w) < 3 or w in STOPWORDS or (w.endswith("ing") and w not in _ING_NOUNS):
            continue
        w = singular(w)
        if w not in STOPWORDS and w not in words:
            words.append(w)
    return words


def _fold(text: str) -> list[str]:
    return [singular(w) for w in _WORD.findall(text.lower())]


def matches(label: str, query: str) -> bool:
    """True when ``label`` answers ``query``: the same text (case-insensitive) or every
    query word among the label's words ("cat" matches "tiger cat" and "cats")."""
    label_l, query_l = label.lower().strip(), " ".join(query.lower().split())
    if not query_l:
        return False
    if label_l == query_l:
        return True
    wanted = _fold(query_l)
    have = set(_fold(label_l))
    return bool(wanted) and all(w in have for w in wanted)


def synonym_targets(query: str) -> tuple[str, ...]:
    """The everyday words ``query`` names as a synonym, as given ("shades": sunglasses) or with its
    plurals folded ("puppies": dog); () when it names none (an everyday word itself included)."""
    given = " ".join(query.lower().split())
    return tuple(dict.fromkeys(synonym_words(given) + synonym_words(" ".join(_fold(given)))))
