"""``caption-calibrate``: fit a bundle's caption confidence and its memory of the training photos
(captioning.confidence).

    caption-calibrate [--weights W] [--data CSV ...] [--attach] [--plot docs/confidence/NAME.png] [--out report.json]

1. Embeds every *train* photo of the datasets (``--data``, default Flickr8k and the COCO subset in
   ../shared/data): the semantic vectors, projected on their top ``--components`` principal
   directions, and the content words of each photo's reference captions (with their idf) become
   ``familiar.safetensors``.
2. Captions every *dev* photo with the bundle's recorded decoding and scores each caption's CIDEr-D
   against its references (document frequencies from its own dataset's dev references, as the
   evaluation does); a caption under ``--good-cider`` (0.2) is a bad one.
3. Splits each dev set in two halves (``--seed``), fits a logistic regression of "good" on the
   features (captioning.confidence.FEATURES, standardised) on one half, and reports on the other:
   AUROC of confidence for telling bad captions from the rest, pooled and per dataset, beside the
   beam's score alone; a reliability plot (``--plot``).
4. With ``--attach``, writes ``confidence.json`` and ``familiar.safetensors`` into the bundle and
   lists them in its manifest (hash-checked on load like every other file).

Embeddings and captions are cached in ``--cache`` (runs/confidence/<bundle>.npz): a re-fit takes seconds.
``--out`` writes the report (the held-out AUROCs, the weights, ten example captions) as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..confidence import FEATURES, STOP_WORDS, Calibration, Familiarity, features, save_calibration
from ..vocab import tokenize

PROJECT = Path(__file__).resolve().parents[2]

DATA = PROJECT.parent / "shared" / "data"
DEFAULT_DATA = [str(DATA / "flickr8k" / "captions.csv"), str(DATA / "coco_subset" / "captions.csv")]
BATCH = 32


def _encode_all(cap, paths: list[str], *, decode: bool):
    """Semantic vectors (N, D), and with ``decode`` ImageNet probabilities, scores and tokens."""
    from tqdm import tqdm

    pooled, probs, scores, tokens = [], [], [], []
    with ThreadPoolExecutor(2) as pool:
        for i in tqdm(range(0, len(paths), BATCH), desc="decode" if decode else "embed", unit="batch"):
            arrays = list(pool.map(lambda p: cap.preprocessing.to_array(cap.preprocessing.load(p)), paths[i:i + BATCH]))
            enc = cap.encode(arrays)
            pooled.append(enc.pooled.float().numpy())
            if decode:
                probs.append(enc.logits.float().softmax(-1).numpy())
                for r in cap.decode(enc):
                    scores.append(r.score)
                    tokens.append(r.tokens)
    if not decode:
        return np.concatenate(pooled)
    return np.concatenate(pooled), np.concatenate(probs), np.array(scores), tokens


def _collect(cap, data: list[str], cache: Path) -> dict:
    """Per dataset: train vectors; dev vectors, probabilities, captions and their CIDEr-D (cached)."""
    from captioning.training.data import read_dataset
    from captioning.training.metrics import CiderD

    if cache.exists():
        return _load(cache)
    start = time.perf_counter()
    arrays, meta = {}, {"datasets": []}
    for csv in data:
        name = Path(csv).parent.name
        train_items = read_dataset(csv, split="train")
        train = [str(it.image) for it in train_items]
        meta[f"{name}/train_refs"] = [it.captions for it in train_items]
        dev = read_dataset(csv, split="dev")
        arrays[f"{name}/train"] = _encode_all(cap, train, decode=False)
        pooled, probs, scores, tokens = _encode_all(cap, [str(it.image) for it in dev], decode=True)
        refs = [it.captions for it in dev]
        cider = CiderD(refs).score([list(t) for t in tokens], refs)
        arrays |= {f"{name}/pooled": pooled, f"{name}/probs": probs.astype(np.float32), f"{name}/scores": scores,
                   f"{name}/cider": np.asarray(cider)}
        meta["datasets"].append(name)
        meta[f"{name}/tokens"] = tokens
        meta[f"{name}/images"] = [str(it.image) for it in dev]
    meta["minutes"] = round((time.perf_counter() - start) / 60, 1)  # embedding, captioning, scoring
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    cache.with_suffix(".json").write_text(json.dumps(meta))
    return meta | {"arrays": arrays}


def _reference_words(refs: list[list[str]]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray]:
    """The content words of each photo's references: (words, idf, indptr, word_ids), CSR-style."""
    sets = [sorted({w for r in captions for w in tokenize(r)} - STOP_WORDS) for captions in refs]
    words = tuple(sorted({w for s in sets for w in s}))
    index = {w: i for i, w in enumerate(words)}
    word_ids = np.array([index[w] for s in sets for w in s], np.int64)
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in sets])]).astype(np.int64)
    df = np.bincount(word_ids, minlength=len(words))
    return words, np.log((1.0 + len(sets)) / (1.0 + df)), indptr, word_ids


