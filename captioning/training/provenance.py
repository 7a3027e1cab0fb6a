"""What a caption-train bundle records about where it came from: the manifest's ``training`` and
``encoder_source`` entries."""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Sequence

from ..bundle import Bundle
from ..encoder import arch, pretrained_weights_path
from .config import TrainConfig
from .datasets import DataSet, epoch_counts, selection_text
from .features import file_sha256


def tuned_blocks(start: Bundle | None) -> int:
    """Encoder blocks a starting bundle had fine-tuned (older bundles say so only in encoder_source)."""
    if start is None:
        return 0
    return max(start.model.config.encoder_tuned_blocks, start.manifest.get("encoder_source", {}).get("finetuned_blocks", 0))


def encoder_source(start: Bundle | None, finetune_blocks: int, encoder: str) -> dict:
    """Where the bundle's encoder weights come from: the arch's ImageNet package, and how many of
    the last blocks were fine-tuned on captions (in this run or the run it started from)."""
    source = {"package": arch(encoder).package, "license": "Apache-2.0",
              "sha256": file_sha256(pretrained_weights_path(encoder)), "frozen": True}
    if start is not None:
        source.update(start.manifest.get("encoder_source", {}))
    tuned = max(finetune_blocks, source.get("finetuned_blocks", 0))
    return {**source, **({"frozen": False, "finetuned_blocks": tuned} if tuned else {})}


def training_record(cfg: TrainConfig, sets: Sequence[DataSet], *, train_captions: int, best_epoch: int, minutes: float,
                    world: int, start: Bundle | None, source: Bundle | None) -> dict[str, Any]:
    """The manifest's ``training`` entry: data, selection, time, config, command, starting bundles;
    with several datasets each one's images and share of an epoch too."""
    several = len(sets) > 1
    record: dict[str, Any] = {
        "data": [d.data for d in sets] if several else cfg.data[0], "train_split": cfg.train_split,
        "train_images": sum(len(d.train) for d in sets), "train_captions": train_captions, "dev_split": cfg.dev_split}
    if several:
        counts = epoch_counts([len(d.train) for d in sets], cfg.balance)
        record["datasets"] = {d.name: {"data": d.data, "train_images": len(d.train), "dev_images": len(d.dev),
                                       "images_per_epoch": n} for d, n in zip(sets, counts)}
    record.update({"selection": selection_text([d.name for d in sets], cfg.select_on), "best_epoch": best_epoch,
                   "minutes": minutes, "world_size": world, "machine": f"{os.cpu_count()} CPU cores",
                   "config": dataclasses.asdict(cfg), "command": " ".join(["caption-train", *sys.argv[1:]])})
    if start:
        record["init_from"] = {"name": start.name, "version": start.version, "training": start.manifest.get("training", {})}
    if cfg.encoder_from:
        record["encoder_from"] = {"name": source.name, "version": source.version,
                                  "training": source.manifest.get("training", {})}
    return record
