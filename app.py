"""Gradio web UI: ``python app.py`` (127.0.0.1:7860, the default bundle).

Three tabs on top of the Python API (no model logic here): an image (caption, n-best,
ImageNet tags, attention heatmap per word), a video (shots, keyframes, tags, search,
downloads) and a batch of images (table, CSV/JSONL downloads). ``build_demo(captioner)``
makes the app without launching it, for tests; the model loads once, in ``main()``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from captioning import BundleError, Captioner, ImageError, load_image
from captioning.visualize import attention_overlay
from pipelines.video_shots import DEFAULT_THRESHOLD

DEFAULT_MAX_UPLOAD_MB = 200
DEFAULT_MAX_VIDEO_SECONDS = 600
MAX_BATCH_FILES = 2000
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
EXAMPLES = ("chelsea", "coffee", "astronaut", "rocket")  # skimage.data photos (permissive licences)


def _example_images() -> list[str]:
    """Write a few skimage.data photos to a temp folder so the UI can offer them as examples."""
    try:
        import skimage.data
    except ImportError:  # examples are a nicety; the app works without scikit-image
        return []
    folder = Path(tempfile.gettempdir()) / "captioning-examples"
    folder.mkdir(exist_ok=True)
    paths = []
    for name in EXAMPLES:
        path = folder / f"{name}.jpg"
        if not path.exists():
            Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(path, quality=92)
        paths.append(str(path))
    return paths


class Handlers:
    """The UI's event handlers, as plain methods so tests can call them directly."""

    def __init__(self, captioner: Captioner, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
                 max_video_seconds: float = DEFAULT_MAX_VIDEO_SECONDS, workdir: str | None = None):
        self.captioner = captioner
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
        self.max_video_seconds = max_video_seconds
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="captioning-ui-"))

    def _check_size(self, path: str | None) -> None:
        if path and os.path.getsize(path) > self.max_upload_bytes:
            raise gr.Error(f"{Path(path).name} is {os.path.getsize(path) / 2**20:.0f} MB; "
                           f"the limit is {self.max_upload_bytes / 2**20:.0f} MB.")

    # -- image tab -----------------------------------------------------------------------
    def caption_image(self, image_path: str | None, beam_size: int = 3, max_length: int = 20):
        """-> caption, n-best table, tags {label: p}, word choices, heatmap, attention state."""
        if not image_path:
            raise gr.Error("Upload an image first.")
        self._check_size(image_path)
        try:
            image = load_image(image_path)
        except ImageError as e:
            raise gr.Error(f"Cannot read this image: {str(e).split(': ', 1)[-1]}") from None
        cap = self.captioner
        enc = cap.encode([image])
        result = cap.decode(enc, beam_size=int(beam_size), max_length=int(max_length))[0]
        tags = {t.label: t.probability for t in cap.top_tags(enc, k=5)[0]}
        nbest = [[a.text, round(a.score, 3)] for a in result.alternatives]
        words = [f"{i + 1}. {w}" for i, w in enumerate(result.tokens)]
        state = {"path": image_path, "attention": result.attention.tolist(), "words": words}
        heatmap = self.attention_for_word(words[0] if words else None, state)
        return (result.text, nbest, tags, gr.update(choices=words, value=words[0] if words else None),
                heatmap, state)

    def attention_for_word(self, word: str | None, state: dict | None):
        """The uploaded image overlaid with the attention map of the chosen word."""
        if not state or not word or word not in state["words"]:
            return None
        index = state["words"].index(word)
        image = load_image(state["path"])
        return attention_overlay(image, np.asarray(state["attention"][index]))

    # -- video tab -----------------------------------------------------------------------
    def tag_video(self, video_path: str | None, fps: float = 1.0, shot_threshold: float = DEFAULT_THRESHOLD,
                  progress: gr.Progress = gr.Progress()):
        """-> shots table, keyframe gallery, top tags {label: p}, JSON/SRT/VTT paths, result state."""
        from pipelines.video import tag_video
        from pipelines.video_export import write_outputs
        from pipelines.video_io import VideoError, VideoReader

        if not video_path:
            raise gr.Error("Upload a video first.")
        self._check_size(video_path)
        try:
            with VideoReader(video_path) as reader:
                duration = reader.info.duration
        except VideoError as e:
            raise gr.Error(f"Cannot read this video: {str(e).split(': ', 1)[-1]}") from None
        if duration > self.max_video_seconds:
            raise gr.Error(f"The video is {duration:.0f} s long; this server takes up to "
                           f"{self.max_video_seconds:.0f} s (use tag-video for longer ones).")
        done = [0.0]

        def report(frames: int, seconds: float) -> None:
            done[0] += seconds
            progress(min(done[0] / duration, 1.0) if duration else None, desc=f"tagged {done[0]:.0f} s of video")

        try:
            tags = tag_video(video_path, self.captioner, fps=float(fps), shot_threshold=float(shot_threshold),
                             progress=report)
        except VideoError as e:
            raise gr.Error(f"Cannot read this video: {str(e).split(': ', 1)[-1]}") from None
        if tags.partial:
            gr.Warning("Part of the video could not be read: " + "; ".join(tags.errors)[:300])
        out = Path(tempfile.mkdtemp(dir=self.workdir))
        stem = Path(video_path).stem
        written = write_outputs(tags, out, stem, formats=("json", "srt", "vtt"), thumbnails=True)
        thumbs = {p.stem: str(p) for p in written if p.suffix == ".jpg"}
        rows = [[_clock(s.start), _clock(s.end), s.caption, ", ".join(t.label for t in s.tags[:5])] for s in tags.shots]
        gallery = [(thumbs[f"shot_{s.index:03d}"], f"{_clock(s.start)} {s.caption}") for s in tags.shots
                   if f"shot_{s.index:03d}" in thumbs]
        top = {t.label: t.probability for t in tags.summary.tags if t.source == "imagenet"}
        files = [str(out / f"{stem}.{ext}") for ext in ("json", "srt", "vtt")]
        return rows, gallery, top, files, tags.to_dict()

    def search_video(self, query: str, result: dict | None):
        """Segments of the tagged video that match a tag query."""
        from pipelines.video_tags import VideoTags

        if not result:
            raise gr.Error("Tag a video first.")
        if not query or not query.strip():
            return []
        hits = VideoTags.from_dict(result).search(query.strip())
        return [[_clock(s.start), _clock(s.end), round(s.confidence, 3), ", ".join(s.labels)] for s in hits]

    # -- batch tab -----------------------------------------------------------------------
    def caption_batch(self, files: list[str] | None, beam_size: int = 3):
        """-> results table rows, CSV path, JSONL path."""
        from pipelines.images import caption_images, write_records

        if not files:
            raise gr.Error("Upload some images (or a .zip of images) first.")
        paths = []
        for f in files:
            self._check_size(f)
            paths += self._unzip(f) if str(f).lower().endswith(".zip") else [f]
        if not paths:
            raise gr.Error("No images found in the upload.")
        if len(paths) > MAX_BATCH_FILES:
            raise gr.Error(f"{len(paths)} files: the UI takes at most {MAX_BATCH_FILES}; use caption-images for more.")
        records = []
        for r in gr.Progress(track_tqdm=False).tqdm(
                caption_images(paths, self.captioner, beam_size=int(beam_size), tags=3), total=len(paths),
                desc="captioning"):
            r = {**r, "path": Path(r["path"]).name}
            records.append(r)
        out = Path(tempfile.mkdtemp(dir=self.workdir))
        write_records(records, out / "captions.csv")
        write_records(records, out / "captions.jsonl")
        rows = [[r["path"], r["caption"] or "", ", ".join(t["label"] for t in r["tags"] or []), r["error"] or ""]
                for r in records]
        return rows, str(out / "captions.csv"), str(out / "captions.jsonl")

    def _unzip(self, zip_path: str) -> list[str]:
        """Extract the images of a zip (flat, safe names, size-limited) into the work dir."""
        dest = Path(tempfile.mkdtemp(dir=self.workdir))
        paths, total = [], 0
        try:
            with zipfile.ZipFile(zip_path) as z:
                for i, info in enumerate(z.infolist()):
                    name = Path(info.filename).name
                    if info.is_dir() or name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                        continue
                    total += info.file_size
                    if total > 4 * self.max_upload_bytes:
                        raise gr.Error(f"{Path(zip_path).name}: unpacks to more than "
                                       f"{4 * self.max_upload_bytes / 2**20:.0f} MB")
                    target = dest / f"{i:05d}_{name}"
                    target.write_bytes(z.read(info))
                    paths.append(str(target))
        except zipfile.BadZipFile:
            raise gr.Error(f"{Path(zip_path).name} is not a valid zip file") from None
        return paths


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m):d}:{s:04.1f}"


