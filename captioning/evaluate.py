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

from .data import CaptionedImage, read_dataset
from .decoder import AttentionLSTMDecoder
from .decoding import beam_search
from .features import FeatureCache
from .metrics import coco_scores
from .vocab import Vocabulary


@torch.inference_mode()
def caption_grids(decoder: AttentionLSTMDecoder, grids: np.ndarray, *, vocab: Vocabulary, beam_size: int = 3,
                  max_length: int = 20, length_penalty: float = 0.0, no_repeat_ngram_size: int = 0,
                  no_repeat_words: bool = False, batch_size: int = 100) -> list[str]:
    """Beam-search captions for cached grids (N, 49, 1280), in order."""
    decoder.eval()
    texts = []
    for i in range(0, len(grids), batch_size):
        grid = torch.from_numpy(np.asarray(grids[i:i + batch_size])).float()  # (B, 49, 1280)
        nbests = beam_search(decoder, grid, grid.mean(dim=1), vocab=vocab, beam_size=beam_size,
                             max_length=max_length, length_penalty=length_penalty,
                             no_repeat_ngram_size=no_repeat_ngram_size, no_repeat_words=no_repeat_words)
        texts += [" ".join(vocab.decode(nb[0].tokens)) for nb in nbests]
    return texts


def score_split(decoder: AttentionLSTMDecoder, grids: np.ndarray, items: Sequence[CaptionedImage], *,
                vocab: Vocabulary, meteor: bool = False, **decode) -> tuple[dict[str, float], list[str]]:
    """COCO-caption metrics of the model's captions against the human references."""
    texts = caption_grids(decoder, grids, vocab=vocab, **decode)
    refs = {i: list(item.captions) for i, item in enumerate(items)}
    return coco_scores(dict(enumerate(texts)), refs, meteor=meteor), texts


def manifest_metrics(scores: dict[str, float], *, split: str, images: int, beam_size: int) -> dict:
    """The ``metrics`` entry of a bundle manifest: where the scores were measured, rounded scores."""
    return {"split": split, "images": images, "beam_size": beam_size, **{k: round(v, 4) for k, v in scores.items()}}


def format_table(scores: dict[str, float]) -> str:
    names = list(scores)
    return "  ".join(f"{n:>8}" for n in names) + "\n" + "  ".join(f"{scores[n]:8.4f}" for n in names)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="caption-eval", description="Score a model bundle on a captioned split.")
    p.add_argument("--weights", default=None, help="bundle name or folder (default: weights/DEFAULT)")
    p.add_argument("--data", required=True, help="dataset file (captions.csv, token file, COCO/Karpathy JSON, CSV/JSONL)")
    p.add_argument("--split", default="dev", help="split to score (default: %(default)s)")
    p.add_argument("--images-dir", default=None, help="image folder (default: next to the data file)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N images (default: all)")
    p.add_argument("--beam-size", type=int, default=None, help="beam width (default: the bundle's)")
    p.add_argument("--max-length", type=int, default=None, help="max words (default: the bundle's)")
    p.add_argument("--length-penalty", type=float, default=None, help="length normalisation exponent (default: the bundle's)")
    p.add_argument("--no-repeat-ngram-size", type=int, default=None,
                   help="block repeated n-grams of this size, 0 = off (default: the bundle's)")
    p.add_argument("--no-repeat-words", type=int, choices=(0, 1), default=None,
                   help="1 = no word but articles, prepositions, pronouns and colours twice in a caption "
                        "(default: the bundle's)")
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
    decode = {"beam_size": args.beam_size or cap.defaults["beam_size"],
              "max_length": args.max_length or cap.defaults["max_length"],
              "length_penalty": cap.defaults["length_penalty"] if args.length_penalty is None else args.length_penalty,
              "no_repeat_ngram_size": cap.defaults["no_repeat_ngram_size"] if args.no_repeat_ngram_size is None
              else args.no_repeat_ngram_size,
              "no_repeat_words": bool(cap.defaults["no_repeat_words"] if args.no_repeat_words is None
                                      else args.no_repeat_words)}
    scores, texts = score_split(cap.model.decoder, grids, items, vocab=cap.vocab, meteor=args.meteor, **decode)
    print(f"{cap.name} on {args.split} ({len(items)} images, {decode}):")
    print(format_table(scores))
    out = Path(args.out or f"eval-{args.split}.json")
    out.write_text(json.dumps({
        "bundle": cap.name, "version": cap.version, "data": str(args.data), "split": args.split,
        "images": len(items), "decoding": decode, "scores": scores, "seconds": round(time.time() - t0, 1),
        "captions": [{"image": str(it.image), "caption": t, "references": list(it.captions)}
                     for it, t in zip(items, texts)]}, indent=1) + "\n")
    print(f"wrote {out}")
    if args.record:
        record_evaluation(cap.bundle.path, decoding=decode, version=args.version,
                          metrics=manifest_metrics(scores, split=args.split, images=len(items),
                                                   beam_size=decode["beam_size"]))
        print(f"recorded the scores and decoding in {cap.bundle.path / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
