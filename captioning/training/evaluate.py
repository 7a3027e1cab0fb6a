"""Evaluation: caption a split with a model and score it with the COCO-caption metrics.

``caption-eval --weights W --data captions.csv --split dev`` prints the table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..api import Captioner
from ..bundle import BundleError, record_evaluation
from ..decoding import Decoding, beam_search
from ..images import Preprocessing
from ..model import CaptionModel
from ..options import add_decoding_flags, add_device_flag, add_weights_flag, decoding_from_args
from ..vocab import Vocabulary
from .data import CaptionedImage, DatasetError, read_dataset
from .features import CACHE_DIR, FeatureCache
from .metrics import coco_scores


@torch.inference_mode()
def caption_grids(decoder: torch.nn.Module, grids: np.ndarray, *, vocab: Vocabulary, decoding: Decoding,
                  batch_size: int = 100) -> list[str]:
    """Beam-search captions for cached grids (N, S*S, 1280), in order, on the decoder's device."""
    decoder.eval()
    device = next(decoder.parameters()).device
    texts = []
    for i in range(0, len(grids), batch_size):
        grid = torch.from_numpy(np.asarray(grids[i:i + batch_size])).float().to(device)  # (B, S*S, 1280)
        nbests = beam_search(decoder, grid, grid.mean(dim=1), vocab=vocab, **decoding.asdict())
        texts += [" ".join(vocab.decode(nb[0].tokens)) for nb in nbests]
    return texts


def score_split(decoder: torch.nn.Module, grids: np.ndarray, items: Sequence[CaptionedImage], *,
                vocab: Vocabulary, decoding: Decoding, meteor: bool = False) -> tuple[dict[str, float], list[str]]:
    """COCO-caption metrics of the model's captions against the human references, and the captions."""
    texts = caption_grids(decoder, grids, vocab=vocab, decoding=decoding)
    refs = {i: list(item.captions) for i, item in enumerate(items)}
    return coco_scores(dict(enumerate(texts)), refs, meteor=meteor), texts


def score_model(model: CaptionModel, items: Sequence[CaptionedImage], *, vocab: Vocabulary,
                preprocessing: Preprocessing, decoding: Decoding, cache: str | Path,
                meteor: bool = False) -> tuple[dict[str, float], list[str]]:
    """:func:`score_split` of a whole model: the images encoded once through the feature cache."""
    model.eval()
    grids = FeatureCache(cache, model.encoder, preprocessing).grids([it.image for it in items])
    return score_split(model.decoder, grids, items, vocab=vocab, decoding=decoding, meteor=meteor)


def manifest_metrics(scores: dict[str, float], *, split: str, images: int, decoding: Decoding) -> dict:
    """The ``metrics`` entry of a bundle manifest: where the scores were measured, rounded scores."""
    return {"split": split, "images": images, "beam_size": decoding.beam_size,
            **{k: round(v, 4) for k, v in scores.items()}}


def format_table(scores: dict[str, float]) -> str:
    names = list(scores)
    return "  ".join(f"{n:>8}" for n in names) + "\n" + "  ".join(f"{scores[n]:8.4f}" for n in names)


def print_scores(what: str, scores: dict[str, float], *, split: str, images: int, decoding: Decoding) -> None:
    """``<what> on <split> (<images> images, <decoding>):`` and the table."""
    print(f"{what} on {split} ({images} images, {decoding.asdict()}):")
    print(format_table(scores))


def add_scoring_flags(p: argparse.ArgumentParser, *, decoding_default: str) -> None:
    """The flags of every tool that scores a model on a split: ``--cache``, the decoding flags
    (``decoding_default``: whose decoding they change) and ``--device``."""
    p.add_argument("--cache", default=CACHE_DIR, help="feature cache folder (default: %(default)s)")
    add_decoding_flags(p, default=decoding_default)
    add_device_flag(p)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="caption-eval", description="Score a model bundle on a captioned split.")
    add_weights_flag(p)
    p.add_argument("--data", required=True, help="dataset file (captions.csv, token file, COCO/Karpathy JSON, CSV/JSONL)")
    p.add_argument("--split", default="dev", help="split to score (default: %(default)s)")
    p.add_argument("--images-dir", default=None, help="image folder (default: next to the data file)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N images (default: all)")
    add_scoring_flags(p, decoding_default="the bundle's")
    p.add_argument("--meteor", action="store_true", help="also compute METEOR (needs java on PATH)")
    p.add_argument("--out", default=None, help="write scores and captions as JSON here (default: eval-<split>.json)")
    p.add_argument("--record", action="store_true",
                   help="write these scores and decoding options into the bundle's manifest as its defaults")
    p.add_argument("--version", default=None, help="with --record: the bundle's new version (default: unchanged)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cap = Captioner.load(args.weights, device=args.device)
        items = read_dataset(args.data, split=args.split, images_dir=args.images_dir)[: args.limit]
    except (BundleError, DatasetError, RuntimeError) as e:
        print(f"caption-eval: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    decoding = decoding_from_args(args, cap.decoding)
    scores, texts = score_model(cap.model, items, vocab=cap.vocab, preprocessing=cap.preprocessing,
                                decoding=decoding, cache=args.cache, meteor=args.meteor)
    print_scores(cap.name, scores, split=args.split, images=len(items), decoding=decoding)
    out = Path(args.out or f"eval-{args.split}.json")
    out.write_text(json.dumps({
        "bundle": cap.name, "version": cap.version, "data": str(args.data), "split": args.split,
        "images": len(items), "decoding": decoding.asdict(), "scores": scores, "seconds": round(time.time() - t0, 1),
        "captions": [{"image": str(it.image), "caption": t, "references": list(it.captions)}
                     for it, t in zip(items, texts)]}, indent=1) + "\n")
    print(f"wrote {out}")
    if args.record:
        record_evaluation(cap.bundle.path, decoding=decoding.asdict(), version=args.version,
                          metrics=manifest_metrics(scores, split=args.split, images=len(items), decoding=decoding))
        print(f"recorded the scores and decoding in {cap.bundle.path / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