def build_demo(captioner: Captioner, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               max_video_seconds: float = DEFAULT_MAX_VIDEO_SECONDS) -> gr.Blocks:
    """The whole UI around one loaded Captioner (not launched)."""
    h = Handlers(captioner, max_upload_mb=max_upload_mb, max_video_seconds=max_video_seconds)
    metrics = captioner.bundle.manifest.get("metrics", {})
    quality = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("BLEU-4", "CIDEr-D") if isinstance(metrics.get(k), float))
    with gr.Blocks(title="Image captioning & video tagging") as demo:
        gr.Markdown(f"## Image captioning & video tagging\nModel **{captioner.name}** v{captioner.version}"
                    + (f" (dev {quality})" if quality else "") + ". Runs offline on this machine.")
        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column(scale=1):
                    image = gr.Image(type="filepath", label="Image", sources=["upload", "clipboard", "webcam"],
                                     height=320)
                    with gr.Row():
                        beam = gr.Slider(1, 8, value=captioner.decoding.beam_size, step=1, label="Beam size")
                        max_len = gr.Slider(5, 40, value=captioner.decoding.max_length, step=1,
                                            label="Max words")
                    run = gr.Button("Caption", variant="primary")
                    examples = _example_images()
                    if examples:
                        gr.Examples(examples=examples, inputs=image, label="Try an example")
                with gr.Column(scale=1):
                    caption = gr.Textbox(label="Caption", elem_id="caption", interactive=False)
                    tags = gr.Label(label="ImageNet tags", num_top_classes=5)
                    nbest = gr.Dataframe(headers=["alternative", "score"], label="n-best", interactive=False, elem_id="nbest",
                                         column_widths=["78%", "22%"], wrap=True)
                with gr.Column(scale=1):
                    word = gr.Dropdown(label="Where did it look for this word?", choices=[], interactive=True)
                    heatmap = gr.Image(label="Attention", type="pil", interactive=False, height=320)
            att_state = gr.State()
            run.click(h.caption_image, [image, beam, max_len], [caption, nbest, tags, word, heatmap, att_state],
                      api_name="caption_image")
            word.change(h.attention_for_word, [word, att_state], heatmap, api_visibility="private")
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column(scale=1):
                    # a file box, not gr.Video: browsers cannot preview many codecs OpenCV reads
                    # (e.g. MPEG-4 part 2), and a failed preview shows a confusing error
                    video = gr.File(label="Video (mp4, avi, mkv, webm, mov)", type="filepath", height=120,
                                    file_types=list(VIDEO_EXTENSIONS))
                    with gr.Row():
                        fps = gr.Slider(0.25, 5, value=1.0, step=0.25, label="Frames per second sampled")
                        threshold = gr.Slider(0.05, 0.6, value=DEFAULT_THRESHOLD, step=0.01, label="Shot threshold")
                    tag = gr.Button("Tag video", variant="primary")
                with gr.Column(scale=1):
                    top_tags = gr.Label(label="Top tags of the video", num_top_classes=8)
                    downloads = gr.File(label="Downloads (JSON, SRT, WebVTT)", file_count="multiple")
            shots = gr.Dataframe(headers=["start", "end", "caption", "tags"], label="Shots", interactive=False,
                                 elem_id="shots-table", wrap=True)
            keyframes = gr.Gallery(label="Keyframes", columns=6, height=240)
            with gr.Row():
                query = gr.Textbox(label="Search tags (e.g. dog, beach)", scale=3)
                find = gr.Button("Search", scale=1)
            hits = gr.Dataframe(headers=["start", "end", "confidence", "matched"], label="Matching segments",
                                interactive=False)
            video_state = gr.State()
            tag.click(h.tag_video, [video, fps, threshold], [shots, keyframes, top_tags, downloads, video_state],
                      api_name="tag_video")
            gr.on([find.click, query.submit], h.search_video, [query, video_state], hits, api_name="search_video")
        with gr.Tab("Batch"):
            files = gr.File(label="Images or a .zip", file_count="multiple", type="filepath")
            batch_beam = gr.Slider(1, 8, value=captioner.decoding.beam_size, step=1, label="Beam size")
            go = gr.Button("Caption all", variant="primary")
            table = gr.Dataframe(headers=["file", "caption", "tags", "error"], label="Results", interactive=False,
                                 elem_id="batch-table", wrap=True)
            with gr.Row():
                csv_file = gr.File(label="CSV")
                jsonl_file = gr.File(label="JSONL")
            go.click(h.caption_batch, [files, batch_beam], [table, csv_file, jsonl_file], api_name="caption_batch")
    return demo


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(description="Web UI for image captioning and video tagging.")
    p.add_argument("--host", default=env("CAPTION_HOST", "127.0.0.1"), help="interface to bind (default: %(default)s; env CAPTION_HOST)")
    p.add_argument("--port", type=int, default=int(env("CAPTION_PORT", "7860")), help="port (default: %(default)s; env CAPTION_PORT)")
    p.add_argument("--weights", default=env("CAPTION_WEIGHTS"), help="bundle name or folder (default: weights/DEFAULT; env CAPTION_WEIGHTS)")
    p.add_argument("--device", default=env("CAPTION_DEVICE", "auto"), help="cpu, cuda or auto (default: %(default)s; env CAPTION_DEVICE)")
    p.add_argument("--max-upload-mb", type=float, default=float(env("CAPTION_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB)),
                   help="largest accepted upload (default: %(default)s; env CAPTION_MAX_UPLOAD_MB)")
    p.add_argument("--max-video-seconds", type=float,
                   default=float(env("CAPTION_MAX_VIDEO_SECONDS", DEFAULT_MAX_VIDEO_SECONDS)),
                   help="longest accepted video (default: %(default)s; env CAPTION_MAX_VIDEO_SECONDS)")
    p.add_argument("--concurrency", type=int, default=1, help="jobs run at once; others queue (default: %(default)s)")
    p.add_argument("--share", action="store_true", help="ask Gradio for a public share link (default: off)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        captioner = Captioner.load(args.weights, device=args.device)
    except (BundleError, RuntimeError) as e:
        print(f"app.py: {e}", file=sys.stderr)
        return 2
    demo = build_demo(captioner, max_upload_mb=args.max_upload_mb, max_video_seconds=args.max_video_seconds)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                max_file_size=int(args.max_upload_mb * 1024 * 1024), footer_links=["api"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
