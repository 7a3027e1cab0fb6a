"""Evaluation: caption a split with a model and score it with the COCO-caption metrics.

``caption-eval --weights W --data captions.csv --split dev`` prints the table and writes JSON;
``--data A --data B`` scores each dataset's split (the JSON then holds each under ``datasets``).
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
from ..bundle import BundleError, attach_file, record_entry, record_evaluation
from ..decoding import Decoding, beam_search
from ..images import Preprocessing
from ..model import CaptionModel
from ..options import add_decoding_flags, add_device_flag, add_weights_flag, decoding_from_args
from ..vocab import Vocabulary
from .data import CaptionedImage, DatasetError, read_dataset
from .datasets import MEAN, DataSet, combined_metrics, dataset_names
from .features import CACHE_DIR, FeatureCache
from .metrics import coco_scores, diversity


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
    """COCO-caption metrics of the model's captions against the human references (and their
    :func:`~captioning.training.metrics.diversity`), and the captions."""
    texts = caption_grids(decoder, grids, vocab=vocab, decoding=decoding)
    refs = {i: list(item.captions) for i, item in enumerate(items)}
    return {**coco_scores(dict(enumerate(texts)), refs, meteor=meteor), **diversity(texts)}, texts


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


def datasets_metrics(sets: Sequence[DataSet], scores: dict[str, dict[str, float]], *, split: str,
                     decoding: Decoding, rule: str = MEAN) -> dict:
    """The manifest's ``metrics`` for the dev scores of every dataset (flat for one, as ever)."""
    entries = {d.name: {"data": d.data, **manifest_metrics(scores[d.name], split=split, images=len(d.dev),
                                                          decoding=decoding)} for d in sets}
    return combined_metrics(entries, scores, rule)


def score_datasets(model: CaptionModel, sets: Sequence[DataSet], *, vocab: Vocabulary, preprocessing: Preprocessing,
                   decoding: Decoding, cache: str | Path, meteor: bool = False, what: str = "",
                   split: str = "dev") -> tuple[dict[str, dict[str, float]], dict[str, list[str]]]:
    """:func:`score_model` on each dataset's ``dev`` images (printed as a table each when ``what``
    names the model) -> per dataset name its scores and its captions."""
    scores, texts = {}, {}
    for d in sets:
        scores[d.name], texts[d.name] = score_model(model, d.dev, vocab=vocab, preprocessing=preprocessing,
                                                    decoding=decoding, cache=cache, meteor=meteor)
        if what:
            where = split if len(sets) == 1 else f"{d.name} {split}"
            print_scores(what, scores[d.name], split=where, images=len(d.dev), decoding=decoding)
    return scores, texts


def read_dev_sets(files: Sequence[str], split: str, *, limit: int | None = None,
                  images_dir: str | None = None) -> list[DataSet]:
    """The ``split`` of each dataset file (``--data``, repeatable), the first ``limit`` images of each."""
    if images_dir is not None and len(files) > 1:
        raise DatasetError("--images-dir goes with a single --data")
    return [DataSet(name, str(f), [], read_dataset(f, split=split, images_dir=images_dir)[:limit])
            for name, f in zip(dataset_names(files), files)]


def format_table(scores: dict[str, float]) -> str:
    names = list(scores)
    width = [max(8, len(n)) for n in names]
    cells = [f"{scores[n]:{w}d}" if isinstance(scores[n], int) else f"{scores[n]:{w}.4f}" for n, w in zip(names, width)]
    return "  ".join(f"{n:>{w}}" for n, w in zip(names, width)) + "\n" + "  ".join(cells)


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
    p.add_argument("--data", required=True, action="append",
                   help="dataset file (captions.csv, token file, COCO/Karpathy JSON, CSV/JSONL); repeatable")
    p.add_argument("--split", default="dev", help="split to score (default: %(default)s)")
    p.add_argument("--images-dir", default=None, help="image folder of a single --data (default: next to the data file)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N images (default: all)")
    add_scoring_flags(p, decoding_default="the bundle's")
    p.add_argument("--meteor", action="store_true", help="also compute METEOR (needs java on PATH)")
    p.add_argument("--out", default=None, help="write scores and captions as JSON here (default: eval-<split>.json)")
    p.add_argument("--record", action="store_true",
                   help="write these scores and decoding options into the bundle's manifest as its defaults")
    p.add_argument("--version", default=None, help="with --record: the bundle's new version (default: unchanged)")
    p.add_argument("--attach", action="append", default=[], metavar="FILE",
                   help="with --record: also copy FILE (e.g. a model card) into the bundle, listed with its sha256; "
                        "repeatable (default: none)")
    p.add_argument("--recipe", default=None, metavar="SCRIPT",
                   help="with --record: the script that rebuilds the bundle, named in its manifest (default: none)")
    return p


def _report(d: DataSet, scores: dict[str, float], texts: list[str]) -> dict:
    """One dataset's part of caption-eval's JSON: its file, images, scores and captions."""
    return {"data": d.data, "images": len(d.dev), "scores": scores,
            "captions": [{"image": str(it.image), "caption": t, "references": list(it.captions)}
                         for it, t in zip(d.dev, texts)]}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (args.attach or args.recipe) and not args.record:
        print("caption-eval: --attach and --recipe go with --record", file=sys.stderr)
        return 2
    try:
        cap = Captioner.load(args.weights, device=args.device, backend="torch")  # scores cap.model; no runtime graph
        sets = read_dev_sets(args.data, args.split, limit=args.limit, images_dir=args.images_dir)
    except (BundleError, DatasetError, RuntimeError) as e:
        print(f"caption-eval: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    decoding = decoding_from_args(args, cap.decoding)
    scores, texts = score_datasets(cap.model, sets, vocab=cap.vocab, preprocessing=cap.preprocessing,
                                   decoding=decoding, cache=args.cache, meteor=args.meteor, what=cap.name,
                                   split=args.split)
    reports = {d.name: _report(d, scores[d.name], texts[d.name]) for d in sets}
    seconds = round(time.time() - t0, 1)
    if len(sets) == 1:  # the layout it always had
        r = reports[sets[0].name]
        report = {"data": r["data"], "split": args.split, "images": r["images"], "decoding": decoding.asdict(),
                  "scores": r["scores"], "seconds": seconds, "captions": r["captions"]}
    else:
        report = {"split": args.split, "decoding": decoding.asdict(), "seconds": seconds, "datasets": reports}
    out = Path(args.out or f"eval-{args.split}.json")
    out.write_text(json.dumps({"bundle": cap.name, "version": cap.version, **report}, indent=1) + "\n")
    print(f"wrote {out}")
    if args.record:
        record_evaluation(cap.bundle.path, decoding=decoding.asdict(), version=args.version,
                          metrics=datasets_metrics(sets, scores, split=args.split, decoding=decoding))
        for f in args.attach:
            attach_file(cap.bundle.path, f)
        if args.recipe:
            record_entry(cap.bundle.path, "recipe", args.recipe)
        print(f"recorded the scores and decoding{' and ' + ', '.join(args.attach) if args.attach else ''} "
              f"in {cap.bundle.path / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
