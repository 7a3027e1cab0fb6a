"""Ensembles: several decoders trained on the same vocabulary write one caption together.

At every step each member predicts the next word from its own state; the ensemble's
next-word distribution is the mean of the members' distributions (log of the mean
probability is returned as the logits, so greedy, beam search and sampling work unchanged).
Attention maps are the members' mean.

    caption-ensemble --members runs/flickr8k/bundle runs/seed1/bundle runs/seed2/bundle --half \\
        --data ../shared/data/flickr8k/captions.csv --name lite0_sat_x3.flickr8k --out weights/lite0_sat_x3.flickr8k

builds the bundle, scores it on dev and records the members' provenance in its manifest.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from .decoder import AttentionLSTMDecoder, DecoderState
from .evaluate import add_decoding_arguments


@dataclass
class EnsembleState:
    members: list[DecoderState]  # one state per member, rows aligned

    def reorder(self, index: torch.Tensor) -> "EnsembleState":
        return EnsembleState([s.reorder(index) for s in self.members])

    def repeat(self, k: int) -> "EnsembleState":
        return EnsembleState([s.repeat(k) for s in self.members])


class EnsembleDecoder(nn.Module):
    """Decoders of one configuration voting at every step (the interface of AttentionLSTMDecoder)."""

    def __init__(self, members: Sequence[AttentionLSTMDecoder]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if len({m.config for m in members}) != 1:
            raise ValueError("ensemble members must share one decoder configuration")
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    def init_state(self, grid: torch.Tensor, pooled: torch.Tensor) -> EnsembleState:
        return EnsembleState([m.init_state(grid, pooled) for m in self.members])

    def step(self, tokens: torch.Tensor, state: EnsembleState) -> tuple[torch.Tensor, EnsembleState, torch.Tensor]:
        """tokens (N,) -> log of the members' mean next-word probability (N, V), state, mean attention (N, 49)."""
        outs = [m.step(tokens, s) for m, s in zip(self.members, state.members)]
        logprobs = torch.stack([logits.float().log_softmax(dim=-1) for logits, _, _ in outs])  # (M, N, V)
        mean = logprobs.logsumexp(dim=0) - math.log(len(outs))  # (N, V)
        alpha = torch.stack([a for _, _, a in outs]).mean(dim=0)  # (N, 49)
        return mean, EnsembleState([s for _, s, _ in outs]), alpha


def _mismatch(bundles) -> str | None:
    """Why these bundles cannot form an ensemble, or None."""
    nested = [b.name for b in bundles if b.model.config.members != 1]
    if nested:
        return f"{nested[0]} is already an ensemble (members must be single decoders)"
    first = bundles[0]
    for b in bundles[1:]:
        problem = ("vocabulary" if b.vocab.itos != first.vocab.itos else
                   "preprocessing" if b.preprocessing != first.preprocessing else
                   "decoder sizes" if b.model.config.decoder != first.model.config.decoder else
                   "encoder weights" if _encoder_differs(b.model.encoder, first.model.encoder) else None)
        if problem:
            return f"{b.name} and {first.name} differ in {problem}"
    return None


def _encoder_differs(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() != sb.keys() or any(not torch.equal(sa[k], sb[k]) for k in sa)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="caption-ensemble", description="Combine trained bundles into one ensemble bundle, scored on dev.")
    p.add_argument("--members", nargs="+", required=True, help="bundles (names or folders) with the same vocabulary")
    p.add_argument("--data", required=True, help="dataset file with the dev split (see caption-eval)")
    p.add_argument("--split", default="dev", help="split to score the ensemble on (default: %(default)s)")
    p.add_argument("--name", required=True, help="bundle name, <arch>.<tag>")
    p.add_argument("--version", default="1.0.0", help="bundle version (default: %(default)s)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--cache", default="cache/features", help="feature cache folder (default: %(default)s)")
    add_decoding_arguments(p, default="the first member's")  # recorded as the ensemble's decoding
    p.add_argument("--half", action="store_true", help="store the decoders as float16 (half the size)")
    p.add_argument("--device", default="cpu", help="cpu (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    from .bundle import BundleError, BundleInfo, load_bundle, save_bundle
    from .data import DatasetError, read_dataset
    from .evaluate import decoding_from_args, format_table, manifest_metrics, score_split
    from .features import FeatureCache
    from .model import CaptionModel

    args = _parser().parse_args(argv)
    try:
        bundles = [load_bundle(m) for m in args.members]
        problem = _mismatch(bundles)
        if problem:
            raise BundleError(problem)
        items = read_dataset(args.data, split=args.split)
    except (BundleError, DatasetError) as e:
        print(f"caption-ensemble: {e}", file=sys.stderr)
        return 2
    first = bundles[0]
    config = dataclasses.replace(first.model.config, members=len(bundles))
    model = CaptionModel(config)
    model.encoder.load_state_dict(first.model.encoder.state_dict())
    for member, b in zip(model.decoder.members, bundles):
        member.load_state_dict(b.model.decoder.state_dict())
    if args.half:  # score exactly what is shipped: the float16-rounded weights
        for member in model.decoder.members:
            member.load_state_dict({k: v.half().float() for k, v in member.state_dict().items()})
    model.eval()
    decoding = decoding_from_args(args, first.default_decoding)
    grids = FeatureCache(args.cache, model.encoder, first.preprocessing).grids([it.image for it in items])
    scores, _ = score_split(model.decoder, grids, items, vocab=first.vocab, decoding=decoding)
    print(f"{args.name}: {len(bundles)} members on {args.split} ({len(items)} images, {decoding.asdict()}):")
    print(format_table(scores))
    info = BundleInfo(
        name=args.name, version=args.version,
        metrics=manifest_metrics(scores, split=args.split, images=len(items), beam_size=decoding.beam_size),
        training={"ensemble_of": [{"name": b.name, "version": b.version, "metrics": b.manifest.get("metrics", {}),
                                   "training": b.manifest.get("training", {})} for b in bundles],
                  "command": " ".join(["caption-ensemble", *(argv if argv is not None else sys.argv[1:])])},
        decoding=decoding.asdict(), encoder_source=first.manifest.get("encoder_source", {}))
    path = save_bundle(args.out, model, first.vocab, info, preprocessing=first.preprocessing, half_decoder=args.half)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
