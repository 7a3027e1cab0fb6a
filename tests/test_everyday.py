"""Tags in everyday words (issue #23): the committed WordNet table, the roll-up, the threshold and
exclude list, and where the tags reach users (API, ``caption``, batch records, video search)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from captioning import EverydayOptions, EverydayTag
from captioning.encoder import imagenet_categories
from captioning.everyday import everyday_table, everyday_tags, roll_up

EVERYDAY_FLAGS = ("min_tag_probability", "exclude_tags")


def _distribution(**probabilities: float) -> np.ndarray:
    """(1000,) probabilities with the named classes (spaces as underscores) set, the rest 0."""
    p = np.zeros(1000)
    for name, value in probabilities.items():
        p[imagenet_categories().index(name.replace("_", " "))] = value
    return p


def test_table_is_in_the_logit_order_and_says_where_it_came_from():
    table = everyday_table()
    assert table.names == imagenet_categories()  # the generator checked each name against its synset's lemmas
    assert len(table.wnids) == 1000 == len(set(table.wnids)) and list(table.wnids) == sorted(table.wnids)
    assert table.wnids[0] == "n01440764" and table.names[0] == "tench" and table.wnids[-1] == "n15075141"
    assert {"wordnet", "class_ids", "class_names", "script", "generated"} <= set(table.provenance)
    assert "WordNet 3.0" in table.provenance["wordnet"] and "timm" in table.provenance["class_ids"]


def test_table_covers_most_classes_with_few_words():
    table = everyday_table()
    mapped = int((table.word_of_class >= 0).sum())
    assert 700 <= mapped < 1000 and 100 <= len(table.words) <= 200
    assert len(table.words) == len(set(table.words)) and all(w == w.lower() for w in table.words)


@pytest.mark.parametrize("word, labels", [
    ("cat", ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]),
    ("coffee", ["espresso"]), ("pizza", ["pizza"]), ("fish", ["goldfish", "tench"]), ("airplane", ["airliner"]),
    ("elephant", ["Indian elephant", "African elephant", "tusker"]), ("bird", ["goldfinch", "robin"]),
    ("car", ["sports car", "cab", "convertible"]), ("bus", ["school bus"]), ("tiger", ["tiger"]),
    ("chicken", ["hen", "cock"]), ("food", ["burrito"]), ("drink", ["eggnog"]),
])
def test_real_classes_roll_up_to_the_word_a_person_would_say(word, labels):
    table = everyday_table()
    for label in labels:
        assert table.words[table.word_of_class[table.names.index(label)]] == word, label


def test_every_dog_breed_is_a_dog_and_nothing_else_is():
    table = everyday_table()
    breeds = [i for i, w in enumerate(table.wnids) if "n02085620" <= w <= "n02113978"]  # Chihuahua .. Mexican hairless
    assert breeds == list(range(151, 269)) and table.classes_of("dog") == breeds
    assert table.words[table.word_of_class[imagenet_categories().index("timber wolf")]] == "wolf"


def test_the_generators_rule_takes_the_most_specific_everyday_ancestor():
    """scripts/make_everyday_tags.py on a made-up hierarchy: a whippet is a greyhound, which is a
    hound (a dog) and a racer (an animal): "dog", though "animal" is fewer steps up."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "make_everyday_tags.py"
    spec = importlib.util.spec_from_file_location("make_everyday_tags", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    synsets = {"whippet": ([], ["greyhound"]), "greyhound": ([], ["hound", "racer"]), "hound": ([], ["dog"]),
               "dog": ([], ["canine"]), "canine": ([], ["animal"]), "racer": ([], ["animal"]), "animal": ([], []),
               "tabby": ([], ["cat"]), "cat": ([], ["animal"]), "rock": ([], [])}
    order = {"dog": 0, "animal": 1}
    assert script.ancestors("whippet", synsets) == {"whippet": 0, "greyhound": 1, "hound": 2, "racer": 2, "dog": 3,
                                                    "animal": 3, "canine": 4}
    assert script.everyday_ancestor("whippet", synsets, order) == "dog"
    assert script.everyday_ancestor("dog", synsets, order) == "dog"  # a class can be its own word
    assert script.everyday_ancestor("tabby", synsets, order) == "animal"  # no nearer word: the broad one
    assert script.everyday_ancestor("rock", synsets, order) is None
    assert script.everyday_ancestor("greyhound", synsets, {"racer": 0, "hound": 1}) == "racer"  # a tie: listed first
    assert script.everyday_ancestor("whippet", synsets, {"dog": 0, "racer": 1}) == "racer"  # else the nearest


def test_roll_up_sums_the_probabilities_of_each_words_classes():
    probabilities = np.random.default_rng(0).dirichlet(np.full(1000, 0.1), size=4)
    table = everyday_table()
    sums = roll_up(probabilities)
    assert sums.shape == (4, len(table.words))
    for w, word in enumerate(table.words):
        np.testing.assert_allclose(sums[:, w], probabilities[:, table.classes_of(word)].sum(1))
    np.testing.assert_allclose(sums.sum(1), probabilities[:, table.word_of_class >= 0].sum(1))
    tags = everyday_tags(probabilities, k=3)
    for row, row_sums, row_tags in zip(probabilities, sums, tags):
        assert [t.probability for t in row_tags] == pytest.approx(sorted(row_sums, reverse=True)[:3])
        for t in row_tags:
            best = max(table.classes_of(t.word), key=lambda c: row[c])
            assert (t.label, t.label_probability) == (table.names[best], pytest.approx(row[best]))


def test_a_word_sums_its_breeds_and_names_the_best_one():
    p = _distribution(golden_retriever=0.5, Labrador_retriever=0.3, tabby=0.15, espresso=0.05)
    tags = everyday_tags(p, k=5)[0]
    assert [t.word for t in tags] == ["dog", "cat", "coffee"]  # nothing else has any probability
    assert tags[0] == EverydayTag("dog", pytest.approx(0.8), "golden retriever", 0.5)
    assert str(tags[0]) == "dog 0.80 — golden retriever 0.50"
    assert tags[0].asdict() == {"word": "dog", "probability": 0.8, "label": "golden retriever",
                                "label_probability": 0.5}
    assert [t.word for t in everyday_tags(p, k=1)[0]] == ["dog"]


def test_threshold_and_exclude_list():
    p = _distribution(golden_retriever=0.5, Labrador_retriever=0.3, tabby=0.15, espresso=0.05)
    words = lambda **options: [t.word for t in everyday_tags(p, options=EverydayOptions(**options))[0]]  # noqa: E731
    assert words(min_tag_probability=0.1) == ["dog", "cat"]
    assert words(min_tag_probability=0.15) == ["dog", "cat"]  # at the threshold: kept
    assert words(exclude_tags=("dog",)) == ["cat", "coffee"]
    assert words(exclude_tags=("Dog, coffee",)) == ["cat"]  # comma-separated, any case, as --exclude-tags a,b
    assert EverydayOptions(exclude_tags=("a,b", "c")).exclude_tags == ("a", "b", "c")
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="min_tag_probability"):
            EverydayOptions(min_tag_probability=bad)


