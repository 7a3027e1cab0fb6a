"""Evaluation: caption a split with a model and score it with the COCO-caption metrics.

``caption-eval --weights W --data captions.csv --split dev`` prints the table and writes JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ._cli_help import bool01, field_comments
from .data import CaptionedImage, read_dataset
from .decoder import AttentionLSTMDecoder
from .decoding import Decoding, beam_search
from .features import FeatureCache
from .metrics import coco_scores
from .vocab import Vocabulary


@torch.inference_mode()
def caption_grids(decoder: AttentionLSTMDecoder, grids: np.ndarray, *, vocab: Vocabulary, decoding: Decoding,
                  batch_size: int = 100) -> list[str]:
    """Beam-search captions for cached grids (N, 49, 1280), in order."""
    decoder.eval()
    texts = []
    for i in range(0, len(grids), batch_size):
        grid = torch.from_numpy(np.asarray(grids[i:i + batch_size])).float()  # (B, 49, 1280)
        nbests = beam_search(decoder, grid, grid.mean(dim=1), vocab=vocab, **decoding.asdict())
        texts += [" ".join(vocab.decode(nb[0].tokens)) for nb in nbests]
    return texts


def score_split(decoder: AttentionLSTMDecoder, grids: np.ndarray, items: Sequence[CaptionedImage], *,
                vocab: Vocabulary, decoding: Decoding, meteor: bool = False) -> tuple[dict[str, float], list[str]]:
    """COCO-caption metrics of the model's captions against the human references."""
    texts = caption_grids(decoder, grids, vocab=vocab, decoding=decoding)
    refs = {i: list(item.captions) for i, item in enumerate(items)}
    return coco_scores(dict(enumerate(texts)), refs, meteor=meteor), texts


def manifest_metrics(scores: dict[str, float], *, split: str, images: int, beam_size: int) -> dict:
    """The ``metrics`` entry of a bundle manifest: where the scores were measured, rounded scores."""
    return {"split": split, "images": images, "beam_size": beam_size, **{k: round(v, 4) for k, v in scores.items()}}


def format_table(scores: dict[str, float]) -> str:
    names = list(scores)
    return "  ".join(f"{n:>8}" for n in names) + "\n" + "  ".join(f"{scores[n]:8.4f}" for n in names)


def add_decoding_arguments(p: argparse.ArgumentParser, *, default: str) -> None:
    """A flag per :class:`Decoding` option (help: the field's comment). Each defaults to None,
    which :func:`decoding_from_args` reads as "keep"; ``default`` says whose value that is."""
    help_text = field_comments(Decoding)
    for f in dataclasses.fields(Decoding):
        kind = {"type": bool01, "choices": (False, True), "metavar": "{0,1}"} if isinstance(f.default, bool) \
            else {"type": type(f.default)}
        p.add_argument("--" + f.name.replace("_", "-"), default=None,
                       help=f"{help_text[f.name]} (default: {default})".replace("%", "%%"), **kind)


def decoding_from_args(args: argparse.Namespace, base: Decoding) -> Decoding:
    """``base`` with the options given by :func:`add_decoding_arguments`' flags."""
    return base.replace(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Decoding)})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="caption-eval", description="Score a model bundle on a captioned split.")
    p.add_argument("--weights", default=None, help="bundle name or folder (default: weights/DEFAULT)")
    p.add_argument("--data", required=True, help="dataset file (captions.csv, token file, COCO/Karpathy JSON, CSV/JSONL)")
    p.add_argument("--split", default="dev", help="split to score (default: %(default)s)")
    p.add_argument("--images-dir", default=None, help="image folder (default: next to the data file)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N images (default: all)")
    add_decoding_arguments(p, default="the bundle's")
    p.add_argument("--meteor", action="store_true", help="also compute METEOR (needs java on PATH)")
    p.add_argument("--cache", default="cache/features", help="feature cache folder (default: %(default)s)")
    p.add_argument("--out", default=None, help="write scores and captions as JSON here (default: eval-<split>.json)")
    p.add_argument("--record", action="store_true",
                   help="write these scores and decoding options into the bundle's manifest as its defaults")
    p.add_argument("--version", default=None, help="with --record: the bundle's new version (default: unchanged)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    from .api import Captioner
    from .bundle import BundleError, record_evaluation
    from .data import DatasetError

    args = _parser().parse_args(argv)
    try:
        cap = Captioner.load(args.weights, device="cpu")
        items = read_dataset(args.data, split=args.split, images_dir=args.images_dir)[: args.limit]
    except (BundleError, DatasetError) as e:
        print(f"caption-eval: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    grids = FeatureCache(args.cache, cap.model.encoder, cap.preprocessing).grids([it.image for it in items])
    decode = decoding_from_args(args, cap.decoding)
    scores, texts = score_split(cap.model.decoder, grids, items, vocab=cap.vocab, decoding=decode,
                               meteor=args.meteor)
    print(f"{cap.name} on {args.split} ({len(items)} images, {decode.asdict()}):")
    print(format_table(scores))
    out = Path(args.out or f"eval-{args.split}.json")
    out.write_text(json.dumps({
        "bundle": cap.name, "version": cap.version, "data": str(args.data), "split": args.split,
        "images": len(items), "decoding": decode.asdict(), "scores": scores, "seconds": round(time.time() - t0, 1),
        "captions": [{"image": str(it.image), "caption": t, "references": list(it.captions)}
                     for it, t in zip(items, texts)]}, indent=1) + "\n")
    print(f"wrote {out}")
    if args.record:
        record_evaluation(cap.bundle.path, decoding=decode.asdict(), version=args.version,
                          metrics=manifest_metrics(scores, split=args.split, images=len(items),
                                                   beam_size=decode.beam_size))
        print(f"recorded the scores and decoding in {cap.bundle.path / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
