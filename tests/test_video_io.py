"""pipelines.video.io: every frame decoded with PyAV, true timestamps on the player's clock,
display aspect and rotation, and every kind of broken input."""
from __future__ import annotations

import os
import threading
from fractions import Fraction

import cv2
import numpy as np
import pytest

from pipelines.video.io import MAX_FAILURES, Sampler, VideoError, VideoReader, read_frames
from test_video_clips import SHOTS, make_clip, photo_rgb, red_clip, still_shot, truncate, write_av

DURATION = sum(s for _, s in SHOTS)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("io_clips")
    return {"avi": make_clip(d / "clip.avi", fps=12.0, fourcc="MJPG"),
            "mp4": make_clip(d / "clip.mp4", fps=25.0, fourcc="mp4v")}


def _sample(path, **kw):
    with VideoReader(path) as reader:
        frames = [(f.index, f.time, f.image.shape) for f in reader.sample(**kw)]
    return frames, reader


def _all(path):
    with VideoReader(path) as reader:
        return [(f.index, f.time) for f in reader.frames()], reader


@pytest.mark.parametrize("kind,source_fps", [("avi", 12.0), ("mp4", 25.0)])
@pytest.mark.parametrize("rate", [0.5, 1.0, 2.0])
def test_rate_sampling_gives_true_timestamps(clips, kind, source_fps, rate):
    frames, reader = _sample(clips[kind], fps=rate)
    times = np.array([t for _, t, _ in frames])
    indices = np.array([i for i, _, _ in frames])
    # the first frame at or after every multiple of 1/rate, and its real time
    expected = [int(np.ceil(k / rate * source_fps - 1e-6)) for k in range(int(DURATION * rate))]
    assert indices.tolist() == expected
    np.testing.assert_allclose(times, indices / source_fps, atol=1e-6)
    assert all(shape == (240, 320, 3) for _, _, shape in frames)
    assert reader.errors == []
    assert reader.end_time == pytest.approx(DURATION)
    assert reader.info.fps == pytest.approx(source_fps) and (reader.info.width, reader.info.height) == (320, 240)
    assert reader.frames_read == DURATION * source_fps


@pytest.mark.parametrize("kind,source_fps", [("avi", 12.0), ("mp4", 25.0)])
def test_every_frame_and_every_n_frames(clips, kind, source_fps):
    every, reader = _all(clips[kind])
    n_total = int(DURATION * source_fps)
    assert [i for i, _ in every] == list(range(n_total))
    np.testing.assert_allclose([t for _, t in every], np.arange(n_total) / source_fps, atol=1e-6)
    frames, _ = _sample(clips[kind], every_n=7)
    assert [i for i, _, _ in frames] == list(range(0, n_total, 7))


def test_h264_with_b_frames_keeps_presentation_order_and_times(tmp_path):
    clip = write_av(tmp_path / "h264.mp4", still_shot("chelsea", 30) + still_shot("coffee", 30), codec="libx264",
                    options={"bf": "3", "g": "12"})
    every, reader = _all(clip)
    assert [i for i, _ in every] == list(range(60)) and reader.errors == []
    np.testing.assert_allclose([t for _, t in every], np.arange(60) / 25, atol=1e-6)  # the edit list applied


def test_variable_frame_rate_times_are_the_timestamps(tmp_path):
    times = [0.0, 0.04, 0.08, 0.5, 0.54, 1.5, 1.9, 1.95, 2.0]  # gaps: dropped frames, a 1 s hold
    every, reader = _all(write_av(tmp_path / "vfr.mkv", still_shot("chelsea", len(times)), times=times))
    assert [t for _, t in every] == pytest.approx(times) and [i for i, _ in every] == list(range(len(times)))
    assert reader.end_time > 2.0
    with VideoReader(tmp_path / "vfr.mkv") as reader:
        assert [f.time for f in reader.sample(fps=2.0)] == pytest.approx([0.0, 0.5, 1.5, 2.0])


def test_time_zero_is_the_start_of_the_file(tmp_path):
    # video from 1.075 s, audio from 0: the player's clock shows the first frame at 1.075 s
    late = write_av(tmp_path / "late.mp4", still_shot("chelsea", 10), start=1.075, audio=True)
    every, reader = _all(late)
    assert every[0] == (0, pytest.approx(1.075)) and every[-1][1] == pytest.approx(1.075 + 9 / 25)
    assert reader.info.start == pytest.approx(1.075)
    # every stream starting late (a cut out of a broadcast): the first frame is at 0
    shifted = write_av(tmp_path / "shifted.mkv", still_shot("chelsea", 10), start=600.0)
    every, reader = _all(shifted)
    assert every[0][1] == pytest.approx(0.0) and every[-1][1] == pytest.approx(9 / 25)


