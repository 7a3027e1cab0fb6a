"""Camera-size copies of dataset photos (not a test): the Flickr8k and COCO photos in ../shared are
224-288 pixels, a phone's are 9-12 megapixels, and reading those dominates captioning them.

    python benchmarks/camera_photos.py /tmp/big -n 60                      # 60 Flickr8k dev photos, 4032x3024
    python benchmarks/camera_photos.py /tmp/coco_big --data ../shared/data/coco_subset/captions.csv \\
        --size 3456x2592 --noise 6 --quality 92                             # COCO dev, with its captions.csv

Each photo is upscaled (bicubic) to ``--size``, given uniform pixel noise of +-``--noise`` (a camera's
grain: JPEG then costs what a real photo costs to decode) and saved as a JPEG. With ``--data`` the
folder is a dataset: the split's photos in ``images/`` beside a copy of the captions and split files,
for ``caption-eval --data OUT/captions.csv``. Then, e.g.:

    caption-images /tmp/big --out /tmp/big.jsonl                            # throughput on camera photos
    caption-eval --data /tmp/coco_big/captions.csv --split dev             # scores on camera-size photos
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FLICKR_DEV, FLICKR_IMAGES  # noqa: E402


def camera_copy(src: Path, dst: Path, size: tuple[int, int], noise: int, quality: int,
                rng: np.random.Generator) -> None:
    image = Image.open(src).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    grain = rng.integers(-noise, noise + 1, (size[1], size[0], 3), dtype=np.int16)  # (H, W, 3)
    pixels = np.clip(np.asarray(image).astype(np.int16) + grain, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(dst, quality=quality)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder to write (made; photos already there are kept, so only a fresh "
                   "folder is reproducible)")
    p.add_argument("--data", type=Path, help="a dataset's captions.csv: copy its --split as a dataset "
                   "(default: Flickr8k dev photos as a plain folder)")
    p.add_argument("--split", default="dev", help="split file of --data (default: dev)")
    p.add_argument("-n", "--images", type=int, default=0, help="photos (0: the whole split; default: 0)")
    p.add_argument("--size", default="4032x3024", help="width x height (default: 4032x3024, 12 MP)")
    p.add_argument("--noise", type=int, default=12, help="pixel noise amplitude (default: 12)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (default: 90)")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.data:
        names = (args.data.parent / f"{args.split}.txt").read_text().split()
        folder, images = args.out / "images", args.data.parent / "images"
        args.out.mkdir(parents=True, exist_ok=True)
        for f in (args.data, args.data.parent / f"{args.split}.txt"):
            shutil.copy(f, args.out / f.name)
    else:
        names, folder, images = FLICKR_DEV.read_text().split(), args.out, FLICKR_IMAGES
    names = names[:args.images] if args.images else names
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        if not (folder / name).exists():
            camera_copy(images / name, folder / name, size, args.noise, args.quality, rng)
    print(f"{len(names)} photos of {size[0]}x{size[1]} in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