def test_captioner_rolls_up_its_own_softmax(captioner, photo):
    encoded = captioner.encode([photo, photo[::-1]])
    tags = captioner.top_everyday_tags(encoded, k=4)
    expected = everyday_tags(encoded.logits.float().softmax(-1).numpy(), k=4)
    assert [[t.word for t in row] for row in tags] == [[t.word for t in row] for row in expected]
    assert len(tags) == 2 and all(len(row) == 4 for row in tags)
    assert captioner.everyday_tags(photo, k=2)[0].word == tags[0][0].word == "cat"  # chelsea, a tabby
    assert captioner.everyday_tags(photo, options=EverydayOptions(exclude_tags=("cat",)))[0].word != "cat"


def test_flags_are_the_same_in_every_tool():
    from captioning.cli import _parser as caption_parser
    from pipelines.images.cli import _parser as images_parser
    from pipelines.video.cli import _parser as video_parser

    helps = []
    for parser in (caption_parser(), images_parser(), video_parser()):
        actions = {a.dest: a for a in parser._actions}
        helps.append([(a.option_strings, a.help, a.default) for a in map(actions.get, EVERYDAY_FLAGS)])
        args = parser.parse_args(["x", "--min-tag-probability", "0.2", "--exclude-tags", "dog,cat"])
        assert (args.min_tag_probability, args.exclude_tags) == (0.2, ["dog,cat"])
    assert helps[0] == helps[1] == helps[2]
    assert helps[0][0][2] == 0.0 and "(default: %(default)s)" in helps[0][0][1]
    assert "comma-separated" in helps[0][1][1] and "(repeatable; default: none)" in helps[0][1][1]


