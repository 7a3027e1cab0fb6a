"""Exports for editors: a CMX 3600 EDL and an OpenTimelineIO timeline of the shots.

- **EDL** (``S.edl``): one CMX 3600 event per shot, a cut (``C``) on the video track, source
  in/out = record in/out = the shot's timecodes (``FCM: DROP FRAME`` with drop-frame timecodes
  at 29.97 / 59.94 fps); comment lines name the clip and give the shot's scene, how it begins
  (a fade or dissolve is still written as a cut at the boundary frame) and its caption ("(blank)"
  for a blank shot: black, grey or one flat colour).
- **OpenTimelineIO** (``S.otio``, written by the ``opentimelineio`` library's ``otio_json``
  adapter): a timeline with one video track holding a clip per shot (source range in frames
  at the timecode rate, an ExternalReference to the video's absolute ``file://`` URL), a marker
  per scene, and tag-video's results (caption, tags, scene, transition) in each clip's metadata.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from .results import VideoTags
from .timecode import frame_number

REEL = "AX"  # the EDL reel name of the one source (CMX: up to 8 characters; AX = auxiliary source)
EDL_TEXT = 200  # characters of a caption kept in an EDL comment


def _rate(tags: VideoTags) -> Fraction:
    return Fraction(tags.video.timecode_rate)


def _edl_safe(text: str) -> str:
    return "".join(c if c.isprintable() and c.isascii() else "?" for c in " ".join(text.split()))


def to_edl(tags: VideoTags, *, title: str) -> str:
    """CMX 3600: one cut event per shot (see the module docstring)."""
    clip = _edl_safe(Path(tags.video.path).name)
    lines = [f"TITLE: {_edl_safe(title)[:70]}", f"FCM: {'DROP FRAME' if tags.video.drop_frame else 'NON-DROP FRAME'}", ""]
    for n, shot in enumerate(tags.shots, 1):
        tc_in, tc_out = shot.start_timecode, shot.end_timecode
        lines.append(f"{n:03d}  {REEL:<8} V     C        {tc_in} {tc_out} {tc_in} {tc_out}")
        lines.append(f"* FROM CLIP NAME: {clip}")
        how = f", begins with a {shot.transition}" if shot.transition in ("fade", "dissolve") else ""
        lines.append(f"* COMMENT: shot {shot.index + 1}, scene {shot.scene + 1}{how}: "
                     f"{_edl_safe(shot.caption or '(blank)')[:EDL_TEXT]}")
        lines.append("")
    return "\n".join(lines)


def to_otio(tags: VideoTags, *, title: str) -> str:
    """An OpenTimelineIO timeline (``otio_json``) of the shots, with the scenes as markers."""
    import opentimelineio as otio  # on first use: only the otio format needs it

    rate = _rate(tags)
    fps = float(rate)
    span = lambda start, end: otio.opentime.TimeRange(  # noqa: E731
        otio.opentime.RationalTime(frame_number(start, rate), fps),
        otio.opentime.RationalTime(max(frame_number(end, rate) - frame_number(start, rate), 1), fps))
    timeline = otio.schema.Timeline(name=title, global_start_time=otio.opentime.RationalTime(0, fps))
    timeline.metadata["tag-video"] = {"source": str(Path(tags.video.path).resolve()), "model": dict(tags.model),
                                      "timecode_rate": tags.video.timecode_rate}
    track = otio.schema.Track(name="Video 1", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(track)
    url = Path(tags.video.path).resolve().as_uri()
    for shot in tags.shots:
        reference = otio.schema.ExternalReference(target_url=url, available_range=span(0.0, tags.video.duration))
        clip = otio.schema.Clip(name=f"shot {shot.index + 1}", media_reference=reference,
                                source_range=span(shot.start, shot.end))
        clip.metadata["tag-video"] = {
            "shot": shot.index, "scene": shot.scene, "transition": shot.transition, "caption": shot.caption,
            "blank": shot.blank,
            "start_frame": shot.start_frame, "end_frame": shot.end_frame, "keyframe_index": shot.keyframe_index,
            "tags": [t.label for t in shot.tags]}
        track.append(clip)
    for scene in tags.scenes:
        marker = otio.schema.Marker(name=scene.caption or f"scene {scene.index + 1}",
                                    marked_range=span(scene.start, scene.end))
        marker.metadata["tag-video"] = {"scene": scene.index, "first_shot": scene.first_shot,
                                        "shot_count": scene.shot_count}
        track.markers.append(marker)
    return otio.adapters.write_to_string(timeline, "otio_json") + "\n"
