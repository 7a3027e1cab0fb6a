"""caption-train's options: :class:`TrainConfig`, plus three sets of flags generated from the
classes that own them: the sizes of a new decoder (:class:`DecoderConfig` fields), the
decoding that scores dev (:class:`Decoding` fields, ``--eval-*``) and ``--device``."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ..decoder import DecoderConfig
from ..decoding import Decoding
from ..encoder import ARCHS, DEFAULT_ARCH, arch
from ..options import add_dataclass_flags, add_device_flag, dataclass_kwargs
from .features import CACHE_DIR


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[str, ...]  # dataset file (see captioning.training.data.read_dataset); several train one model on
    #                        all of them, each with its own split files, one vocabulary, each dev scored
    out: str  # run folder: checkpoints, logs, final bundle
    train_split: str = "train"  # split to train on
    dev_split: str = "dev"  # split for model selection (never trained on)
    cache: str = CACHE_DIR  # encoder feature cache folder
    name: str = ""  # bundle name, "<arch>.<tag>"; "" = the --init-from bundle's, else "<arch>_sat.<the datasets'
    #                 names joined by _>" (lite0_sat.flickr8k for Flickr8k on Lite0)
    version: str = "1.0.0"  # bundle version
    init_from: str = ""  # start from this bundle (its vocabulary, decoder sizes and weights); "" = from scratch
    encoder_from: str = ""  # take the encoder from this bundle instead (e.g. train more decoders on a
    #                         fine-tuned encoder, to ensemble with it); "" = --init-from's, else ImageNet's
    encoder: str = ""  # encoder of a new run, with its ImageNet weights: efficientnet_lite0, efficientnet_lite1
    #                    or efficientnet_lite2; "" = the starting bundle's, else efficientnet_lite0
    image_size: int = 0  # encoder input side: the photos are resized to it (224 -> 7x7 grid, 288 -> 9x9);
    #                      0 = the starting bundle's, else the encoder's native size (Lite0 224, Lite1 240, Lite2 260)
    min_freq: int = 5  # vocabulary frequency threshold
    max_length: int = 20  # words kept per training caption; default decoding limit
    epochs: int = 12  # cross-entropy epochs
    images_per_batch: int = 32  # photos per step, each with all its captions (5 for Flickr8k)
    lr: float = 5e-4  # peak AdamW learning rate (cosine decay to lr_min after warm-up)
    lr_min: float = 5e-5  # learning rate at the end of the cross-entropy stage
    warmup_steps: int = 200  # linear warm-up steps
    weight_decay: float = 1e-4  # AdamW weight decay
    label_smoothing: float = 0.1  # label smoothing of the cross-entropy targets
    attention_reg: float = 1.0  # weight of sum_i (1 - sum_t alpha_ti)^2
    grad_clip: float = 2.0  # max gradient norm
    finetune_blocks: int = 0  # last encoder blocks trained with the decoder (up to those at the grid's resolution:
    #                           5 for Lite0, 6 for Lite1/2), 0 = frozen encoder; the activations entering them
    #                           are cached instead of the grids
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
    scst_idf: str = "pooled"  # the reward's CIDEr-D document frequencies: "pooled" over every training set, or
    #                         "per-dataset": each image's own set's, as its dev split is scored
    scst_xe_weight: float = 0.0  # weight of the references' cross-entropy kept in the self-critical loss: it
    #                               counters SCST's collapse onto a few safe captions (0 = pure SCST)
    balance: float = 0.5  # with several datasets, each one's share of an epoch's images is proportional to
    #                       (its training images) ** balance: 1 = as they come (Flickr8k 5,997 and COCO 2,325
    #                       photos: 72% / 28%), 0 = equal shares, 0.5 = 62% / 38% (5,129 / 3,193); an epoch keeps the total, a
    #                       set drawn beyond its size is repeated; drawn anew per seed and epoch
    select_on: str = "mean"  # the best epoch (the one shipped): "mean" = highest mean of the devs' CIDEr-D, each
    #                          dataset counting once; or a dataset name: highest CIDEr-D on that dev alone
    train_limit: int = 0  # train on only the first N images of each dataset (0 = all; for smoke tests)
    eval_limit: int = 0  # score only this many dev images of each dataset per epoch (0 = all)
    checkpoint_every: int = 200  # steps between mid-epoch checkpoints
    keep_epochs: bool = False  # also keep each epoch's weights as epoch<N>.pt (for caption-average)
    seed: int = 0  # initialisation, batch order, dropout and SCST samples

    def __post_init__(self) -> None:
        if isinstance(self.data, str):  # TrainConfig(data="captions.csv"): one dataset
            object.__setattr__(self, "data", (self.data,))


# The DecoderConfig fields a new decoder takes from flags (vocab_size is the vocabulary's,
# feature_dim the encoder's); `layers` is spelt --decoder-layers.
DECODER_FLAGS: dict[str, Any] = dict(only=("embed_dim", "hidden_dim", "context_dim", "attention_dim", "dropout",
                                           "layers"), rename={"layers": "decoder_layers"})
# The Decoding fields of dev scoring, as --eval-* flags (--eval-beam is the beam size); its
# max_length is --max-length, its min_length the default.
EVAL_FLAGS: dict[str, Any] = dict(only=("beam_size", "length_penalty", "no_repeat_ngram_size", "no_repeat_words",
                                        "no_dangling_end"), prefix="eval_", rename={"beam_size": "beam"})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="caption-train", description="Train the decoder on cached encoder features; "
                                                                  "the output is a complete bundle.")
    add_dataclass_flags(p, TrainConfig)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (default: 0 = cores / processes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device_flag(p)
    sizes = p.add_argument_group("decoder sizes", "of a new decoder (--init-from's bundle keeps its own)")
    add_dataclass_flags(sizes, DecoderConfig, **DECODER_FLAGS)
    dev = p.add_argument_group("dev scoring", "the decoding that scores dev each epoch, recorded as the bundle's")
    add_dataclass_flags(dev, Decoding, **EVAL_FLAGS)
    return p


def options_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any], Decoding]:
    """The run's config, the sizes of a new decoder (DecoderConfig keywords) and the dev decoding."""
    cfg = TrainConfig(**dataclass_kwargs(args, TrainConfig))
    decoding = Decoding(max_length=cfg.max_length, **dataclass_kwargs(args, Decoding, **EVAL_FLAGS))
    return cfg, dataclass_kwargs(args, DecoderConfig, **DECODER_FLAGS), decoding


