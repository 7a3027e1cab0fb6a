"""``caption-ensemble``: combine trained bundles into one ensemble bundle, scored on dev.

The members' decoders vote at every step (:class:`captioning.decoder.EnsembleDecoder`); they
must share the vocabulary, the preprocessing, the decoder sizes and the encoder weights.

    caption-ensemble --members runs/flickr8k/bundle runs/seed1/bundle runs/seed2/bundle --half \\
        --data ../shared/data/flickr8k/captions.csv --name lite0_sat_x3.flickr8k --out weights/lite0_sat_x3.flickr8k

builds the bundle, scores it on dev and records the members' provenance in its manifest.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Sequence

import torch
import torch.nn as nn

from ..api import resolve_device
from ..bundle import Bundle, BundleError, BundleInfo, load_bundle, name_problem, save_bundle
from ..model import CaptionModel
from ..options import decoding_from_args
from .data import DatasetError
from .evaluate import add_scoring_flags, datasets_metrics, read_dev_sets, score_datasets


def _mismatch(bundles: Sequence[Bundle]) -> str | None:
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


def ensemble_model(bundles: Sequence[Bundle], *, half: bool = False) -> CaptionModel:
    """One model with the first bundle's encoder and every bundle's decoder as a member;
    ``half``: the decoders rounded to float16, as a ``--half`` bundle stores them."""
    first = bundles[0]
    model = CaptionModel(dataclasses.replace(first.model.config, members=len(bundles)))
    model.encoder.load_state_dict(first.model.encoder.state_dict())
    for member, b in zip(model.decoder.members, bundles):
        member.load_state_dict(b.model.decoder.state_dict())
    if half:  # score exactly what is shipped: the float16-rounded weights
        for member in model.decoder.members:
            member.load_state_dict({k: v.half().float() for k, v in member.state_dict().items()})
    return model.eval()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="caption-ensemble",
                                description="Combine trained bundles into one ensemble bundle, scored on dev.")
    p.add_argument("--members", nargs="+", required=True, help="bundles (names or folders) with the same vocabulary")
    p.add_argument("--data", required=True, action="append",
                   help="dataset file with the dev split (see caption-eval); repeatable: scored on each")
    p.add_argument("--split", default="dev", help="split to score the ensemble on (default: %(default)s)")
    p.add_argument("--name", required=True, help="bundle name, <arch>.<tag>")
    p.add_argument("--version", default="1.0.0", help="bundle version (default: %(default)s)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--half", action="store_true", help="store the decoders as float16 (half the size)")
    add_scoring_flags(p, decoding_default="the first member's")  # recorded as the ensemble's decoding
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        bundles = [load_bundle(m) for m in args.members]
        problem = _mismatch(bundles) or name_problem(args.name, bundles[0].model.config.encoder)
        if problem:
            raise BundleError(problem)
        sets = read_dev_sets(args.data, args.split)
    except (BundleError, DatasetError, RuntimeError) as e:
        print(f"caption-ensemble: {e}", file=sys.stderr)
        return 2
    first = bundles[0]
    model = ensemble_model(bundles, half=args.half).to(device)
    decoding = decoding_from_args(args, first.default_decoding)
    scores, _ = score_datasets(model, sets, vocab=first.vocab, preprocessing=first.preprocessing, decoding=decoding,
                               cache=args.cache, what=f"{args.name}: {len(bundles)} members", split=args.split)
    info = BundleInfo(
        name=args.name, version=args.version,
        metrics=datasets_metrics(sets, scores, split=args.split, decoding=decoding),
        training={"ensemble_of": [{"name": b.name, "version": b.version, "metrics": b.manifest.get("metrics", {}),
                                   "training": b.manifest.get("training", {})} for b in bundles],
                  "command": " ".join(["caption-ensemble", *(argv if argv is not None else sys.argv[1:])])},
        decoding=decoding.asdict(), encoder_source=first.manifest.get("encoder_source", {}))
    path = save_bundle(args.out, model, first.vocab, info, preprocessing=first.preprocessing, half_decoder=args.half)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
