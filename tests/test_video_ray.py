"""--engine ray: the same results as the local engine, from a local 2-CPU Ray."""
from __future__ import annotations

import json

import pytest

from pipelines.video import OutputOptions, TagOptions, tag_video
from pipelines.video.cli import main
from pipelines.video.layout import Target
from test_video_clips import make_clip

pytestmark = pytest.mark.slow  # starting Ray and two model actors takes well over 20 s


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")  # an optional extra: absent means nothing to test
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray_videos")
    return [make_clip(d / "one.avi", fps=10.0, shots=(("chelsea", 3.0), ("coffee", 3.0))),
            make_clip(d / "two.avi", fps=10.0, shots=(("rocket", 2.0), ("astronaut", 3.0))),
            d / "broken.mp4"]


def _essentials(tags):
    return ([(s.start, s.end, s.keyframe_index, s.caption, [(t.label, round(t.probability, 4)) for t in s.tags])
             for s in tags.shots], [(f.index, f.time, [t.label for t in f.tags]) for f in tags.frames])


def test_ray_engine_matches_local(ray_local, videos, tiny_bundle_dir, captioner, tmp_path):
    from captioning.runtime import RuntimeOptions
    from pipelines.video.ray import tag_videos_ray

    videos[2].write_text("not a video")
    options, output = TagOptions(batch_size=4), OutputOptions(str(tmp_path / "out"), ("json", "srt"))
    jobs = [(str(v), Target(tmp_path / "out" / v.stem, v.stem)) for v in videos]
    results = {path: (tags, error) for path, tags, error in
               tag_videos_ray(jobs, bundle=str(tiny_bundle_dir), runtime=RuntimeOptions(device="cpu"), options=options,
                              output=output)}
    assert set(results) == {str(v) for v in videos}
    tags, error = results[str(videos[2])]
    assert tags is None and "broken.mp4: cannot open as a video" in error
    for video in videos[:2]:
        tags, error = results[str(video)]
        assert error is None and len(tags.shots) == 2
        local = tag_video(video, captioner, batch_size=4)
        assert _essentials(tags) == _essentials(local)
        folder = tmp_path / "out" / video.stem
        written = json.loads((folder / f"{video.stem}.json").read_text())
        assert written["shots"] == json.loads(local.to_json())["shots"]
        assert (folder / f"{video.stem}.srt").is_file() and (folder / f"{video.stem}.run.json").is_file()


def test_cli_engine_ray(ray_local, videos, tiny_bundle_dir, tmp_path, capsys):
    rc = main([str(videos[0]), str(videos[1]), "--engine", "ray", "--weights", str(tiny_bundle_dir),
               "--device", "cpu", "--out", str(tmp_path), "--query", "tiger cat",
               "--min-hit-confidence", "0"])  # the tiny model's tiger cat: under 0.2
    assert rc == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(str(videos[0]))
    assert sorted(p.name for p in tmp_path.glob("*/*.json")) == ["one.json", "one.run.json", "two.json", "two.run.json"]
    assert main([str(videos[0]), str(videos[1]), "--engine", "ray", "--weights", str(tiny_bundle_dir),
                 "--device", "cpu", "--out", str(tmp_path)]) == 0  # resumed: both done, Ray not needed again
    assert capsys.readouterr().err.count("(same bundle and options); skipped") == 2