def test_an_older_csv_is_refused_by_name(tmp_path):
    from pipelines.images.outputs import OutputError, open_output
    from pipelines.images.records import FIELDS

    old = tmp_path / "old.csv"
    old.write_text(",".join(f for f in FIELDS if f not in ("everyday_tags", "confidence", "unfamiliar", "note")) + "\n")
    with pytest.raises(OutputError, match="record format 2"):
        open_output(str(old)).close()


def test_caption_cli_prints_everyday_tags(tiny_bundle_dir, photo, tmp_path, capsys):
    from PIL import Image

    from captioning.cli import main

    path = tmp_path / "cat.png"
    Image.fromarray(photo).save(path)
    base = [str(path), "--weights", str(tiny_bundle_dir), "--device", "cpu", "--tags", "3"]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "\t  everyday tags: cat " in out and " — " in out
    assert main([*base, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["everyday_tags"][0]["word"] == "cat" and len(record["everyday_tags"]) == 3
    assert set(record["everyday_tags"][0]) == {"word", "probability", "label", "label_probability"}
    assert main([*base, "--json", "--exclude-tags", "cat", "--min-tag-probability", "0.01"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert all(t["word"] != "cat" and t["probability"] >= 0.01 for t in record["everyday_tags"])
    with pytest.raises(SystemExit):
        main([*base, "--min-tag-probability", "2"])


def test_batch_records_hold_everyday_tags_and_their_options(captioner, photo, tmp_path):
    from PIL import Image

    from pipelines import caption_images
    from pipelines.images.records import FIELDS, RECORD_FORMAT

    path = tmp_path / "cat.png"
    Image.fromarray(photo).save(path)
    record = next(caption_images([path], captioner, tags=3))
    assert RECORD_FORMAT == 4 and record["format_version"] == 4 and "everyday_tags" in FIELDS
    assert record["everyday_tags"][0]["word"] == "cat" and len(record["everyday_tags"]) <= 3
    assert record["options"]["min_tag_probability"] == 0.0 and record["options"]["exclude_tags"] == []
    record = next(caption_images([path], captioner, tags=3, exclude_tags=("cat",), min_tag_probability=0.05))
    assert all(t["word"] != "cat" and t["probability"] >= 0.05 for t in record["everyday_tags"])
    assert record["options"]["exclude_tags"] == ["cat"]


def test_video_search_finds_the_everyday_word():
    from captioning.api import Tag
    from pipelines.video.aggregate import build_index, everyday_labels
    from pipelines.video.results import FrameTags

    probs = np.stack([_distribution(golden_retriever=0.4, Labrador_retriever=0.4, tabby=0.2),
                      _distribution(tabby=0.9, Egyptian_cat=0.1)])
    words = everyday_tags(probs, k=2)
    frames = [FrameTags(n, float(n), "", 0, True, (Tag("golden retriever", 0.4),)) for n in range(2)]
    index = build_index(frames, [], np.array([0.0, 1.0]), np.array([1.0, 2.0]), None, words)
    assert [(s.start, s.end) for s in index["dog"]] == [(0.0, 1.0)] and index["dog"][0].confidence == pytest.approx(0.8)
    assert [(s.start, s.end) for s in index["cat"]] == [(0.0, 2.0)]
    shot = everyday_labels(probs.mean(0), words, 2, EverydayOptions())
    assert [(t.label, t.frames, t.source) for t in shot] == [("cat", 2, "everyday"), ("dog", 1, "everyday")]


@pytest.mark.slow
def test_the_example_cat_photo_is_a_cat_with_the_default_bundle():
    from captioning import Captioner, examples

    tags = Captioner.load(device="cpu", backend="torch").everyday_tags(examples.photo("cat"), k=3)
    assert tags[0].word == "cat", tags
