"""caption-train's options: :class:`TrainConfig`, plus two sets of flags generated from the
classes that own them: the sizes of a new decoder (:class:`DecoderConfig` fields) and the
decoding that scores dev (:class:`Decoding` fields, ``--eval-*``)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ..decoder import DecoderConfig
from ..decoding import Decoding
from ..options import add_dataclass_flags, dataclass_kwargs
from .features import CACHE_DIR


@dataclass(frozen=True)
class TrainConfig:
    data: str  # dataset file (see captioning.training.data.read_dataset)
    out: str  # run folder: checkpoints, logs, final bundle
    train_split: str = "train"  # split to train on
    dev_split: str = "dev"  # split for model selection (never trained on)
    cache: str = CACHE_DIR  # encoder feature cache folder
    name: str = "lite0_sat.flickr8k"  # bundle name, "<arch>.<tag>"
    version: str = "1.0.0"  # bundle version
    init_from: str = ""  # start from this bundle (its vocabulary, decoder sizes and weights); "" = from scratch
    encoder_from: str = ""  # take the encoder from this bundle instead (e.g. train more decoders on a
    #                         fine-tuned encoder, to ensemble with it); "" = --init-from's, else ImageNet's
    image_size: int = 0  # encoder input side: the photos are resized to it (224 -> 7x7 grid, 288 -> 9x9);
    #                      0 = the starting bundle's, else 224
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
    train_limit: int = 0  # train on only the first N images (0 = all; for smoke tests)
    eval_limit: int = 0  # score only this many dev images per epoch (0 = all)
    checkpoint_every: int = 200  # steps between mid-epoch checkpoints
    keep_epochs: bool = False  # also keep each epoch's weights as epoch<N>.pt (for caption-average)
    seed: int = 0  # initialisation, batch order, dropout and SCST samples


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
    if not 0.0 < cfg.scst_top_p <= 1.0:
        raise SystemExit(f"--scst-top-p must be in (0, 1], not {cfg.scst_top_p}")
    if not 0 <= cfg.finetune_blocks <= 5:
        raise SystemExit(f"--finetune-blocks must be 0..5 (the blocks at the grid's resolution), "
                         f"not {cfg.finetune_blocks}")
    if decoder["layers"] not in (1, 2):
        raise SystemExit(f"--decoder-layers must be 1 or 2, not {decoder['layers']}")
    if not 0.0 <= cfg.hflip <= 1.0:
        raise SystemExit(f"--hflip must be in [0, 1], not {cfg.hflip}")