def test_display_aspect_ratio_is_applied_to_rgb_frames(tmp_path):
    img = photo_rgb("astronaut")
    frames = [cv2.resize(img, (704, 576), interpolation=cv2.INTER_AREA)] * 5  # a 1:1 photo squeezed into PAL
    clip = write_av(tmp_path / "pal.mp4", frames, sar=Fraction(16, 11))
    with VideoReader(clip) as reader:
        assert reader.info.sample_aspect == Fraction(16, 11) and reader.info.display_size == (1024, 576)
        frame = next(reader.frames())
        shown, small = frame.rgb(), frame.luma()
    assert shown.shape == (576, 1024, 3) and small.shape == (144, 176)
    # the stretched frame is the photo at 16:9: compare with the photo resized there directly
    expected = cv2.resize(img, (1024, 576), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(shown.astype(int) - expected).mean() < 8


@pytest.mark.parametrize("rotation,turns", [(90, 1), (-90, 3), (180, 2), (270, 3)])
def test_rotation_metadata_is_applied(tmp_path, rotation, turns):
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :16] = 255  # a white band on the left, a red one on top
    img[:8] = (255, 0, 0)
    clip = write_av(tmp_path / "rot.mp4", [img] * 3, rotation=rotation)
    with VideoReader(clip) as reader:
        frames = reader.frames()
        shown = next(frames).rgb()
        sized = next(frames).rgb((20, 30) if turns % 2 else (30, 20))
        assert reader.info.rotation == turns * 90  # read from the first frame's display matrix
        assert reader.info.display_size == ((48, 64) if turns % 2 else (64, 48))
    expected = np.rot90(img, turns)  # counter-clockwise, as the display matrix says (and players show it)
    assert shown.shape == expected.shape and np.abs(shown.astype(int) - expected).mean() < 12
    assert sized.shape == (30, 20, 3) if turns % 2 else (20, 30, 3)


def test_read_frames_seeks_to_the_requested_frames(clips, tmp_path):
    clip = write_av(tmp_path / "long.mp4", still_shot("chelsea", 125) + still_shot("coffee", 125),
                    options={"g": "25"})
    wanted = [(0, 0.0), (60, 2.4), (200, 8.0), (249, 9.96), (5000, 200.0)]  # the last is past the end
    images = dict(read_frames(clip, wanted))
    assert sorted(images) == [0, 60, 200, 249]
    with VideoReader(clip) as reader:
        every = {f.index: f.rgb() for f in reader.frames() if f.index in images}
    for index in images:
        np.testing.assert_array_equal(images[index], every[index])


def test_frames_are_rgb(tmp_path):
    clip = red_clip(tmp_path / "red.avi")
    with VideoReader(clip) as reader:
        sampled = [f.image for f in reader.sample(every_n=5)]
    for image in [*sampled, *dict(read_frames(clip, [(0, 0.0), (5, 0.5)])).values()]:
        r, g, b = image.reshape(-1, 3).mean(0)
        assert image.dtype == np.uint8 and r > 200 and g < 40 and b < 40


def test_sampler_takes_the_first_frame_at_each_multiple():
    sampler = Sampler(fps=2.0, period=0.1)
    times = [0.0, 0.1, 0.2, 0.3, 0.4, 0.49, 0.6, 1.2, 1.3]
    assert [t for t in times if sampler.wants(0, t)] == [0.0, 0.49, 1.2]  # 0.49: within a quarter frame of 0.5
    with pytest.raises(ValueError):
        Sampler(fps=0)
    with pytest.raises(ValueError):
        Sampler(every_n=0)


# -- broken files on disk ------------------------------------------------------------
def test_truncated_avi_gives_partial_frames_and_says_so(clips, tmp_path):
    cut = truncate(clips["avi"], tmp_path / "cut.avi")
    frames, reader = _sample(cut, fps=1.0)
    assert 3 <= len(frames) < DURATION
    assert reader.end_time < DURATION - 2
    assert any("truncated" in e for e in reader.errors)


