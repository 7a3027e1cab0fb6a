"""Several datasets in one run: their names, the per-epoch draw that keeps the smaller ones from
being drowned, and their dev scores combined into the model-selection score and the manifest.

A dataset is named after the folder of its file (``../shared/data/coco_subset/captions.csv``:
``coco_subset``); its dev scores are logged as ``dev_<name>_<metric>``. With one dataset
nothing changes: scores are logged as ``dev_<metric>`` and the manifest's metrics stay flat.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .data import CaptionedImage, DatasetError, read_dataset

SELECTION_METRIC = "CIDEr-D"  # the dev metric model selection reads
MEAN = "mean"  # the selection rule "the mean of the devs' CIDEr-D, each dataset counting once"


@dataclass(frozen=True)
class DataSet:
    name: str  # the folder name of its file: the prefix of its scores (flickr8k, coco_subset)
    data: str  # the dataset file
    train: list[CaptionedImage]  # its training images (first train_limit)
    dev: list[CaptionedImage]  # its dev images (first eval_limit)


def dataset_name(data: str | os.PathLike) -> str:
    """``coco_subset`` for ``../shared/data/coco_subset/captions.csv``."""
    return Path(os.path.abspath(data)).parent.name


def dataset_names(files: Sequence[str | os.PathLike]) -> list[str]:
    """The names of the dataset files; two of one name (or one file twice) are a DatasetError."""
    names = [dataset_name(f) for f in files]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise DatasetError(f"--data {files[names.index(name)]} and {files[i]} are both named {name!r} "
                               "(a dataset is named after the folder of its file): give each its own folder")
    return names


def read_datasets(files: Sequence[str], *, train_split: str | None, dev_split: str, train_limit: int = 0,
                  eval_limit: int = 0) -> list[DataSet]:
    """Each file's train split (none when ``train_split`` is None) and dev split, each cut to its limit."""
    return [DataSet(name, str(data),
                    read_dataset(data, split=train_split)[: train_limit or None] if train_split else [],
                    read_dataset(data, split=dev_split)[: eval_limit or None])
            for name, data in zip(dataset_names(files), files)]


def epoch_counts(sizes: Sequence[int], balance: float) -> list[int]:
    """Images each dataset contributes to an epoch of sum(sizes) images: shares proportional to
    size ** balance (1: as they come; 0: equal shares), rounded so that they add up."""
    total = sum(sizes)
    weights = [n ** balance for n in sizes]
    counts = [round(total * w / sum(weights)) for w in weights]
    counts[counts.index(max(counts))] += total - sum(counts)
    return counts


def epoch_order(sizes: Sequence[int], balance: float, *, seed: int, epoch: int) -> list[int]:
    """The images of one epoch, as indexes into the datasets' training images one after the other,
    drawn for (seed, epoch), so a resumed run draws the same. A dataset drawn more than it has
    images is seen whole (as often as fits) plus a random rest; one drawn less, a random subset.
    With one dataset (or the natural shares) it is the permutation of every image, as it always was."""
    gen = torch.Generator().manual_seed(seed * 1000 + epoch)
    counts = epoch_counts(sizes, balance)
    if list(counts) == list(sizes):
        return torch.randperm(sum(sizes), generator=gen).tolist()
    picks, offset = [], 0
    for n, k in zip(sizes, counts):
        passes, rest = divmod(k, n)
        picks += list(range(offset, offset + n)) * passes + (offset + torch.randperm(n, generator=gen)[:rest]).tolist()
        offset += n
    return [picks[i] for i in torch.randperm(len(picks), generator=gen).tolist()]


def check_rule(rule: str, names: Sequence[str]) -> None:
    """A selection rule is ``mean`` or the name of one of the datasets."""
    if rule != MEAN and rule not in names:
        raise SystemExit(f"--select-on must be {MEAN} or a dataset name ({', '.join(names)}), not {rule!r}")


def selection_score(scores: dict[str, dict[str, float]], rule: str) -> float:
    """The number the best epoch is chosen by: per dataset name its dev scores -> the rule's CIDEr-D."""
    if rule == MEAN or len(scores) == 1:
        return sum(s[SELECTION_METRIC] for s in scores.values()) / len(scores)
    return scores[rule][SELECTION_METRIC]


def selection_text(names: Sequence[str], rule: str) -> str:
    """The rule in words, as the manifest records it."""
    if rule == MEAN and len(names) > 1:
        return f"mean of the dev {SELECTION_METRIC} of {', '.join(names)} (each dataset counts once)"
    return f"dev {SELECTION_METRIC} of {names[0] if rule == MEAN else rule}"


def log_row(scores: dict[str, dict[str, float]], rule: str) -> dict[str, float]:
    """The dev scores of an epoch as metrics.jsonl keys: ``dev_<metric>`` for one dataset;
    ``dev_<name>_<metric>`` for each of several, and ``selection``, the score the best epoch is chosen by."""
    if len(scores) == 1:
        return {f"dev_{k}": v for k, v in next(iter(scores.values())).items()}
    return {**{f"dev_{name}_{k}": v for name, s in scores.items() for k, v in s.items()},
            "selection": selection_score(scores, rule)}


def combined_metrics(entries: dict[str, dict], scores: dict[str, dict[str, float]], rule: str) -> dict:
    """The manifest's ``metrics`` from each dataset's entry (``manifest_metrics`` plus its file):
    the entry itself for one dataset (as ever); for several, every entry under ``datasets`` and the
    selection rule and score."""
    if len(entries) == 1:
        return {k: v for k, v in next(iter(entries.values())).items() if k != "data"}
    first = next(iter(entries.values()))
    return {"split": first["split"], "beam_size": first["beam_size"], "selection": selection_text(list(entries), rule),
            "selection_score": round(selection_score(scores, rule), 4), "datasets": entries}
