"""pipelines.video.io: sampling, true timestamps, and every kind of broken input."""
from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from pipelines.video.io import (MAX_FAILURES, VideoError, VideoReader, find_videos, read_frames)
from test_video_clips import SHOTS, make_clip, red_clip, truncate

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


@pytest.mark.parametrize("kind,source_fps", [("avi", 12.0), ("mp4", 25.0)])
def test_every_n_frames(clips, kind, source_fps):
    frames, reader = _sample(clips[kind], every_n=7)
    n_total = int(DURATION * source_fps)
    assert [i for i, _, _ in frames] == list(range(0, n_total, 7))
    np.testing.assert_allclose([t for _, t, _ in frames], [i / source_fps for i in range(0, n_total, 7)], atol=1e-6)
    assert reader.frames_read == n_total


@pytest.mark.parametrize("kind", ["avi", "mp4"])
def test_seeking_gives_the_same_frames_as_grabbing(clips, kind):
    grabbed, _ = _sample(clips[kind], fps=1.0, strategy="grab")
    seeked, reader = _sample(clips[kind], fps=1.0, strategy="seek")
    assert [(i, round(t, 6)) for i, t, _ in seeked] == [(i, round(t, 6)) for i, t, _ in grabbed]
    assert reader.errors == []


def test_read_frames_returns_the_requested_frames(clips):
    images = read_frames(clips["avi"], [60, 0, 100, 5000])
    assert sorted(images) == [0, 60, 100]  # 5000 is past the end
    with VideoReader(clips["avi"]) as reader:
        every = {f.index: f.image for f in reader.sample(every_n=20)}
    np.testing.assert_array_equal(images[60], every[60])
    np.testing.assert_array_equal(images[100], every[100])


def test_frames_are_rgb(tmp_path):
    clip = red_clip(tmp_path / "red.avi")
    with VideoReader(clip) as reader:
        sampled = [f.image for f in reader.sample(every_n=5)]
    for image in [*sampled, *read_frames(clip, [0, 5]).values()]:
        r, g, b = image.reshape(-1, 3).mean(0)
        assert image.dtype == np.uint8 and r > 200 and g < 40 and b < 40


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
    frames, reader = _sample(tmp_path / "corrupt.mp4", fps=1.0)
    times = [t for _, t, _ in frames]
    assert times[-1] >= DURATION - 2 and times == sorted(set(times))
    np.testing.assert_allclose(np.array(times) * 25, np.round(np.array(times) * 25), atol=1e-6)  # true frame times
    assert (reader.frames_read < DURATION * 25) == bool(reader.errors)  # lost frames are reported


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
    with pytest.raises(VideoError, match=f"{name}: {message}"):
        _sample(path, fps=1.0)


def test_video_without_frames_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    writer.release()  # a valid AVI header, no frames
    with pytest.raises(VideoError, match="empty.avi: no frames could be decoded"):
        _sample(path, fps=1.0)


def test_directory_is_not_a_video(tmp_path):
    with pytest.raises(VideoError, match="is a directory"):
        VideoReader(tmp_path)


def test_find_videos_scans_folders_case_insensitively(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.MP4", "b.avi", "sub/c.Mkv", "d.webm", "e.mov", "f.m4v", "notes.txt", "g.jpg"):
        (tmp_path / name).write_bytes(b"x")
    found = find_videos([tmp_path, tmp_path / "notes.txt"])
    assert [p.name for p in found] == ["a.MP4", "b.avi", "d.webm", "e.mov", "f.m4v", "c.Mkv", "notes.txt"]


# -- simulated captures: what real files rarely show on demand ------------------------
class FakeCapture:
    """A stream of ``n`` frames; per frame a timestamp (ms) and whether grab/retrieve work."""

    def __init__(self, n: int, *, fps: float = 10.0, count: float | None = None, times_ms=None,
                 bad_grabs=(), bad_retrieves=(), dead_after: int | None = None):
        self.n, self.fps, self.count = n, fps, n if count is None else count
        self.times = list(times_ms) if times_ms is not None else [i * 1000.0 / fps for i in range(n)]
        self.bad_grabs, self.bad_retrieves, self.dead_after = set(bad_grabs), set(bad_retrieves), dead_after
        self.next, self.current, self.grabs, self.released = 0, -1, 0, False

    def isOpened(self):
        return True

    def grab(self):
        self.grabs += 1
        if self.dead_after is not None and self.next >= self.dead_after:
            return False  # a broken decoder: fails forever, never reaches the end
        if self.next >= self.n:
            return False
        i, self.next = self.next, self.next + 1
        if i in self.bad_grabs:
            return False
        self.current = i
        return True

    def retrieve(self):
        if self.current in self.bad_retrieves:
            return False, None
        return True, np.full((4, 6, 3), self.current % 256, np.uint8)

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: self.fps, cv2.CAP_PROP_FRAME_COUNT: self.count,
                cv2.CAP_PROP_FRAME_WIDTH: 6, cv2.CAP_PROP_FRAME_HEIGHT: 4,
                cv2.CAP_PROP_POS_MSEC: self.times[self.current] if self.current >= 0 else 0.0,
                cv2.CAP_PROP_POS_FRAMES: self.current + 1}.get(prop, 0.0)

    def set(self, prop, value):
        return False

    def release(self):
        self.released = True


def _fake_sample(capture, **kw):
    reader = VideoReader("fake.mp4", capture=capture)
    frames = [(f.index, round(f.time, 6), int(f.image[0, 0, 0])) for f in reader.sample(**kw)]
    reader.close()
    return frames, reader


