"""SMPTE-style timecodes (HH:MM:SS:FF) of presentation times, as editors count frames.

A time becomes the frame number at the video's nominal rate (``round(seconds * rate)``, exact
for constant frame rate, the nearest slot of that grid for variable frame rate), written in
hours, minutes, seconds and frames of the rate's integer base (24 for 23.976, 30 for 29.97).
29.97 and 59.94 fps use drop-frame timecode (``HH:MM:SS;FF``: frame numbers 0-1, resp. 0-3, are
skipped at every minute but each tenth, so the timecode keeps up with the clock); the other
rates are non-drop (23.976 counts 24 frames per timecode second and runs 0.1% slow, as editors
expect). Rates a container reports slightly off a standard one (29.97003, a phone's variable
rate averaging 29.96) are snapped to it first (:func:`nominal_rate`).
"""
from __future__ import annotations

from fractions import Fraction

STANDARD_RATES = tuple(Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "48", "50",
                                             "60000/1001", "60", "100", "120000/1001", "120"))
SNAP = 0.005  # a rate within this relative distance of a standard one is taken as it
DROP_FRAME = {Fraction(30000, 1001): 2, Fraction(60000, 1001): 4}  # frame numbers dropped per minute


def nominal_rate(rate: Fraction | float) -> Fraction:
    """The standard rate nearest ``rate`` if within SNAP of it, else ``rate`` itself (at least 1 fps)."""
    rate = Fraction(rate).limit_denominator(1001) if rate else Fraction(25)
    nearest = min(STANDARD_RATES, key=lambda standard: abs(rate - standard))
    return nearest if abs(rate - nearest) <= SNAP * nearest else max(rate, Fraction(1))


def is_drop_frame(rate: Fraction) -> bool:
    return rate in DROP_FRAME


def frame_number(seconds: float, rate: Fraction) -> int:
    """The frame slot of ``seconds`` at ``rate`` (0 for negative times)."""
    return max(int(round(seconds * rate)), 0)


def timecode(seconds: float, rate: Fraction) -> str:
    """``HH:MM:SS:FF`` (drop-frame ``HH:MM:SS;FF``) of a time at the nominal ``rate``; hours wrap at 24."""
    return frames_to_timecode(frame_number(seconds, rate), rate)


def frames_to_timecode(n: int, rate: Fraction) -> str:
    base = max(int(round(rate)), 1)
    drop = DROP_FRAME.get(rate, 0)
    if drop:  # SMPTE 12M: number the frames as if none were dropped
        per_ten_minutes, per_minute = round(rate * 600), base * 60 - drop
        tens, rest = divmod(n, per_ten_minutes)
        n += drop * 9 * tens + (drop * ((rest - drop) // per_minute) if rest >= drop else 0)
    frames, seconds = n % base, n // base
    text = f"{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{text}{';' if drop else ':'}{frames:02d}"