def check(cfg: TrainConfig, decoder: dict[str, Any]) -> None:
    """Refuse options that cannot train, before anything is read or written."""
    if cfg.scst_baseline not in ("greedy", "mean"):
        raise SystemExit(f"--scst-baseline must be greedy or mean, not {cfg.scst_baseline!r}")
    if cfg.scst_baseline == "mean" and cfg.scst_samples < 2:
        raise SystemExit("--scst-baseline mean needs --scst-samples >= 2")
    if cfg.scst_idf not in ("pooled", "per-dataset"):
        raise SystemExit(f"--scst-idf must be pooled or per-dataset, not {cfg.scst_idf!r}")
    if cfg.scst_xe_weight < 0:
        raise SystemExit(f"--scst-xe-weight must be >= 0, not {cfg.scst_xe_weight}")
    if not 0.0 < cfg.scst_top_p <= 1.0:
        raise SystemExit(f"--scst-top-p must be in (0, 1], not {cfg.scst_top_p}")
    if cfg.encoder and cfg.encoder not in ARCHS:
        raise SystemExit(f"--encoder must be one of {', '.join(ARCHS)}, not {cfg.encoder!r}")
    if not (cfg.init_from or cfg.encoder_from):  # else the starting bundle's encoder, checked when it is read
        check_finetune(cfg.encoder or DEFAULT_ARCH, cfg.finetune_blocks)
    if decoder["layers"] not in (1, 2):
        raise SystemExit(f"--decoder-layers must be 1 or 2, not {decoder['layers']}")
    if not 0.0 <= cfg.hflip <= 1.0:
        raise SystemExit(f"--hflip must be in [0, 1], not {cfg.hflip}")
    if cfg.balance < 0:
        raise SystemExit(f"--balance must be >= 0, not {cfg.balance}")


def check_finetune(encoder: str, blocks: int) -> None:
    """--finetune-blocks trains at most the blocks at the grid's resolution of the encoder's table."""
    limit = arch(encoder).grid_blocks
    if not 0 <= blocks <= limit:
        raise SystemExit(f"--finetune-blocks must be 0..{limit} (the blocks of {encoder} at the grid's resolution), "
                         f"not {blocks}")
