"""Photos and a short clip that ship with the package: the README's quick starts and the web
UI's examples use them, so both work on a fresh install.

    python -m captioning.examples          # prints this folder: caption-images "$(python -m captioning.examples)"

All four photos are copyright-free (as scikit-image ships them): ``cat`` (Chelsea, CC0, Stefan
van der Walt), ``coffee`` (CC0, Rachel Michetti), ``astronaut`` (Eileen Collins, NASA, public
domain), ``rocket`` (DSCOVR launch, SpaceX, public domain); ``clip.mp4`` shows them in turn,
3 s each with a slow pan and zoom (256x192, 8 fps).
"""
from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
PHOTOS = ("cat", "coffee", "astronaut", "rocket")
CLIP = FOLDER / "clip.mp4"


def photo(name: str) -> Path:
    """The path of one shipped photo, e.g. ``photo("cat")``."""
    if name not in PHOTOS:
        raise ValueError(f"no example photo {name!r} (there are: {', '.join(PHOTOS)})")
    return FOLDER / f"{name}.jpg"


def photos() -> list[Path]:
    """Paths of all shipped photos."""
    return [photo(name) for name in PHOTOS]
