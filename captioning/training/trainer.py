"""Train the decoder on cached encoder features; the output is a complete bundle.

Stage 1: teacher-forced cross-entropy (label smoothing) + the doubly stochastic attention
regulariser of Show, Attend and Tell. Stage 2 (optional): self-critical sequence training
(Rennie et al. 2017), CIDEr-D of sampled captions as reward, the greedy caption (or the
other samples' mean) as baseline; the losses are in :mod:`captioning.training.objectives`.
Options: ``--finetune-blocks N`` trains the encoder's last N blocks too (from cached
activations of the frozen part), ``--hflip P`` sees photos mirrored, ``--encoder`` picks the
ImageNet encoder of a new run, ``--device cuda`` trains on a GPU. Several ``--data`` train on
all of them (:mod:`captioning.training.datasets`: each its own splits, one vocabulary, epochs
drawn by ``--balance``, every dev scored each epoch, the best epoch by ``--select-on``).

    caption-train --data ../shared/data/flickr8k/captions.csv --out runs/flickr8k
    caption-train --data ../shared/data/flickr8k/captions.csv --data ../shared/data/coco_subset/captions.csv \
        --out runs/both --min-freq 3 --encoder efficientnet_lite2 --name lite2_sat.coco_flickr8k
    torchrun --nproc_per_node=2 -m captioning.train --data ... --out ...   # DDP (gloo on CPU)
    caption-train --data ... --out runs/more --init-from lite0_sat.flickr8k --epochs 0 --scst-epochs 3

The run folder holds ``checkpoint.pt`` (written every ``--checkpoint-every`` steps and at
each epoch end; ``--resume`` continues from it, skipping the batches already done),
``metrics.jsonl`` / ``metrics.csv`` (one row per epoch), ``curves.png`` and, at the end,
``bundle/`` selected on dev CIDEr-D (the mean over the devs of several datasets).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..api import resolve_device
from ..bundle import BundleInfo, load_bundle, name_problem, save_bundle
from ..decoder import DecoderConfig
from ..decoding import Decoding
from ..encoder import DEFAULT_ARCH, arch, load_pretrained_encoder
from ..images import Preprocessing
from ..model import CaptionModel, ModelConfig
from ..vocab import Vocabulary
from .config import TrainConfig, check, check_finetune, options_from_args, parser
from .datasets import check_rule, epoch_order, log_row, read_datasets, selection_score
from .evaluate import datasets_metrics, score_split
from .features import FeatureCache
from .metrics import CiderD, CiderDPerCorpus
from .objectives import Objective, caption_targets, mirror_caption, scst_xe_batch, xe_batch
from .provenance import encoder_source, training_record, tuned_blocks
from .runlog import RunLog

Step = Callable[[torch.Tensor, list, list], tuple[torch.Tensor, float]]  # a batch -> (loss, logged metric)


@dataclass
class View:
    """The training images seen one way: as they are, or mirrored."""
    features: torch.Tensor  # (N, S*S, 1280) float16 grids, or (N, C, H, W) activations when fine-tuning
    captions: list[list[list[int]]]  # per image, its captions as [<start>, words..., <end>] ids
    refs: list[list[str]]  # per image, its reference captions (the SCST reward's)


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) without torch.distributed."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Cross-entropy learning rate: linear warm-up, then cosine decay from lr to lr_min."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(progress * math.pi))


class Trainer:
    """One caption-train run: ``Trainer(cfg, decoder=sizes, decoding=dev_decoding).run()`` -> the bundle.

    The constructor reads the data, fills the feature cache, builds the model and the optimizer
    and resumes the checkpoint; :meth:`run` trains both stages and writes the bundle."""

    def __init__(self, cfg: TrainConfig, *, decoder: dict[str, Any], decoding: Decoding, resume: bool = False,
                 progress: bool = True, device: str | torch.device = "cpu"):
        self.cfg, self.decoding, self.progress = cfg, decoding, progress
        self.rank, self.world = world()
        self.device = torch.device(device)  # where the model trains; the cached features stay on the CPU
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._read_data()
        self._start_from(decoder)
        self._cache_features()
        self._build_model()
        self.optim = self._optimizer(cfg.lr)
        self.log = RunLog(self.out, enabled=self.rank == 0)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed + self.rank)  # SCST sampling
        self.ckpt_path = self.out / "checkpoint.pt"
        self.state = {"epoch": 0, "batch": 0, "step": 0, "best_cider": -1.0, "best_epoch": -1, "seconds": 0.0}
        self._resume(resume)
        self.t_resumed = time.time() - self.state["seconds"]
        self.batches_per_epoch = (len(self.items) + cfg.images_per_batch - 1) // cfg.images_per_batch
        self.total_xe_steps = cfg.epochs * self.batches_per_epoch
        self.cider = self._reward() if cfg.scst_epochs else None

    # -- setup -----------------------------------------------------------------------------
    def _reward(self) -> CiderD | CiderDPerCorpus:
        """The self-critical reward: CIDEr-D with the document frequencies of every training set pooled,
        or of each image's own set (--scst-idf)."""
        if self.cfg.scst_idf == "per-dataset":
            corpus = np.repeat(np.arange(len(self.sets)), [len(d.train) for d in self.sets])  # (N,) each image's set
            mirrored = [] if self.mirrored is None else list(zip(self.mirrored.refs, corpus.tolist()))
            return CiderDPerCorpus([[it.captions for it in d.train] for d in self.sets], mirrored)
        return CiderD([it.captions for it in self.items])

    def _read_data(self) -> None:
        """Every dataset's training and dev images; self.items: the training images, dataset after dataset."""
        cfg = self.cfg
        self.sets = read_datasets(cfg.data, train_split=cfg.train_split, dev_split=cfg.dev_split,
                                  train_limit=cfg.train_limit, eval_limit=cfg.eval_limit)
        check_rule(cfg.select_on, [d.name for d in self.sets])
        self.items = [it for d in self.sets for it in d.train]

    def _start_from(self, decoder: dict[str, Any]) -> None:
        """The starting bundle (its vocabulary, decoder sizes and, later, weights) or a new
        vocabulary and decoder; the encoder and preprocessing of --encoder-from, the start or ImageNet."""
        cfg = self.cfg
        self.start = load_bundle(cfg.init_from) if cfg.init_from else None
        if self.start is not None:
            self.vocab, self.decoder_config = self.start.vocab, self.start.model.config.decoder
        else:
            self.vocab = Vocabulary.build((c for it in self.items for c in it.captions), min_freq=cfg.min_freq)
            self.decoder_config = DecoderConfig(vocab_size=len(self.vocab), **decoder)
        self.source = load_bundle(cfg.encoder_from) if cfg.encoder_from else self.start  # the encoder's bundle
        self.arch = self.source.model.config.encoder if self.source is not None else cfg.encoder or DEFAULT_ARCH
        if self.source is not None and cfg.encoder and cfg.encoder != self.arch:
            raise SystemExit(f"--encoder {cfg.encoder} but {self.source.name} has {self.arch} (the bundle's is kept)")
        check_finetune(self.arch, cfg.finetune_blocks)
        self.name = cfg.name or (self.start.name if self.start is not None else
                                 f"{arch(self.arch).short}_sat." + "_".join(d.name for d in self.sets))
        problem = name_problem(self.name, self.arch)
        if problem:
            raise SystemExit(f"--{problem}: pass --name {arch(self.arch).short}_sat.<tag>")
        self.encoder = (self.source.model.encoder if self.source is not None
                        else load_pretrained_encoder(self.arch)).to(self.device)  # the cache encodes there
        prep = self.source.preprocessing if self.source is not None else Preprocessing(size=arch(self.arch).native_size)
        self.prep = dataclasses.replace(prep, size=cfg.image_size or prep.size)
        n_blocks = len(self.encoder._blocks)
        self.stop = n_blocks - cfg.finetune_blocks if cfg.finetune_blocks else None  # cache the input of block `stop`

    def _cache(self, **view: Any) -> FeatureCache:
        return FeatureCache(self.cfg.cache, self.encoder, self.prep, stop=self.stop, **view)

    def _cache_features(self) -> None:
        """Rank 0 fills the cache; the other ranks open it once it is complete."""
        train, dev = [it.image for it in self.items], [it.image for d in self.sets for it in d.dev]
        if self.rank == 0:
            self._cache().grids(train + dev, progress=self.progress)
            if self.cfg.hflip:
                self._cache(hflip=True).grids(train, progress=self.progress)
        if self.world > 1:
            dist.barrier()
        refs = [list(it.captions) for it in self.items]
        self.plain = View(torch.from_numpy(self._cache().grids(train, progress=False).copy()),
                          caption_targets(self.items, self.vocab, self.cfg.max_length), refs)
        self.mirrored = None if not self.cfg.hflip else View(
            torch.from_numpy(self._cache(hflip=True).grids(train, progress=False).copy()),
            caption_targets(self.items, self.vocab, self.cfg.max_length, mirror=True),
            [[mirror_caption(c) for c in r] for r in refs])
        self.dev_features = [self._cache().grids([it.image for it in d.dev], progress=False)
                             for d in self.sets]  # per dataset (N, S*S, 1280) or (N, C, H, W)

    def _build_model(self) -> None:
        """The model (seeded), the tuned encoder blocks, the start's decoder weights, the objective."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        tuned = max(cfg.finetune_blocks, tuned_blocks(self.source))  # in this run or the encoder's bundle
        self.model = CaptionModel(ModelConfig(decoder=self.decoder_config, encoder=self.arch, max_length=cfg.max_length,
                                              encoder_tuned_blocks=tuned))
        self.model.encoder.load_captioning_state_dict(self.encoder.captioning_state_dict())
        if tuned:  # the tags keep reading ImageNet's blocks and head
            self.model.encoder.keep_imagenet_head(load_pretrained_encoder(self.arch))
        self.model.to(self.device)
        self.model.encoder.eval().requires_grad_(False)  # BatchNorm statistics stay frozen even when fine-tuning
        self.tuned = self.model.encoder.tail_parameters(self.stop) if self.stop is not None else []
        for p in self.tuned:
            p.requires_grad_(True)
        self.decoder = self.model.decoder
        if self.start is not None:
            self.decoder.load_state_dict(self.start.model.decoder.state_dict())
        self.core = Objective(self.decoder, self.model.encoder, self.stop)
        ddp = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
        self.objective = torch.nn.parallel.DistributedDataParallel(self.core, **ddp) if self.world > 1 else self.core

    def _optimizer(self, lr: float) -> torch.optim.Optimizer:
        groups = [{"params": list(self.decoder.parameters()), "scale": 1.0}]
        if self.tuned:
            groups.append({"params": self.tuned, "scale": self.cfg.finetune_lr_scale})
        return torch.optim.AdamW(groups, lr=lr, weight_decay=self.cfg.weight_decay)

    def _set_lr(self, lr: float) -> None:
        for g in self.optim.param_groups:
            g["lr"] = lr * g["scale"]

    def _trained_weights(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"decoder": self.decoder.state_dict(),
                **({"encoder": self.model.encoder.captioning_state_dict()} if self.tuned else {})}

    def _load_trained(self, weights: dict[str, dict[str, torch.Tensor]]) -> None:
        self.decoder.load_state_dict(weights["decoder"])
        if self.tuned:
            self.model.encoder.load_captioning_state_dict(weights["encoder"])

    # -- checkpoint and resume ---------------------------------------------------------------
    def _resume(self, resume: bool) -> None:
        """Continue from checkpoint.pt with --resume (weights, optimizer, progress, random
        generators); refuse to start over a run that has one."""
        if resume and self.ckpt_path.exists():
            ckpt = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
            self._load_trained(ckpt)
            self.optim.load_state_dict(ckpt["optim"])
            self.state = ckpt["state"]
            if "rng" in ckpt:
                torch.set_rng_state(ckpt["rng"][self.rank])
                self.gen.set_state(ckpt["sample_rng"][self.rank])
            if self.rank == 0:
                print(f"resumed from {self.ckpt_path}: epoch {self.state['epoch']}, batch {self.state['batch']}",
                      file=sys.stderr)
        elif self.ckpt_path.exists() and not resume:
            raise SystemExit(f"{self.ckpt_path} exists: pass --resume to continue it, or choose another --out")

    def save_checkpoint(self) -> None:
        rng = [torch.get_rng_state(), self.gen.get_state()]  # so a resumed run draws the same dropout/samples
        if self.world > 1:
            gathered = [None] * self.world
            dist.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        if self.rank != 0:
            return
        self.state["seconds"] = time.time() - self.t_resumed
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save({**self._trained_weights(), "optim": self.optim.state_dict(), "state": self.state,
                    "rng": [g[0] for g in gathered], "sample_rng": [g[1] for g in gathered],
                    "config": dataclasses.asdict(self.cfg)}, tmp)
        os.replace(tmp, self.ckpt_path)

    # -- training ----------------------------------------------------------------------------
    def run(self) -> Path:
        """Train the remaining epochs of both stages; rank 0 writes and returns the bundle."""
        cfg, state = self.cfg, self.state
        if self.start is not None and state["step"] == 0 and self.rank == 0:  # the start competes in selection
            self.evaluate_and_select({"epoch": 0, "stage": "init"})
        while state["epoch"] < cfg.epochs + cfg.scst_epochs:
            epoch = state["epoch"]
            scst = epoch >= cfg.epochs
            mean = self.scst_epoch(epoch) if scst else self.xe_epoch(epoch)
            row = {"epoch": epoch + 1, "stage": "scst" if scst else "xe",
                   ("train_reward" if scst else "train_xe"): mean, "lr": self.optim.param_groups[0]["lr"]}
            if self.rank == 0:
                self.evaluate_and_select(row)
                if cfg.keep_epochs:
                    torch.save(self._trained_weights(), self.out / f"epoch{epoch + 1}.pt")
            state["epoch"], state["batch"] = epoch + 1, 0
            self.save_checkpoint()
            if self.world > 1:
                dist.barrier()
        return self.write_bundle() if self.rank == 0 else self.out / "bundle"

    def xe_epoch(self, epoch: int) -> float:
        """One epoch of teacher-forced cross-entropy on the warm-up + cosine schedule -> mean loss."""
        def step(features, captions, refs):
            self._set_lr(lr_at(self.cfg, self.state["step"], self.total_xe_steps))
            return self.objective(xe_batch, features, captions, self.cfg, self.device)
        return self._epoch(epoch, "xe", step)

    def scst_epoch(self, epoch: int) -> float:
        """One epoch of self-critical training at a constant learning rate -> mean reward. The
        stage starts from the best cross-entropy model, with a fresh optimizer."""
        if epoch == self.cfg.epochs and self.state["batch"] == 0 and (self.out / "best.pt").exists():
            self._load_trained(torch.load(self.out / "best.pt", map_location="cpu", weights_only=True))
            self.optim = self._optimizer(self.cfg.scst_lr)

        def step(features, captions, refs):
            self._set_lr(self.cfg.scst_lr)
            return self.objective(scst_xe_batch, features, captions, refs, self.cfg, self.cider, self.vocab,
                                  self.device, self.gen)
        return self._epoch(epoch, "scst", step)

    def _epoch(self, epoch: int, stage: str, step: Step) -> float:
        """The batches of one epoch not done yet, in the epoch's order (the same after a resume),
        each split over the ranks: forward and backward by ``step``, clipped AdamW step."""
        cfg, state, n = self.cfg, self.state, len(self.items)
        order = epoch_order([len(d.train) for d in self.sets], cfg.balance, seed=cfg.seed, epoch=epoch)
        flip = (torch.rand(n, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch + 1_000_000))
                < cfg.hflip).tolist()  # which photos this epoch sees mirrored (the same after a resume)
        bar = tqdm(range(state["batch"], self.batches_per_epoch), desc=f"epoch {epoch + 1} {stage}", unit="batch",
                   disable=not self.progress or self.rank != 0, initial=state["batch"], total=self.batches_per_epoch)
        self.decoder.train()
        running = []
        for b in bar:
            ipb = cfg.images_per_batch
            loss, metric = step(*self._batch(order[b * ipb:(b + 1) * ipb][self.rank::self.world], flip))
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*self.decoder.parameters(), *self.tuned], cfg.grad_clip)
            self.optim.step()
            running.append(metric)
            state["step"] += 1
            state["batch"] = b + 1
            bar.set_postfix({"reward" if stage == "scst" else "xe": f"{sum(running[-50:]) / len(running[-50:]):.3f}"})
            if state["step"] % cfg.checkpoint_every == 0:
                self.save_checkpoint()
        bar.close()
        return sum(running) / max(1, len(running))

    def _batch(self, image_ids: list[int], flip: list[bool]) -> tuple[torch.Tensor, list, list]:
        """Features, caption targets and references of these images, each seen as ``flip`` says."""
        features = self.plain.features[image_ids]  # (I, S*S, 1280) or (I, C, H, W) float16
        captions, refs = [self.plain.captions[i] for i in image_ids], [self.plain.refs[i] for i in image_ids]
        if self.mirrored is not None:
            m = [j for j, i in enumerate(image_ids) if flip[i]]
            features[m] = self.mirrored.features[[image_ids[j] for j in m]]
            for j in m:
                captions[j], refs[j] = self.mirrored.captions[image_ids[j]], self.mirrored.refs[image_ids[j]]
        return features.to(self.device), captions, refs

    # -- evaluation and the bundle -------------------------------------------------------------
    def _dev_grids(self, features: np.ndarray) -> np.ndarray:
        """A dev set's cached rows -> its (N, S*S, 1280) grids (through the tuned blocks when fine-tuning)."""
        if self.stop is None:
            return features
        with torch.inference_mode():
            return torch.cat([self.core.grid(torch.from_numpy(np.asarray(features[i:i + 250])).to(self.device)).cpu()
                              for i in range(0, len(features), 250)]).numpy()  # (N, S*S, 1280)

    def evaluate_and_select(self, row: dict) -> None:
        """Score every dev split, log the row, keep the best model so far (by --select-on) in best.pt."""
        scores = {d.name: score_split(self.decoder, self._dev_grids(f), d.dev, vocab=self.vocab, decoding=self.decoding)[0]
                  for d, f in zip(self.sets, self.dev_features)}
        row.update(log_row(scores, self.cfg.select_on))
        row["minutes"] = round((time.time() - self.t_resumed) / 60, 2)
        self.log.append(row)
        score = selection_score(scores, self.cfg.select_on)
        if score > self.state["best_cider"]:
            self.state["best_cider"], self.state["best_epoch"] = score, row["epoch"]
            metrics = next(iter(scores.values())) if len(scores) == 1 else scores  # one dataset: as it always was
            best = {"metrics": metrics, **{part: {k: v.clone() for k, v in weights.items()}
                                           for part, weights in self._trained_weights().items()}}
            torch.save(best, self.out / "best.pt")
        print(f"epoch {row['epoch']}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                    for k, v in row.items()), file=sys.stderr)

    def write_bundle(self) -> Path:
        """The best epoch's weights as ``<out>/bundle``, with their dev scores and provenance."""
        cfg = self.cfg
        best = torch.load(self.out / "best.pt", map_location="cpu", weights_only=True)
        self._load_trained(best)
        scores = best["metrics"] if len(self.sets) > 1 else {self.sets[0].name: best["metrics"]}
        minutes = round((time.time() - self.t_resumed) / 60, 1)
        training = training_record(cfg, self.sets, train_captions=sum(len(c) for c in self.plain.captions),
                                   best_epoch=self.state["best_epoch"], minutes=minutes, world=self.world,
                                   start=self.start, source=self.source)
        info = BundleInfo(
            name=self.name, version=cfg.version, training=training, decoding=self.decoding.asdict(),
            metrics=datasets_metrics(self.sets, scores, split=cfg.dev_split, decoding=self.decoding, rule=cfg.select_on),
            encoder_source=encoder_source(self.source, cfg.finetune_blocks, self.arch))
        path = save_bundle(self.out / "bundle", self.model, self.vocab, info, preprocessing=self.prep)
        print(f"wrote {path} ({training['selection']} {selection_score(scores, cfg.select_on):.4f}, "
              f"epoch {self.state['best_epoch']}, {minutes} min)", file=sys.stderr)
        return path


def _device(name: str) -> torch.device:
    """The training device of this process (each rank its own GPU under torchrun); unavailable: one-line exit."""
    try:
        device = resolve_device(name)
    except RuntimeError as e:
        raise SystemExit(f"caption-train: {e}") from None
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    device = _device(args.device)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // world()[1]))
    try:
        cfg, decoder, decoding = options_from_args(args)
        check(cfg, decoder)
        Trainer(cfg, decoder=decoder, decoding=decoding, resume=args.resume, progress=not args.no_progress,
                device=device).run()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