def _pca(unit: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    center = unit.mean(axis=0)
    _, _, vt = np.linalg.svd(unit - center, full_matrices=False)
    return center, vt[:components].T  # (D,), (D, P)


def build_familiarity(got: dict, components: int, k: int) -> Familiarity:
    """The memory of the training photos from :func:`_collect`'s result: their semantic vectors on the top
    ``components`` principal directions (stored as float16), their references' content words, ``k`` neighbours."""
    names = got["datasets"]
    train = np.concatenate([got["arrays"][f"{n}/train"] for n in names])
    unit = train / np.linalg.norm(train, axis=1, keepdims=True)
    center, directions = _pca(unit, components)
    proj = (unit - center) @ directions
    words, idf, indptr, word_ids = _reference_words([c for n in names for c in got[f"{n}/train_refs"]])
    return Familiarity(center.astype(np.float32), directions.astype(np.float32),
                       proj.astype(np.float16).astype(np.float32), k, words, idf, indptr, word_ids)


@dataclass(frozen=True)
class DevCache:
    """What ``caption-calibrate --cache`` stored, ready for an experiment: the shipped features of every dev caption."""
    meta: dict  # datasets, and per dataset: train_refs, tokens (the dev captions), images
    arrays: dict[str, np.ndarray]  # per dataset: train, pooled, probs, scores, cider
    names: list[str]  # the datasets, in the cache's order
    familiar: Familiarity  # the training photos' memory, as build_familiarity makes it
    shipped: np.ndarray  # (N, len(FEATURES)) every dev caption's features, datasets in order
    bad: np.ndarray  # (N,) CIDEr-D under good_cider
    dataset: np.ndarray  # (N,) each caption's dataset name


def _load(cache: Path) -> dict:
    """:func:`_collect`'s result from its cache file (.npz with its .json)."""
    return json.loads(cache.with_suffix(".json").read_text()) | {"arrays": dict(np.load(cache))}


def dev_cache(got: dict, *, components: int = 128, k: int = 10, good_cider: float = 0.2) -> DevCache:
    """The shipped features of every dev caption in :func:`_collect`'s result (caption-calibrate's defaults)."""
    meta = {key: value for key, value in got.items() if key != "arrays"}
    arrays, names = got["arrays"], got["datasets"]
    familiar = build_familiarity(got, components, k)
    shipped = np.concatenate([features(arrays[f"{n}/scores"], meta[f"{n}/tokens"], arrays[f"{n}/pooled"],
                                       arrays[f"{n}/probs"], familiar) for n in names])
    bad = np.concatenate([arrays[f"{n}/cider"] < good_cider for n in names])
    dataset = np.array([n for n in names for _ in range(len(arrays[f"{n}/cider"]))])
    return DevCache(meta, arrays, names, familiar, shipped, bad, dataset)


def read_dev_cache(cache: str | Path, **options: float) -> DevCache:
    """:func:`dev_cache` of a ``caption-calibrate --cache`` file."""
    return dev_cache(_load(Path(cache)), **options)


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, steps: int = 50) -> tuple[np.ndarray, float]:
    """Logistic regression by Newton's method (x standardised, y in {0, 1}) -> weights, bias."""
    xb = np.column_stack([x, np.ones(len(x))])
    w = np.zeros(xb.shape[1])
    reg = l2 * np.eye(len(w))
    reg[-1, -1] = 0.0  # the bias is not shrunk
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-xb @ w))
        grad = xb.T @ (p - y) + reg @ w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def dev_halves(dataset: np.ndarray, names: Sequence[str], seed: int) -> np.ndarray:
    """(N,) True on the fitting half of each dataset's dev photos (``dataset`` names each photo's), drawn
    dataset by dataset with one generator seeded ``seed``: the half ``caption-calibrate --seed`` fits on."""
    rng = np.random.default_rng(seed)
    fit = np.zeros(len(dataset), bool)
    for n in names:
        idx = np.flatnonzero(dataset == n)
        fit[idx[rng.permutation(len(idx))[: len(idx) // 2]]] = True
    return fit


def held_out_auroc(x: np.ndarray, bad: np.ndarray, dataset: np.ndarray, names: Sequence[str],
                   seeds: Sequence[int]) -> np.ndarray:
    """A logistic model of features ``x`` (N, F) fitted on half of each dev split and scored on the other:
    AUROC for telling the ``bad`` captions, pooled and per dataset, the mean over the halves of ``seeds``."""
    results = []
    for seed in seeds:
        fit = dev_halves(dataset, names, seed)
        mean, scale = x[fit].mean(0), x[fit].std(0) + 1e-12
        w, b = fit_logistic((x[fit] - mean) / scale, (~bad[fit]).astype(float))
        conf = ((x - mean) / scale) @ w + b
        held = ~fit
        results.append([auroc(-conf[m], bad[m]) for m in [held] + [held & (dataset == n) for n in names]])
    return np.mean(results, axis=0)


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _plot(path: Path, confidence: np.ndarray, good: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(confidence, bins) - 1, 0, 9)
    mids, rates, counts = [], [], []
    for b in range(10):
        m = which == b
        if m.sum():
            mids.append(confidence[m].mean())
            rates.append(good[m].mean())
            counts.append(int(m.sum()))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect calibration")
    ax.plot(mids, rates, "o-", label="held-out dev photos")
    for x, y, n in zip(mids, rates, counts):
        ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set(xlabel="confidence", ylabel="fraction of captions with CIDEr-D >= 0.2", xlim=(0, 1), ylim=(0, 1),
           title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="caption-calibrate", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--weights", default=None, help="bundle name or folder (default: weights/DEFAULT)")
    p.add_argument("--data", action="append", default=None, metavar="CSV",
                   help="a dataset's captions.csv with train.txt/dev.txt beside it; repeatable "
                        "(default: Flickr8k and the COCO subset in ../shared/data)")
    p.add_argument("--components", type=int, default=128, help="principal directions kept (default: 128)")
    p.add_argument("--k", type=int, default=10, help="nearest training photos looked at (default: 10)")
    p.add_argument("--good-cider", type=float, default=0.2, help="CIDEr-D of a good caption (default: 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the dev halves (default: 0)")
    p.add_argument("--cache", default=None, help="cache file (default: runs/confidence/<bundle>.npz)")
    p.add_argument("--plot", default=None, help="reliability plot PNG (default: docs/confidence/<bundle>.png)")
    p.add_argument("--attach", action="store_true", help="write the calibration into the bundle (default: off)")
    p.add_argument("--out", default=None, metavar="JSON", help="write the report here (default: none)")
    p.add_argument("--device", default="cpu", help="device (default: cpu)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    from captioning import Captioner
    from captioning.bundle import attach_file, record_entry

    cap = Captioner.load(args.weights, device=args.device)
    cache = Path(args.cache or PROJECT / "runs" / "confidence" / f"{cap.name}-{cap.version}.npz")
    got = _collect(cap, args.data or DEFAULT_DATA, cache)
    arrays, names = got["arrays"], got["datasets"]

    dev = dev_cache(got, components=args.components, k=args.k, good_cider=args.good_cider)
    familiar, x, good, dataset = dev.familiar, dev.shipped, ~dev.bad, dev.dataset
    rows = [(n, image, " ".join(t)) for n in names for image, t in zip(got[f"{n}/images"], got[f"{n}/tokens"])]
    fit_half = dev_halves(dataset, names, args.seed)
    mean, scale = x[fit_half].mean(axis=0), x[fit_half].std(axis=0) + 1e-12
    weights, bias = fit_logistic((x[fit_half] - mean) / scale, good[fit_half].astype(float))
    familiarity = x[:, FEATURES.index("familiarity")]
    unfamiliar_below = float(np.quantile(familiarity[fit_half], 0.01))
    calibration = Calibration(mean, scale, weights, bias, unfamiliar_below, args.good_cider, familiar, {})
    conf = calibration.confidence(x)

    held = ~fit_half
    metrics: dict = {"held_out": {}, "fitted_on": "half of each dev split (seed %d)" % args.seed,
                     "bad": f"CIDEr-D < {args.good_cider}"}
    print(f"{cap.name} {cap.version}: {len(familiar.train)} training photos, {len(x)} dev photos ({int(held.sum())} held out)")
    print(f"{'held-out dev':>16} {'photos':>7} {'bad':>6} {'AUROC confidence':>17} {'AUROC score':>12}")
    for label, m in [("pooled", held)] + [(n, held & (dataset == n)) for n in names]:
        bad = ~good[m]
        row = {"photos": int(m.sum()), "bad": int(bad.sum()), "auroc": round(auroc(-conf[m], bad), 4),
               "auroc_score_alone": round(auroc(-x[m, 0], bad), 4)}
        metrics["held_out"][label] = row
        print(f"{label:>16} {row['photos']:>7} {row['bad']:>6} {row['auroc']:>17.3f} {row['auroc_score_alone']:>12.3f}")
    for f, w in zip(FEATURES, weights):
        print(f"  weight {f:>12}: {w:+.3f}")
    print(f"unfamiliar below familiarity {unfamiliar_below:.3f} (1% of the fitting half); held-out dev photos "
          f"flagged: {int(calibration.unfamiliar(familiarity[held]).sum())} of {int(held.sum())}")
    calibration = Calibration(mean, scale, weights, bias, unfamiliar_below, args.good_cider, familiar, metrics)

    plot = Path(args.plot or PROJECT / "docs" / "confidence" / f"{cap.name}.png")
    _plot(plot, conf[held], good[held], f"{cap.name} {cap.version}: held-out dev photos")
    print(f"reliability plot: {plot}")
    examples = []
    for i in np.flatnonzero(held)[::65][:10]:  # ten held-out photos, both datasets
        name, image, caption = rows[i]
        cider = float(arrays[f"{name}/cider"][i - dataset.tolist().index(name)])
        examples.append({"photo": f"{name}/{Path(image).name}", "caption": caption,
                         "confidence": round(float(conf[i]), 3), "cider_d": round(cider, 3)})
        print(f"  {conf[i]:.2f} {'sure  ' if conf[i] >= 0.5 else 'unsure'} CIDEr-D {cider:.2f}  "
              f"{name}/{Path(image).name}: {caption}")
    if args.out:
        report = {"bundle": f"{cap.name} {cap.version}", "features": list(FEATURES), "weights": weights.tolist(),
                  "unfamiliar_below": unfamiliar_below, **metrics, "examples": examples}
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    if args.attach:
        with tempfile.TemporaryDirectory() as tmp:
            for f in save_calibration(tmp, calibration):
                attach_file(cap.bundle.path, f)
        record_entry(cap.bundle.path, "confidence", {
            "features": list(FEATURES), "weights": [round(float(w), 4) for w in weights],
            "unfamiliar_below": round(unfamiliar_below, 4), **metrics, "minutes": got.get("minutes"),
            "command": "caption-calibrate " + " ".join(sys.argv[1:] if argv is None else argv)})
        print(f"attached to {cap.bundle.path}, its manifest's confidence entry recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