def test_unreadable_frames_mid_stream_are_skipped_and_reported():
    frames, reader = _fake_sample(FakeCapture(40, bad_grabs={12, 13, 14}), fps=1.0)
    # frames 12-14 are lost: the decoded-stream index shifts, the times stay true
    assert [t for _, t, _ in frames] == [0.0, 1.0, 2.0, 3.0]
    assert [px for _, _, px in frames] == [0, 10, 20, 30]
    assert reader.errors == ["3 unreadable frame(s) skipped after 1.100 s"]


def test_a_sampled_frame_that_does_not_decode_is_replaced_by_the_next():
    frames, reader = _fake_sample(FakeCapture(30, bad_retrieves={10}), fps=1.0)
    assert [(t, px) for _, t, px in frames] == [(0.0, 0), (1.1, 11), (2.0, 20)]
    assert len(reader.errors) == 1 and "frame 10 at 1.000 s could not be decoded" in reader.errors[0]


def test_a_decoder_that_fails_forever_does_not_hang():
    capture = FakeCapture(10_000, dead_after=25)
    frames, reader = _fake_sample(capture, fps=1.0)
    assert [t for _, t, _ in frames] == [0.0, 1.0, 2.0]
    assert capture.grabs <= 25 + MAX_FAILURES + 1
    assert reader.end_time == pytest.approx(2.5)
    assert any("truncated" in e for e in reader.errors)  # 2.5 s of an announced 1000 s


def test_frames_that_never_decode_do_not_hang():
    capture = FakeCapture(10_000, bad_retrieves=set(range(10_000)))
    frames, reader = _fake_sample(capture, fps=1.0)
    assert frames == [] and capture.grabs <= MAX_FAILURES + 2
    assert any("stopped after" in e for e in reader.errors)


def test_zero_fps_and_no_timestamps_fall_back_to_25_fps():
    capture = FakeCapture(60, fps=0.0, count=-1, times_ms=[0.0] * 60)
    frames, reader = _fake_sample(capture, fps=1.0)
    assert reader.info.fps == 0.0 and reader.info.frame_count == 0 and reader.info.duration == 0.0
    assert [(i, t) for i, t, _ in frames] == [(0, 0.0), (25, 1.0), (50, 2.0)]
    assert reader.errors == []


def test_nan_and_absurd_container_values_are_unknown():
    capture = FakeCapture(5, fps=float("nan"), count=-9.2e18)
    _, reader = _fake_sample(capture, every_n=1)
    assert reader.info.fps == 0.0 and reader.info.frame_count == 0


def test_variable_frame_rate_is_sampled_by_time():
    # 30 fps for 2 s, then 5 fps for 2 s, then 60 fps for 1 s (the container claims 30 fps)
    times = [i * 1000 / 30 for i in range(60)] + [2000 + i * 200 for i in range(10)] \
        + [4000 + i * 1000 / 60 for i in range(60)]
    frames, reader = _fake_sample(FakeCapture(len(times), fps=30.0, times_ms=times), fps=2.0)
    assert [t for _, t, _ in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.6, 3.0, 3.6, 4.0, 4.5]
    assert [i for i, _, _ in frames] == [0, 15, 30, 45, 60, 63, 65, 68, 70, 100]


def test_wrong_frame_count_does_not_stop_reading_early():
    frames, reader = _fake_sample(FakeCapture(50, count=10), fps=1.0)
    assert [t for _, t, _ in frames] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert reader.errors == []


def test_sampling_stops_cleanly_when_abandoned():
    capture = FakeCapture(100)
    reader = VideoReader("fake.mp4", capture=capture)
    frames = reader.sample(every_n=1)
    next(frames)
    frames.close()
    reader.close()
    assert capture.released and capture.grabs == 1


def test_reading_runs_in_a_thread():  # the tagger decodes in a background thread
    result = []
    thread = threading.Thread(target=lambda: result.extend(_fake_sample(FakeCapture(20), fps=1.0)[0]))
    thread.start()
    thread.join(timeout=10)
    assert [t for _, t, _ in result] == [0.0, 1.0]


@pytest.mark.parametrize("kw", [dict(fps=0), dict(fps=-1), dict(every_n=0)])
def test_invalid_sampling_options(kw):
    with pytest.raises(ValueError):
        list(VideoReader("fake.mp4", capture=FakeCapture(5)).sample(**kw))


@pytest.mark.parametrize("kind,rate,expected", [("avi", 1.0, "grab"), ("avi", 0.5, "seek"),
                                                ("mp4", 1.0, "grab"), ("mp4", 0.5, "seek")])
def test_auto_seeks_only_when_it_saves_decoding(clips, kind, rate, expected):
    # avi: 12 fps, every frame a key frame; mp4: 25 fps, a key frame every 12 frames.
    # Seeking costs ~16 + GOP/2 (+4) frames of decoding per sample: 20.5 and 26 frames.
    auto, reader = _sample(clips[kind], fps=rate)
    assert reader.strategy == expected
    grabbed, _ = _sample(clips[kind], fps=rate, strategy="grab")
    assert auto == grabbed and reader.errors == []


def test_a_seek_that_lands_elsewhere_falls_back_to_grabbing():
    capture = FakeCapture(50)  # its set() does nothing: every seek "fails"
    reader = VideoReader("fake.mp4", capture=capture)
    frames = [(f.index, round(f.time, 6)) for f in reader.sample(fps=1.0, strategy="seek")]
    assert frames == [(0, 0.0), (10, 1.0), (20, 2.0), (30, 3.0), (40, 4.0)]
    assert reader.strategy == "grab" and reader.errors == []