def test_corrupt_bytes_mid_stream_are_survived(clips, tmp_path):
    data = bytearray(clips["mp4"].read_bytes())
    middle = len(data) // 2
    data[middle:middle + 20000] = np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    (tmp_path / "corrupt.mp4").write_bytes(bytes(data))
    every, reader = _all(tmp_path / "corrupt.mp4")
    times = [t for _, t in every]
    assert times[-1] >= DURATION - 2 and times == sorted(set(times))
    np.testing.assert_allclose(np.array(times) * 25, np.round(np.array(times) * 25), atol=1e-6)  # true frame times
    assert reader.errors  # the damage is reported: lost or concealed frames


def test_truncated_mp4_is_a_clear_error(clips, tmp_path):
    cut = truncate(clips["mp4"], tmp_path / "cut.mp4")  # the MP4 index (moov) is at the end: gone
    with pytest.raises(VideoError, match=r"cut\.mp4: cannot open as a video"):
        _sample(cut, fps=1.0)


@pytest.mark.parametrize("name,content,message", [
    ("missing.mp4", None, "file not found"),
    ("zero.mp4", b"", r"empty file \(0 bytes\)"),
    ("text.mp4", b"this is not a video at all\n" * 20, "cannot open as a video"),
])
def test_bad_files_are_clear_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=f"{name}: {message}") as e:
        _sample(path, fps=1.0)
    assert "\n" not in str(e.value)


def test_audio_only_file_is_a_clear_error(tmp_path):
    import av

    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        for k in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, k * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
    with pytest.raises(VideoError, match=r"sound\.m4a: cannot open as a video \(no video stream\)"):
        VideoReader(path)


def test_video_without_frames_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    writer.release()  # a valid AVI header, no frames
    with pytest.raises(VideoError, match="empty.avi: "):
        _sample(path, fps=1.0)


def test_directory_and_fifo_are_refused_without_opening(tmp_path):
    with pytest.raises(VideoError, match="is a directory"):
        VideoReader(tmp_path)
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(VideoError, match="not a regular file"):
        VideoReader(fifo)  # would block forever if opened


# -- a decoder that fails: what real files rarely show on demand ------------------------
def _failing(monkeypatch, *, after: int, forever: bool):
    """Packets after the first ``after`` fail to decode (all of them, or only ten)."""
    import av

    calls, decode = [0], VideoReader._decode

    def flaky(self, packet):
        calls[0] += 1
        if calls[0] > after and (forever or calls[0] <= after + 10):
            raise av.InvalidDataError(1094995529, "Invalid data found when processing input")
        return decode(self, packet)

    monkeypatch.setattr(VideoReader, "_decode", flaky)
    return calls


def test_undecodable_packets_mid_stream_are_skipped_and_reported(clips, monkeypatch):
    _failing(monkeypatch, after=30, forever=False)
    every, reader = _all(clips["avi"])  # MJPEG: one packet per frame
    assert len(every) == DURATION * 12 - 10
    assert [t for _, t in every][29:31] == pytest.approx([29 / 12, 40 / 12])  # the times stay true
    assert reader.errors == [f"10 undecodable packet(s) skipped after {29 / 12:.3f} s"]


def test_a_decoder_that_fails_forever_does_not_hang(clips, monkeypatch):
    calls = _failing(monkeypatch, after=25, forever=True)
    every, reader = _all(clips["avi"])
    assert len(every) == 25 and calls[0] <= 25 + MAX_FAILURES + 1
    assert any("undecodable packets in a row" in e for e in reader.errors)
    assert any("truncated" in e for e in reader.errors)


def test_frames_without_timestamps_are_timed_by_the_frame_period(tmp_path):
    raw = tmp_path / "raw.mjpeg"  # no container: no timestamps, no duration
    writer = cv2.VideoWriter(str(raw), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(30):
        writer.write(np.full((48, 64, 3), (i * 7) % 256, np.uint8))
    writer.release()
    every, reader = _all(raw)
    assert [i for i, _ in every] == list(range(30))
    np.testing.assert_allclose([t for _, t in every], np.arange(30) / 25, atol=1e-6)
    assert reader.info.duration == 0.0 and reader.errors == []


def test_reading_runs_in_a_thread(clips):  # the tagger decodes in a background thread
    result = []
    thread = threading.Thread(target=lambda: result.extend(_sample(clips["avi"], fps=1.0)[0]))
    thread.start()
    thread.join(timeout=60)
    assert [round(t, 6) for _, t, _ in result] == [float(s) for s in range(16)]


def test_abandoned_reading_stops_cleanly(clips):
    with VideoReader(clips["mp4"]) as reader:
        frames = reader.frames()
        next(frames)
        frames.close()
    assert reader.frames_read == 1
