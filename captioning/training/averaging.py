"""``caption-average``: a bundle from the uniform average of a run's epoch-end weights.

Averaging the weights of the last few epochs (as in stochastic weight averaging) smooths out
the epoch-to-epoch noise of self-critical training: the average usually scores at least as
well as its best member, without depending on one lucky epoch.

    caption-train ... --out runs/r288 --keep-epochs            # writes runs/r288/epoch<N>.pt
    caption-average --base runs/r288/bundle --checkpoints runs/r288/epoch{4,5,6}.pt \\
        --data ../shared/data/flickr8k/captions.csv --out runs/r288/averaged

The files may be ``epoch<N>.pt``, ``best.pt`` or ``checkpoint.pt`` of runs that trained the
same model as ``--base`` (their ``decoder`` and, when fine-tuning, ``encoder`` entries are
averaged; the tags' ImageNet copies stay the base bundle's). The new bundle is scored on dev
with the base's decoding (or the decoding flags) and records what it averaged.
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import torch

from ..api import resolve_device
from ..bundle import BundleError, BundleInfo, load_bundle, save_bundle
from ..options import decoding_from_args
from .data import DatasetError
from .evaluate import add_scoring_flags, datasets_metrics, read_dev_sets, score_datasets


def average_weights(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Uniform average of state dicts with the same keys (integer tensors taken from the first)."""
    if not states or any(s.keys() != states[0].keys() for s in states):
        raise ValueError("the checkpoints do not hold the same weights")
    return {k: (sum(s[k].double() for s in states) / len(states)).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[0].items()}


def _trained_weights(path: str) -> dict[str, dict[str, torch.Tensor]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: never unpickles objects
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise ValueError(f"{path}: not a caption-train checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or "decoder" not in state:
        raise ValueError(f"{path}: no decoder weights (not a caption-train checkpoint)")
    return state


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="caption-average", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--base", required=True, help="the run's bundle (model, vocabulary, preprocessing) (required)")
    p.add_argument("--checkpoints", nargs="+", required=True, help="epoch<N>.pt / best.pt / checkpoint.pt files (required)")
    p.add_argument("--data", required=True, action="append",
                   help="dataset file with the dev split (see caption-eval); repeatable: scored on each (required)")
    p.add_argument("--split", default="dev", help="split to score the average on (default: %(default)s)")
    p.add_argument("--out", required=True, help="bundle folder to write (required)")
    p.add_argument("--version", default=None, help="bundle version (default: the base's)")
    add_scoring_flags(p, decoding_default="the base's")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        base = load_bundle(args.base)
        decoding = decoding_from_args(args, base.default_decoding)
        sets = read_dev_sets(args.data, args.split)
        states = [_trained_weights(p) for p in args.checkpoints]
        model = base.model
        model.decoder.load_state_dict(average_weights([s["decoder"] for s in states]))
        if any("encoder" in s for s in states):
            model.encoder.load_captioning_state_dict(average_weights([s["encoder"] for s in states]))
    except (BundleError, DatasetError, OSError, ValueError, RuntimeError) as e:
        print(f"caption-average: {e}", file=sys.stderr)
        return 2
    scores, _ = score_datasets(model.to(device), sets, vocab=base.vocab, preprocessing=base.preprocessing,
                               decoding=decoding, cache=args.cache, what=f"average of {len(states)} checkpoints",
                               split=args.split)
    training = {**base.manifest.get("training", {}), "averaged": [str(Path(p)) for p in args.checkpoints],
                "average_command": " ".join(["caption-average", *(argv if argv is not None else sys.argv[1:])])}
    info = BundleInfo(name=base.name, version=args.version or base.version, training=training,
                      metrics=datasets_metrics(sets, scores, split=args.split, decoding=decoding),
                      decoding=decoding.asdict(), encoder_source=base.manifest.get("encoder_source", {}))
    path = save_bundle(args.out, model, base.vocab, info, preprocessing=base.preprocessing)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
