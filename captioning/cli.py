"""``caption IMAGE...``: print captions (and tags) for a few images.

With a calibrated bundle (:mod:`captioning.confidence`) and beam search, each caption is followed
by its confidence in words, ``a dog runs on the grass  (sure, 0.83)``; for a photo unlike the
training photos the everyday tags come first, then the sentence :data:`captioning.trust.UNFAMILIAR`,
then the caption. ``--json`` has ``confidence`` and ``unfamiliar`` (null without a calibration)."""
from __future__ import annotations

import argparse
import inspect
import json
import sys
from dataclasses import asdict

from .api import Captioner
from .bundle import BundleError
from .everyday import EverydayOptions
from .images import ImageError
from .startup import model_loading
from .options import (N_BEST_HELP, TAGS_HELP, add_dataclass_flags, add_decoding_flags, add_runtime_flags,
                      add_strict_flag, add_weights_flag, decoding_from_args, options_from_args, runtime_from_args)
from .trust import UNFAMILIAR, confidence_words


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="caption", description="Caption images with a model bundle. With a "
                                "bundle carrying a confidence calibration and beam search, each caption is followed by "
                                "how sure it is, '(sure, 0.83)' or '(unsure, 0.31)', and a photo unlike the training "
                                "photos leads with its tags and says so.")
    p.add_argument("images", nargs="+", help="image files")
    add_weights_flag(p)
    add_runtime_flags(p)
    p.add_argument("--method", default="beam", choices=["beam", "greedy", "sample"], help="decoding method (default: %(default)s)")
    add_decoding_flags(p, default="the bundle's")
    sampling = inspect.signature(Captioner.decode).parameters  # the API's defaults, declared there once
    p.add_argument("--temperature", type=float, default=sampling["temperature"].default,
                   help="--method sample: divide the logits by this (default: %(default)s)")
    p.add_argument("--top-p", type=float, default=sampling["top_p"].default,
                   help="--method sample: sample from the smallest word set with this much probability (default: %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="--method sample: seed (default: random)")
    p.add_argument("--n-best", metavar="N", type=int, default=0, help=f"{N_BEST_HELP} (default: %(default)s)")
    p.add_argument("--tags", metavar="K", type=int, default=5, help=f"{TAGS_HELP} (default: %(default)s)")
    add_dataclass_flags(p, EverydayOptions)
    p.add_argument("--json", action="store_true", help="one JSON object per image instead of text (default: off)")
    add_strict_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    runtime = runtime_from_args(p, args)
    everyday = options_from_args(p, EverydayOptions, args)
    try:
        with model_loading():
            cap = Captioner.load(args.weights, **asdict(runtime))
    except (BundleError, RuntimeError) as e:
        print(f"caption: {e}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.images:
        try:
            enc = cap.encode([path])
        except ImageError as e:
            print(f"caption: {e}", file=sys.stderr)
            failed += 1
            continue
        decoding = decoding_from_args(args, cap.decoding).for_n_best(args.n_best)
        r = cap.decode(enc, method=args.method, seed=args.seed, temperature=args.temperature, top_p=args.top_p,
                       **decoding.asdict())[0]
        tags = cap.top_tags(enc, k=args.tags)[0] if args.tags else []
        words = cap.top_everyday_tags(enc, k=args.tags, options=everyday)[0] if args.tags else []
        if args.json:
            print(json.dumps({"path": path, "caption": r.text,
                              "confidence": None if r.confidence is None else round(r.confidence, 4),
                              "unfamiliar": r.unfamiliar, "score": round(r.score, 4),
                              "n_best": [asdict(a) for a in r.alternatives[: args.n_best]],
                              "tags": [asdict(t) for t in tags], "everyday_tags": [w.asdict() for w in words]}))
            continue
        said = f"{r.text}  ({trust})" if (trust := confidence_words(r.confidence, r.unfamiliar)) else r.text
        everyday_line = "everyday tags: " + ", ".join(map(str, words))
        if r.unfamiliar:  # lead with the tags, say why, then the caption
            print(f"{path}\t{everyday_line if words else 'no everyday tags'}")
            print(f"\t  {UNFAMILIAR}")
            print(f"\t  caption: {said}")
        else:
            print(f"{path}\t{said}")
        for a in r.alternatives[1: args.n_best]:
            print(f"\t  {a.score:7.3f}  {a.text}")
        if words and not r.unfamiliar:
            print(f"\t  {everyday_line}")
        if tags:
            print("\t  tags: " + ", ".join(f"{t.label} ({t.probability:.2f})" for t in tags))
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
