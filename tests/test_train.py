"""Training on a tiny generated dataset: loss goes down, a loadable bundle comes out, a
killed run resumes to the same result, and 2-process DDP agrees with 1 process."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from captioning import Captioner, load_bundle

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 220), "yellow": (230, 220, 40)}
SHAPES = ("square", "circle")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """8 train + 4 dev images of coloured shapes, 5 captions each, Flickr8k layout."""
    root = tmp_path_factory.mktemp("shapes")
    (root / "images").mkdir()
    rows, names = [], []
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            name = f"{colour}_{shape}.png"
            img = Image.new("RGB", (224, 224), (245, 245, 245))
            arr = np.asarray(img).copy()
            yy, xx = np.mgrid[:224, :224]
            mask = ((xx - 112) ** 2 + (yy - 112) ** 2 < 70 ** 2) if shape == "circle" else \
                ((abs(xx - 112) < 65) & (abs(yy - 112) < 65))
            arr[mask] = rgb
            Image.fromarray(arr).save(root / "images" / name)
            names.append(name)
            rows += [(name, f"a {colour} {shape} on a white background ."), (name, f"A {colour} {shape} ."),
                     (name, f"the {shape} is {colour}"), (name, f"a big {colour} {shape}"),
                     (name, f"one {colour} {shape} in the middle")]
    with open(root / "captions.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption"), *rows])
    (root / "train.txt").write_text("\n".join(names[:8]) + "\n")
    (root / "dev.txt").write_text("\n".join(names[:4]) + "\n")  # shapes seen in training: learnable
    return root


def _args(dataset: Path, out: Path, cache: Path, **over) -> list[str]:
    opts = {"data": dataset / "captions.csv", "out": out, "cache": cache, "name": "tiny_sat.shapes",
            "min-freq": 1, "embed-dim": 16, "hidden-dim": 32, "context-dim": 16, "attention-dim": 8,
            "dropout": 0.0, "epochs": 6, "images-per-batch": 2, "lr": 1e-2, "lr-min": 1e-3,
            "warmup-steps": 1, "max-length": 10, "eval-beam": 2, "checkpoint-every": 1, **over}
    switches = [f"--{k}" for k, v in opts.items() if v is True]  # on/off options are switches
    return [a for k, v in opts.items() if v is not True for a in (f"--{k}", str(v))] + switches + [
        "--no-progress", "--threads", "1"]


def _run(args: list[str], *, torchrun: int = 0, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "captioning.train", *args]
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(torchrun),
               "--master_port", str(29500 + os.getpid() % 1000), "-m", "captioning.train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "plain"
    from captioning.training.trainer import main

    assert main(_args(dataset, out, dataset / "cache")) == 0
    return out


def test_loss_goes_down_and_bundle_loads(trained, dataset):
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["train_xe"] < rows[0]["train_xe"] - 0.8
    assert (trained / "metrics.csv").exists() and (trained / "curves.png").stat().st_size > 1000
    bundle = load_bundle(trained / "bundle")
    m = bundle.manifest
    assert m["name"] == "tiny_sat.shapes" and m["metrics"]["split"] == "dev"
    assert {"BLEU-4", "CIDEr-D", "ROUGE-L"} <= set(m["metrics"])
    assert m["training"]["train_images"] == 8 and m["training"]["command"].startswith("caption-train")
    cap = Captioner.load(trained / "bundle", device="cpu")
    text = cap.caption(dataset / "images" / "red_circle.png").text
    assert "circle" in text or "red" in text  # it learned something from 8 images


def test_scst_stage_runs_and_rewards(dataset, tmp_path):
    from captioning.training.trainer import main

    out = tmp_path / "scst"
    assert main(_args(dataset, out, dataset / "cache", epochs=2, **{"scst-epochs": 1, "scst-lr": 1e-3})) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["xe", "xe", "scst"] and rows[-1]["train_reward"] > 0
    assert all(1 <= r["dev_distinct_captions"] <= 4 and r["dev_distinct_words"] >= 0 for r in rows)  # 4 dev photos
    metrics = load_bundle(out / "bundle").manifest["metrics"]
    assert isinstance(metrics["distinct_captions"], int) and isinstance(metrics["distinct_words"], int)


def test_scst_keeps_a_weighted_cross_entropy_term():
    """--scst-xe-weight w: the self-critical loss plus w times the references' cross-entropy, on
    the same grids and samples (pure SCST at w = 0)."""
    from dataclasses import replace

    from captioning.testing import placeholder_vocabulary, tiny_model
    from captioning.training.config import TrainConfig
    from captioning.training.metrics import CiderD
    from captioning.training.objectives import scst_batch, scst_xe_batch, xe_batch

    vocab = placeholder_vocabulary(30)
    decoder = tiny_model(vocab).decoder.train()  # dropout draws from torch's global generator: seeded below
    grid = torch.randn(2, 49, 1280, generator=torch.Generator().manual_seed(0))  # (I, S*S, 1280)
    refs = [["w0001 w0002 w0003"], ["w0004 w0005"]]
    captions = [[[vocab.start_id, *vocab.encode(r[0]), vocab.end_id]] for r in refs]
    cider, cfg = CiderD(refs), TrainConfig(data=("x",), out="y", max_length=8)

    def scst(cfg, *args, fn=scst_batch):
        torch.manual_seed(2)
        return fn(decoder, grid, *args, cfg, cider, vocab, "cpu", torch.Generator().manual_seed(1))[0]

    pure = scst(cfg, refs)
    xe = xe_batch(decoder, grid, captions, cfg, "cpu")[0]  # the dropout draws that follow SCST's
    assert torch.allclose(scst(cfg, captions, refs, fn=scst_xe_batch), pure)
    mixed = scst(replace(cfg, scst_xe_weight=0.5), captions, refs, fn=scst_xe_batch)
    assert torch.allclose(mixed, pure + 0.5 * xe) and not torch.allclose(mixed, pure)


def test_two_layer_decoder_trains_and_loads(dataset, tmp_path):
    """--decoder-layers 2 (Up-Down: attention LSTM + language LSTM) trains through both stages
    and writes a bundle that is built as a two-layer decoder and captions."""
    from captioning.training.trainer import main

    out = tmp_path / "updown"
    assert main(_args(dataset, out, dataset / "cache", **{"decoder-layers": 2, "scst-epochs": 1})) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-2]["train_xe"] < rows[0]["train_xe"] - 0.8 and rows[-1]["stage"] == "scst"
    bundle = load_bundle(out / "bundle")
    assert bundle.manifest["model"]["decoder"]["layers"] == 2 and hasattr(bundle.model.decoder, "att_lstm")
    text = Captioner.load(out / "bundle", device="cpu").caption(dataset / "images" / "red_circle.png").text
    assert "circle" in text or "red" in text


@pytest.mark.parametrize("bad", [{"scst-top-p": 0}, {"scst-top-p": 1.5}, {"scst-baseline": "max"},
                                 {"scst-baseline": "mean", "scst-samples": 1}, {"hflip": 1.5},
                                 {"finetune-blocks": 6}, {"decoder-layers": 3}, {"scst-xe-weight": -1}])
def test_bad_options_fail_before_training(dataset, tmp_path, bad):
    from captioning.training.trainer import main

    with pytest.raises(SystemExit, match="--" + next(iter(bad)).split("-")[0]):
        main(_args(dataset, tmp_path / "bad", dataset / "cache", epochs=1, **{"scst-epochs": 1, **bad}))
    assert not (tmp_path / "bad" / "checkpoint.pt").exists()


def test_every_flag_is_documented_by_its_config_comment(capsys):
    """caption-train --help shows each TrainConfig field's source comment, continuation lines included."""
    import dataclasses

    from captioning.options import field_comments
    from captioning.training.config import TrainConfig
    from captioning.training.trainer import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    comments = field_comments(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        assert comments.get(f.name) and f"--{f.name.replace('_', '-')} {comments[f.name]}" in text.replace(
            f" {f.name.upper()} ", " ").replace(" {0,1} ", " ")
    assert "chance that a training photo is seen mirrored in an epoch (its grid from the mirrored photo," in text
    assert '"left"/"right" swapped in its captions); 0 = never (default: 0.0)' in text
    assert "run folder: checkpoints, logs, final bundle (required)" in text


def test_mirror_swaps_left_and_right():
    from captioning.training.objectives import mirror_caption as _mirror

    assert _mirror("A dog on the LEFT, a cat to the right.") == "a dog on the right a cat to the left"


def test_mirrored_training_uses_the_mirrored_view(dataset, tmp_path):
    """--hflip 1 trains every step on grids of mirrored photos (filled into their own cache
    folder), in both stages; the result differs from the same run on the plain photos."""
    from captioning.training.trainer import main

    cache = tmp_path / "cache"
    runs = {}
    for hflip in (0.0, 1.0):
        out = tmp_path / f"hflip{hflip}"
        assert main(_args(dataset, out, cache, epochs=2, hflip=hflip, **{"scst-epochs": 1, "scst-lr": 1e-3})) == 0
        runs[hflip] = load_file(out / "bundle" / "model.safetensors")
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert rows[1]["train_xe"] < rows[0]["train_xe"] and rows[2]["train_reward"] > 0
    assert len(list(cache.iterdir())) == 2  # plain + mirrored views
    assert load_bundle(tmp_path / "hflip1.0" / "bundle").manifest["training"]["config"]["hflip"] == 1.0
    assert any(not torch.equal(runs[0.0][k], runs[1.0][k]) for k in runs[0.0] if k.startswith("decoder."))


def test_finetuning_the_last_encoder_blocks(dataset, tmp_path):
    """--finetune-blocks 2 trains blocks 14-15 and the head conv from cached block-14 inputs, in
    both stages; BatchNorm statistics and everything before block 14 stay ImageNet's."""
    from captioning.encoder import load_pretrained_encoder
    from captioning.training.trainer import main

    out = tmp_path / "ft"
    assert main(_args(dataset, out, tmp_path / "cache", epochs=2, **{
        "finetune-blocks": 2, "finetune-lr-scale": 1.0, "scst-epochs": 1, "scst-lr": 1e-3})) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["train_xe"] < rows[0]["train_xe"] and rows[2]["train_reward"] > 0
    bundle = load_bundle(out / "bundle")
    pretrained, tuned = load_pretrained_encoder().state_dict(), bundle.model.encoder.state_dict()
    changed = {k for k in pretrained if not torch.equal(pretrained[k], tuned[k])}
    assert any(k.startswith("_blocks.14.") for k in changed) and any(k.startswith("_conv_head") for k in changed)
    assert all(k.startswith(("_blocks.14.", "_blocks.15.", "_conv_head.", "_bn1.")) for k in changed)
    assert not any("running" in k for k in changed)
    assert bundle.manifest["encoder_source"]["frozen"] is False
    assert bundle.manifest["encoder_source"]["finetuned_blocks"] == 2
    best, last = (torch.load(out / f, weights_only=True) for f in ("best.pt", "checkpoint.pt"))
    assert all(torch.equal(best["encoder"][k], tuned[k]) for k in best["encoder"])  # the selected epoch's encoder ships
    assert "encoder" in last  # and a resumed run gets its encoder back
    cap = Captioner.load(out / "bundle", device="cpu")
    assert bundle.model.config.encoder_tuned_blocks == 2
    assert cap.caption(dataset / "images" / "red_circle.png").text
    pixels = cap.pixels([dataset / "images" / "red_circle.png"]).contiguous()
    with torch.inference_mode():  # the tags still read ImageNet's blocks and head
        assert torch.allclose(cap.encoder(pixels).logits, load_pretrained_encoder()(pixels).logits, atol=1e-4)


def test_image_size_sets_the_grid(trained, dataset, tmp_path):
    """--image-size 96 continues a 224 bundle on 3x3 grids (fine-tuning from cached 3x3 activations):
    the bundle records the size, and its captions' attention maps are 3x3."""
    from captioning.training.trainer import main

    out = tmp_path / "small"
    assert main(_args(dataset, out, tmp_path / "cache", epochs=1, **{
        "init-from": trained / "bundle", "image-size": 96, "finetune-blocks": 1})) == 0
    bundle = load_bundle(out / "bundle")
    assert bundle.preprocessing.size == 96 and bundle.manifest["preprocessing"]["size"] == 96
    r = Captioner.load(out / "bundle", device="cpu").caption(dataset / "images" / "red_circle.png")
    assert r.attention.shape == (len(r.tokens), 3, 3)
    assert np.allclose(r.attention.sum(axis=(1, 2)), 1.0, atol=1e-4)


def test_more_decoders_on_a_fine_tuned_encoder_form_an_ensemble(dataset, tmp_path):
    """--encoder-from trains a fresh decoder on another bundle's (fine-tuned) encoder, frozen:
    the result carries that exact encoder, so caption-ensemble accepts the two together."""
    from captioning.training.ensembling import main as ensemble
    from captioning.training.trainer import main

    cache = tmp_path / "cache"
    assert main(_args(dataset, tmp_path / "ft", cache, epochs=1, **{"finetune-blocks": 2, "finetune-lr-scale": 1.0})) == 0
    tuned = tmp_path / "ft" / "bundle"
    assert main(_args(dataset, tmp_path / "more", cache, epochs=2, seed=1, **{"encoder-from": tuned})) == 0
    a, b = load_bundle(tuned), load_bundle(tmp_path / "more" / "bundle")
    sa, sb = a.model.encoder.state_dict(), b.model.encoder.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert b.model.config.encoder_tuned_blocks == 2 and b.manifest["encoder_source"]["finetuned_blocks"] == 2
    assert b.manifest["training"]["encoder_from"]["name"] == "tiny_sat.shapes" and "init_from" not in b.manifest["training"]
    assert any(not torch.equal(x, y) for x, y in zip(a.model.decoder.state_dict().values(),
                                                      b.model.decoder.state_dict().values()))
    assert ensemble(["--members", str(tuned), str(tmp_path / "more" / "bundle"), "--data", str(dataset / "captions.csv"),
                     "--name", "tiny_sat2.shapes", "--out", str(tmp_path / "ens"), "--cache", str(cache)]) == 0
    assert load_bundle(tmp_path / "ens").model.config.members == 2


def test_init_from_a_bundle_continues_it(trained, dataset, tmp_path):
    """SCST-only run from a finished bundle: same vocabulary and sizes, the start scored as
    epoch 0 and kept if no later epoch beats it, provenance and decoding in the manifest; the
    bundle keeps the start's name when --name is not given."""
    from captioning.training.trainer import main

    out = tmp_path / "continued"
    args = _args(dataset, out, dataset / "cache", epochs=0, name="", **{
        "init-from": trained / "bundle", "scst-epochs": 1, "scst-lr": 1e-3, "embed-dim": 99,
        "eval-no-repeat-ngram-size": 2, "eval-length-penalty": 0.5, "eval-no-dangling-end": True})
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["stage"]) for r in rows] == [(0, "init"), (1, "scst")]
    start, result = load_bundle(trained / "bundle"), load_bundle(out / "bundle")
    assert result.vocab.itos == start.vocab.itos
    assert result.model.config.decoder == start.model.config.decoder  # sized by the bundle, not --embed-dim
    m = result.manifest
    assert m["name"] == m["training"]["init_from"]["name"] == "tiny_sat.shapes"
    assert m["decoding"] == {"beam_size": 2, "max_length": 10, "min_length": 0, "length_penalty": 0.5,
                             "no_repeat_ngram_size": 2, "no_repeat_words": False, "no_dangling_end": True}
    best = max(rows, key=lambda r: r["dev_CIDEr-D"])
    assert m["metrics"]["CIDEr-D"] == pytest.approx(best["dev_CIDEr-D"], abs=1e-4)
    if best["epoch"] == 0:  # nothing beat the start: the shipped weights are the start's
        a, b = load_file(trained / "bundle" / "model.safetensors"), load_file(out / "bundle" / "model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(dataset, trained, tmp_path):
    out = tmp_path / "killed"
    args = _args(dataset, out, dataset / "cache")  # the same config as the uninterrupted `trained` run
    proc = subprocess.Popen([sys.executable, "-m", "captioning.train", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:  # wait for epoch 1 to finish
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "bundle").exists(), "the run finished before it could be killed"
    again = _run(args)
    assert again.returncode != 0 and "--resume" in again.stderr  # refuses to silently start over
    resumed = _run([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5, 6]
    a, b = load_file(trained / "bundle" / "model.safetensors"), load_file(out / "bundle" / "model.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


@pytest.mark.slow
def test_ddp_two_processes_agree_with_one(dataset, trained, tmp_path):
    out = tmp_path / "ddp"
    run = _run(_args(dataset, out, dataset / "cache"), torchrun=2)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert manifest["training"]["world_size"] == 2
    a, b = load_file(trained / "bundle" / "model.safetensors"), load_file(out / "bundle" / "model.safetensors")
    # att_score.bias shifts every attention logit equally, so softmax makes its true gradient
    # zero; Adam turns the rounding noise of that zero into full steps: not comparable.
    for k in a.keys() - {"decoder.att_score.bias"}:
        assert torch.allclose(a[k], b[k], atol=1e-4), k


def test_ddp_fine_tuning_agrees_with_one_process(dataset, tmp_path):
    """The fine-tuned encoder blocks are inside the DDP module: their gradients are averaged too."""
    from captioning.training.trainer import main

    opts = {"epochs": 2, "finetune-blocks": 1, "finetune-lr-scale": 1.0}
    assert main(_args(dataset, tmp_path / "one", tmp_path / "cache", **opts)) == 0
    run = _run(_args(dataset, tmp_path / "two", tmp_path / "cache", **opts), torchrun=2)
    assert run.returncode == 0, run.stderr[-3000:]
    from captioning.encoder import load_pretrained_encoder

    a, b = (load_file(tmp_path / r / "bundle" / "model.safetensors") for r in ("one", "two"))
    pretrained = load_pretrained_encoder().state_dict()
    # Adam turns the float noise of a near-zero gradient into whole steps for a few weights (on one
    # machine 18 of 368,640 moved by up to 0.009, the rest by 7e-6 on average): the bulk must agree.
    # Unaveraged gradients would move them apart by a good part of the tuning itself.
    for k in ("_blocks.15._project_conv.weight", "_conv_head.weight"):  # fine-tuned by ~0.05, equally by both
        tuned, diff = (a["encoder." + k] - pretrained[k]).abs(), (a["encoder." + k] - b["encoder." + k]).abs()
        assert tuned.max() > 1e-2
        assert diff.mean() < 1e-2 * tuned.mean() and diff.flatten().quantile(0.999) < 1e-3, k
    for k in a.keys() - {"decoder.att_score.bias"}:  # see test_ddp_two_processes_agree_with_one
        assert (a[k] - b[k]).abs().flatten().float().quantile(0.999) < 1e-3, k


def test_caption_eval_cli(trained, dataset, tmp_path, capsys, monkeypatch):
    """caption-eval scores the bundle's torch model: it never exports or times a runtime graph."""
    from captioning import api
    from captioning.training.evaluate import main

    monkeypatch.setattr(api, "EncoderGraph", lambda *a, **k: pytest.fail("caption-eval built a runtime graph"))
    out = tmp_path / "eval.json"
    assert main(["--weights", str(trained / "bundle"), "--data", str(dataset / "captions.csv"), "--split", "dev",
                 "--cache", str(dataset / "cache"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "CIDEr-D" in printed and "BLEU-4" in printed
    report = json.loads(out.read_text())
    assert report["images"] == 4 and len(report["captions"]) == 4
    manifest = json.loads((trained / "bundle" / "manifest.json").read_text())
    assert report["scores"]["CIDEr-D"] == pytest.approx(manifest["metrics"]["CIDEr-D"], abs=1e-4)


def test_caption_eval_records_scores_and_decoding(trained, dataset, tmp_path):
    import shutil

    from captioning.training.evaluate import main

    bundle = shutil.copytree(trained / "bundle", tmp_path / "tiny_sat.shapes")
    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# tiny_sat.shapes\n")
    assert main(["--weights", str(bundle), "--data", str(dataset / "captions.csv"), "--split", "dev",
                 "--cache", str(dataset / "cache"), "--out", str(tmp_path / "eval.json"),
                 "--no-repeat-ngram-size", "2", "--length-penalty", "1.0", "--record", "--version", "1.1.0",
                 "--attach", str(card)]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    b = load_bundle(bundle)  # hashes still verify
    assert (bundle / "MODEL_CARD.md").read_text() == card.read_text() and "MODEL_CARD.md" in b.manifest["files"]
    assert b.version == "1.1.0" and b.decoding["no_repeat_ngram_size"] == 2 and b.decoding["length_penalty"] == 1.0
    assert b.manifest["metrics"]["CIDEr-D"] == pytest.approx(report["scores"]["CIDEr-D"], abs=1e-4)
    assert Captioner.load(bundle, device="cpu").decoding.no_repeat_ngram_size == 2


def test_caption_eval_names_the_recipe_in_the_manifest(trained, dataset, tmp_path):
    import shutil

    from captioning.training.evaluate import main

    bundle = shutil.copytree(trained / "bundle", tmp_path / "tiny_sat.shapes")
    args = ["--weights", str(bundle), "--data", str(dataset / "captions.csv"), "--split", "dev",
            "--cache", str(dataset / "cache"), "--out", str(tmp_path / "eval.json"), "--recipe", "recipes/x.sh"]
    assert main(args) == 2  # --recipe goes with --record
    assert main([*args, "--record"]) == 0
    assert load_bundle(bundle).manifest["recipe"] == "recipes/x.sh"  # hashes still verify


def test_keep_epochs_and_caption_average(dataset, tmp_path, capsys):
    """--keep-epochs writes each epoch's weights; caption-average turns their mean into a bundle
    scored on dev that records what it averaged; a file that is not a checkpoint is one clear error."""
    from captioning.training.averaging import main as average
    from captioning.training.trainer import main

    out = tmp_path / "kept"
    assert main(_args(dataset, out, dataset / "cache", epochs=2, **{"keep-epochs": True})) == 0
    epochs = [out / "epoch1.pt", out / "epoch2.pt"]
    assert all(p.exists() for p in epochs)
    avg = tmp_path / "tiny_sat.avg"
    assert average(["--base", str(out / "bundle"), "--checkpoints", *map(str, epochs), "--data",
                    str(dataset / "captions.csv"), "--out", str(avg), "--cache", str(dataset / "cache"),
                    "--version", "1.1.0", "--length-penalty", "0.5"]) == 0
    assert "CIDEr-D" in capsys.readouterr().out
    b = load_bundle(avg)
    assert b.version == "1.1.0" and b.manifest["training"]["averaged"] == list(map(str, epochs))
    assert b.decoding["length_penalty"] == 0.5 and b.manifest["metrics"]["split"] == "dev"
    members = [torch.load(p, weights_only=True)["decoder"] for p in epochs]
    for k, v in b.model.decoder.state_dict().items():
        assert torch.allclose(v, (members[0][k] + members[1][k]) / 2, atol=1e-6), k
    assert Captioner.load(avg, device="cpu").decoding.length_penalty == 0.5
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert average(["--base", str(out / "bundle"), "--checkpoints", str(tmp_path / "junk.pt"), "--data",
                    str(dataset / "captions.csv"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "junk.pt" in err and len(err.strip().splitlines()) == 1
