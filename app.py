"""Gradio web UI: ``python app.py`` (127.0.0.1:7860, the default bundle).

Three tabs on top of the Python API (no model logic here): an image (caption, n-best,
everyday and ImageNet tags, attention heatmap per word), a video (a timeline picture of its
shots, a shot table whose rows show their keyframe large, tags, search, downloads) and a batch
of images (table, CSV/JSONL downloads). ``build_demo(captioner)`` makes the app without
launching it, for tests; the model loads once, in ``main()``. The decoding options' controls:
:mod:`pipelines.ui.decoding`; how tags are shown: :mod:`pipelines.ui.tags`; how confidence and the
unfamiliar-photo warning are: :mod:`pipelines.ui.trust`.

Files: uploads and the files a request hands back (downloads, keyframes) live in Gradio's
cache, which Gradio serves from and empties on the :data:`CACHE_CLEANUP` schedule; zip
members are unpacked (:mod:`pipelines.images.archives`) into a scratch folder that the
request deletes when it ends.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder

from captioning import BundleError, Captioner, ImageError, examples, load_image
from captioning.decoding import Decoding
from captioning.options import add_weights_flag, field_comments
from captioning.runtime import BACKENDS, PRECISIONS, RuntimeOptions
from captioning.startup import model_loading
from captioning.visualize import attention_overlay
from pipelines.files import VIDEO_EXTENSIONS
from pipelines.images import caption_images, write_records
from pipelines.images.archives import ArchiveError, image_entries, is_zip, unpack
from pipelines.ui.decoding import DECODING_FIELDS  # noqa: F401 (the tests read app.DECODING_FIELDS)
from pipelines.ui.decoding import decoding_controls, decoding_overrides, with_decoding_parameters
from pipelines.ui.tags import everyday_label, leading_source, record_tags, shown_tags
from pipelines.ui.trust import record_confidence, record_verdict, verdict
from pipelines.video import SearchOptions, TagOptions, VideoError, VideoTags, VideoTooLong, tag_video
from pipelines.video.export import write_outputs
from pipelines.video.io import VideoReader
from pipelines.video.results import BLANK, SORTS, no_matches, shown_segments
from pipelines.video.timeline import clock, timeline

DEFAULT_MAX_UPLOAD_MB = 200
DEFAULT_MAX_VIDEO_SECONDS = 600
MAX_BATCH_FILES = 2000
UNZIPPED_PER_UPLOAD = 4  # a batch's zips may unpack to this many times the upload limit in all
CACHE_CLEANUP = (600, 3600)  # Gradio's delete_cache: every 10 min, delete this app's files older than 1 h
VIDEO = TagOptions()  # the video tab's defaults: tag-video's
SEARCH = SearchOptions()  # the video search's defaults: tag-video's --min-hit-confidence and --sort
BATCH_COLUMNS = ["file", "caption", "confidence", "sure?", "tags", "error"]  # the batch table (caption_batch's rows)


class Handlers:
    """The UI's event handlers, as plain methods so tests can call them directly.

    ``workdir`` holds each request's scratch folder (zip members), deleted when the request
    ends; ``downloads`` receives the files handed back to the browser (default: Gradio's
    cache, which Gradio serves without copying and cleans on the demo's schedule).
    """

    def __init__(self, captioner: Captioner, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
                 max_video_seconds: float = DEFAULT_MAX_VIDEO_SECONDS, workdir: str | None = None,
                 downloads: str | None = None):
        self.captioner = captioner
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
        self.max_unzipped_bytes = UNZIPPED_PER_UPLOAD * self.max_upload_bytes
        self.max_video_seconds = max_video_seconds
        self.workdir = workdir  # None: the system's temp folder (nothing made until a request needs it)
        self.downloads = Path(downloads or get_upload_folder())

    def _check_size(self, path: str | None) -> None:
        if path and os.path.getsize(path) > self.max_upload_bytes:
            raise gr.Error(f"{Path(path).name} is {os.path.getsize(path) / 2**20:.0f} MB; "
                           f"the limit is {self.max_upload_bytes / 2**20:.0f} MB.")

    @contextlib.contextmanager
    def _new_downloads(self) -> Iterator[Path]:
        """A fresh folder for one request's downloads; removed if the request fails before
        handing them over (Gradio deletes the files it was handed)."""
        self.downloads.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=self.downloads, prefix="captioning-"))
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    # -- image tab -----------------------------------------------------------------------
    def caption_image(self, image: str | dict | None, *decoding: Any):
        """-> caption, n-best table, tags {label: p}, word choices, heatmap, attention state, everyday
        tags {"dog — golden retriever 0.61": p}, the verdict (markdown: "Caption: **sure** (0.83)", the
        unfamiliar-photo warning leading with the tags; "" without a confidence).

        ``decoding``: values of the Decoding options in their field order (beam size, max length,
        ...; missing or None: the bundle's). ``image`` is a path, or gr.Image's upload payload as the event passes it unprocessed
        (``{"path": ...}``, see build_demo): the file the user sent, read by load_image as in the CLI.
        """
        image_path = image.get("path") if isinstance(image, dict) else image
        if not image_path:
            raise gr.Error("Upload an image first.")
        self._check_size(image_path)
        try:
            image = self.captioner.preprocessing.load(image_path)
        except ImageError as e:
            raise gr.Error(f"Cannot read this image: {_reason(e, image_path)}") from None
        cap = self.captioner
        enc = cap.encode([image])
        result = cap.decode(enc, **decoding_overrides(decoding))[0]
        tags = {t.label: t.probability for t in cap.top_tags(enc, k=5)[0]}
        words_tags = cap.top_everyday_tags(enc, k=5)[0]
        everyday = everyday_label(words_tags)
        nbest = [[a.text, round(a.score, 3)] for a in result.alternatives]
        words = [f"{i + 1}. {w}" for i, w in enumerate(result.tokens)]
        state = {"path": image_path, "attention": result.attention.tolist(), "words": words}
        heatmap = self.attention_for_word(words[0] if words else None, state)
        return (result.text, nbest, tags, gr.update(choices=words, value=words[0] if words else None),
                heatmap, state, everyday, verdict(result, words_tags))

    def attention_for_word(self, word: str | None, state: dict | None):
        """The uploaded image overlaid with the attention map of the chosen word."""
        if not state or not word or word not in state["words"]:
            return None
        index = state["words"].index(word)
        try:
            image = load_image(state["path"])
        except ImageError:  # the upload left Gradio's cache (CACHE_CLEANUP)
            raise gr.Error("The image is no longer on the server; upload it again.") from None
        return attention_overlay(image, np.asarray(state["attention"][index]))

    # -- video tab -----------------------------------------------------------------------
    def tag_video(self, video_path: str | None, fps: float = VIDEO.fps, shot_threshold: float = VIDEO.shot_threshold,
                  *decoding: Any, progress: gr.Progress = gr.Progress()):
        """-> shots table, timeline picture, top tags {label: p}, JSON/SRT/VTT paths, result state
        (``decoding`` as in :meth:`caption_image`; the state: ``{"tags": VideoTags.to_dict(),
        "keyframes": {shot index: its keyframe JPEG}}``)."""
        if not video_path:
            raise gr.Error("Upload a video first.")
        self._check_size(video_path)
        try:
            with VideoReader(video_path) as reader:
                duration = reader.info.duration  # the container's estimate; 0.0 when it has none
        except VideoError as e:
            raise gr.Error(f"Cannot read this video: {_reason(e, video_path)}") from None
        if duration > self.max_video_seconds:
            raise self._too_long(f"{duration:.0f} s long")
        done = [0.0]

        def report(frames: int, seconds: float) -> None:
            done[0] += seconds
            progress(min(done[0] / duration, 1.0) if duration else None, desc=f"tagged {done[0]:.0f} s of video")

        try:
            tags = tag_video(video_path, self.captioner, fps=float(fps), shot_threshold=float(shot_threshold),
                             progress=report, max_seconds=self.max_video_seconds, **decoding_overrides(decoding))
        except VideoTooLong:  # found by sampling: the container announced no (or a shorter) duration
            raise self._too_long(f"longer than {self.max_video_seconds:g} s") from None
        except VideoError as e:
            raise gr.Error(f"Cannot read this video: {_reason(e, video_path)}") from None
        if tags.partial:
            gr.Warning("Part of the video could not be read: " + "; ".join(tags.errors)[:300])
        stem = Path(video_path).stem
        with self._new_downloads() as out:
            written = write_outputs(tags, out, stem, formats=("json", "srt", "vtt"), thumbnails=True)
        thumbs = {p.stem: str(p) for p in written if p.suffix == ".jpg"}
        keyframes = {s.index: thumbs[f"shot_{s.index:03d}"] for s in tags.shots if f"shot_{s.index:03d}" in thumbs}
        rows = [[s.index + 1, clock(s.start), clock(s.end), BLANK if s.blank else s.caption,
                 ", ".join(shown_tags(s.tags, 5))] for s in tags.shots]
        top = {t.label: t.probability for t in tags.summary.tags if t.source == leading_source(tags.summary.tags)}
        files = [str(out / f"{stem}.{ext}") for ext in ("json", "srt", "vtt")]
        return rows, timeline(tags, keyframes), top, files, {"tags": tags.to_dict(), "keyframes": keyframes}

    def select_shot(self, result: dict | None, evt: gr.SelectData):
        """A row of the shots table clicked -> that shot's keyframe at full size, what it holds, and
        the timeline with the shot outlined."""
        if not result:
            raise gr.Error("Tag a video first.")
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        tags = VideoTags.from_dict(result["tags"])
        if not 0 <= row < len(tags.shots):
            return gr.update(), gr.update(), gr.update()
        keyframes = result["keyframes"]
        if not all(os.path.exists(p) for p in keyframes.values()):  # they left Gradio's cache (CACHE_CLEANUP)
            raise gr.Error("The keyframes are no longer on the server; tag the video again.")
        s = tags.shots[row]
        text = (f"**Shot {row + 1}** of {len(tags.shots)}, {clock(s.start)} to {clock(s.end)}; keyframe at "
                f"{clock(s.keyframe_time)}: *{BLANK if s.blank else s.caption}*  \n"
                f"Tags: {', '.join(shown_tags(s.tags, 8)) or 'none'}")
        return keyframes.get(row), text, timeline(tags, keyframes, selected=row)

    def _too_long(self, length: str) -> gr.Error:
        return gr.Error(f"The video is {length}; this server takes up to {self.max_video_seconds:g} s "
                        "(use tag-video for longer ones).")

    def search_video(self, query: str, result: dict | None, sort: str = SEARCH.sort,
                     min_confidence: float = SEARCH.min_confidence):
        """Segments of the tagged video that match a tag query, in ``sort`` order (tag-video's
        ``--sort``), those under ``min_confidence`` left out (tag-video's ``--min-hit-confidence``),
        and a line saying so when none is left (tag-video's, the hidden ones counted)."""
        if not result:
            raise gr.Error("Tag a video first.")
        if not query or not query.strip():
            return [], ""
        with _shown(ValueError):
            options = SearchOptions(min_confidence=min_confidence, sort=sort if sort in SORTS else SORTS[0])
        tags = VideoTags.from_dict(result["tags"])
        hits, hidden = shown_segments(tags, query.strip(), options)
        rows = [[clock(s.start), clock(s.end), round(s.confidence, 3), ", ".join(s.labels)] for s in hits]
        if hits:
            return rows, ""
        threshold = f"below the minimum confidence {options.min_confidence:g}: lower it to see them"
        return rows, no_matches(query, Path(tags.video.path).name, hidden=hidden, threshold=threshold)

    # -- batch tab -----------------------------------------------------------------------
    def caption_batch(self, files: list[str] | None, *decoding: Any):
        """-> results table rows (file, caption, confidence, in words, tags, error), CSV path, JSONL path
        (``decoding`` as in :meth:`caption_image`)."""
        if not files:
            raise gr.Error("Upload some images (or a .zip of images) first.")
        for f in files:
            self._check_size(f)
        with _shown(ArchiveError):  # every zip checked before anything is unpacked
            members = {f: image_entries(f, max_member_bytes=self.max_upload_bytes) for f in files if is_zip(f)}
        count = sum(len(members[f]) if f in members else 1 for f in files)
        if not count:
            raise gr.Error("No images found in the upload.")
        if count > MAX_BATCH_FILES:
            raise gr.Error(f"{count} files: the UI takes at most {MAX_BATCH_FILES}; use caption-images for more.")
        unzipped = sum(info.file_size for infos in members.values() for info in infos)
        if unzipped > self.max_unzipped_bytes:
            raise gr.Error(f"The zips unpack to {unzipped / 2**20:.0f} MB; the limit is "
                           f"{self.max_unzipped_bytes / 2**20:.0f} MB.")
        with tempfile.TemporaryDirectory(dir=self.workdir, prefix="captioning-ui-") as scratch, _shown(ArchiveError):
            paths = []
            for n, f in enumerate(files):
                paths += unpack(f, members[f], Path(scratch, str(n))) if f in members else [f]
            captioned = caption_images(paths, self.captioner, tags=3, **decoding_overrides(decoding))
            records = [_public(r) for r in gr.Progress(track_tqdm=False).tqdm(captioned, total=len(paths),
                                                                              desc="captioning")]
        with self._new_downloads() as out:
            write_records(records, out / "captions.csv")
            write_records(records, out / "captions.jsonl")
        rows = [[r["path"], r["caption"] or "", record_confidence(r), record_verdict(r, record_tags(r)), record_tags(r),
                 r["error"] or ""] for r in records]
        return rows, str(out / "captions.csv"), str(out / "captions.jsonl")


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """A batch record with the server path of its file (as given and resolved) replaced by the
    file's name in every text field."""
    name = Path(record["path"]).name
    paths = {record["path"], os.path.realpath(record["path"])}

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            for path in paths:
                value = value.replace(path, name)
        return value

    return {key: scrub(value) for key, value in record.items()}


@contextlib.contextmanager
def _shown(*errors: type[Exception]) -> Iterator[None]:
    """Errors of these types reach the user as their one-line message."""
    try:
        yield
    except errors as e:
        raise gr.Error(str(e)) from None


def _reason(error: BaseException, path: str) -> str:
    """An error's message without the server path of the upload it names."""
    return str(error).removeprefix(f"{path}: ").replace(str(path), Path(path).name)


def _video_tab(h: Handlers, decoding: Decoding) -> None:
    """The Video tab: its components and events (the handlers are ``h``'s)."""
    with gr.Tab("Video"):
        with gr.Row():
            with gr.Column(scale=1):
                # a file box, not gr.Video: browsers cannot preview many codecs OpenCV reads
                # (e.g. MPEG-4 part 2), and a failed preview shows a confusing error
                video = gr.File(label="Video (mp4, avi, mkv, webm, mov)", type="filepath", height=120,
                                file_types=list(VIDEO_EXTENSIONS))
                with gr.Row():
                    fps = gr.Slider(0.25, 5, value=VIDEO.fps, step=0.25, label="Frames per second sampled")
                    threshold = gr.Slider(0.05, 0.6, value=VIDEO.scene_threshold, step=0.01,
                                          label="Scene threshold")
                video_decoding = decoding_controls(decoding)
                tag = gr.Button("Tag video", variant="primary")
                gr.Examples(examples=[str(examples.CLIP)], inputs=video, label="Try an example")
            with gr.Column(scale=1):
                top_tags = gr.Label(label="Top tags of the video", num_top_classes=8)
                downloads = gr.File(label="Downloads (JSON, SRT, WebVTT)", file_count="multiple")
        gr.Markdown("**Timeline**: each shot's keyframe over its time, shot boundaries in red, its top tags below")
        strip = gr.Image(show_label=False, type="pil", format="png", interactive=False, elem_id="timeline",
                         buttons=[])  # a label or buttons would cover the time ruler
        with gr.Row():
            shots = gr.Dataframe(headers=["shot", "start", "end", "caption", "tags"], label="Shots (click a row)",
                                 interactive=False, elem_id="shots-table", wrap=True, scale=3,
                                 column_widths=["8%", "11%", "11%", "40%", "30%"])
            with gr.Column(scale=2):
                keyframe = gr.Image(label="Keyframe of the shot", type="filepath", interactive=False,
                                    elem_id="shot-keyframe", height=320)
                about = gr.Markdown(elem_id="shot-about")
        with gr.Row():
            query = gr.Textbox(label="Search tags (e.g. dog, puppy, beach)", scale=3, elem_id="video-search")
            order = gr.Radio(list(SORTS), value=SEARCH.sort, label="Order by", scale=1)
            minimum = gr.Slider(0, 1, value=SEARCH.min_confidence, step=0.05, label="Minimum confidence", scale=1,
                                elem_id="video-min-confidence")
            find = gr.Button("Search", scale=1)
        hits = gr.Dataframe(headers=["start", "end", "confidence", "matched"], label="Matching segments",
                            interactive=False)
        no_hits = gr.Markdown(elem_id="search-status")
        video_state = gr.State()
        tag.click(with_decoding_parameters(h.tag_video), [video, fps, threshold, *video_decoding],
                  [shots, strip, top_tags, downloads, video_state], api_name="tag_video")
        shots.select(h.select_shot, video_state, [keyframe, about, strip], api_visibility="private")
        gr.on([find.click, query.submit, order.change, minimum.release], h.search_video,
              [query, video_state, order, minimum], [hits, no_hits], api_name="search_video")


def dev_quality(metrics: dict) -> str:
    """The bundle's recorded dev scores in a few words: "BLEU-4 0.238, CIDEr-D 0.607", or per dataset
    for a bundle scored on several devs: "CIDEr-D flickr8k 0.607, coco_subset 0.448"."""
    if "datasets" in metrics:
        return "CIDEr-D " + ", ".join(f"{name} {m['CIDEr-D']:.3f}" for name, m in metrics["datasets"].items()
                                      if isinstance(m.get("CIDEr-D"), float))
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in ("BLEU-4", "CIDEr-D") if isinstance(metrics.get(k), float))


def build_demo(captioner: Captioner, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               max_video_seconds: float = DEFAULT_MAX_VIDEO_SECONDS) -> gr.Blocks:
    """The whole UI around one loaded Captioner (not launched)."""
    h = Handlers(captioner, max_upload_mb=max_upload_mb, max_video_seconds=max_video_seconds)
    quality = dev_quality(captioner.bundle.manifest.get("metrics", {}))
    with gr.Blocks(title="Image captioning & video tagging", delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(f"## Image captioning & video tagging\nModel **{captioner.name}** v{captioner.version}"
                    + (f" (dev {quality})" if quality else "")
                    + f". Runs offline on this machine (encoder: {captioner.backend}"
                    + ("" if captioner.precision == "fp32" else f", {captioner.precision}") + ").")
        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column(scale=1):
                    image = gr.Image(type="filepath", label="Image", sources=["upload", "clipboard", "webcam"],
                                     height=320)
                    image_decoding = decoding_controls(captioner.decoding)
                    run = gr.Button("Caption", variant="primary")
                    gr.Examples(examples=[str(p) for p in examples.photos()], inputs=image, label="Try an example")
                with gr.Column(scale=1):
                    trust = gr.Markdown(elem_id="trust")  # above the caption: an unfamiliar photo leads with its tags
                    caption = gr.Textbox(label="Caption", elem_id="caption", interactive=False)
                    everyday = gr.Label(label="Everyday tags (word — its best ImageNet label)", num_top_classes=5)
                    tags = gr.Label(label="ImageNet tags", num_top_classes=5)
                    nbest = gr.Dataframe(headers=["alternative", "score"], label="n-best", interactive=False, elem_id="nbest",
                                         column_widths=["78%", "22%"], wrap=True)
                with gr.Column(scale=1):
                    word = gr.Dropdown(label="Where did it look for this word?", choices=[], interactive=True)
                    heatmap = gr.Image(label="Attention", type="pil", interactive=False, height=320)
            att_state = gr.State()
            # preprocess=False: gr.Image's preprocessing would open the upload with PIL and convert
            # it to RGB first (a generic error for a file PIL cannot open, a 16-bit image all white)
            run.click(with_decoding_parameters(h.caption_image), [image, *image_decoding],
                      [caption, nbest, tags, word, heatmap, att_state, everyday, trust],
                      api_name="caption_image", preprocess=False)
            word.change(h.attention_for_word, [word, att_state], heatmap, api_visibility="private")
        _video_tab(h, captioner.decoding)
        with gr.Tab("Batch"):
            files = gr.File(label="Images or a .zip", file_count="multiple", type="filepath")
            batch_decoding = decoding_controls(captioner.decoding)
            go = gr.Button("Caption all", variant="primary")
            # click a header to sort by it (Gradio's Dataframe): "confidence" is a number column
            table = gr.Dataframe(headers=BATCH_COLUMNS, datatype=["str", "str", "number", "str", "str", "str"],
                                 label="Results (click a column header to sort, e.g. by confidence)",
                                 interactive=False, elem_id="batch-table", wrap=True)
            with gr.Row():
                csv_file = gr.File(label="CSV")
                jsonl_file = gr.File(label="JSONL")
            go.click(with_decoding_parameters(h.caption_batch), [files, *batch_decoding], [table, csv_file, jsonl_file], api_name="caption_batch")
    return demo


def _parser() -> argparse.ArgumentParser:
    """The app's flags; each (but --concurrency and --share) defaults to its CAPTION_<NAME> env variable."""
    p = argparse.ArgumentParser(description="Web UI for image captioning and video tagging.")
    add_weights_flag(p, default=os.environ.get("CAPTION_WEIGHTS"), note="; env CAPTION_WEIGHTS")
    runtime = field_comments(RuntimeOptions)  # the flags every inference tool has, worded alike
    for name, kind, default, text in (
            ("host", str, "127.0.0.1", "interface to bind"), ("port", int, 7860, "port"),
            ("device", str, RuntimeOptions.device, runtime["device"]),
            ("backend", str, RuntimeOptions.backend, runtime["backend"]),
            ("precision", str, RuntimeOptions.precision, runtime["precision"]),
            ("threads", int, RuntimeOptions.threads, runtime["threads"]),
            ("max_upload_mb", float, DEFAULT_MAX_UPLOAD_MB, "largest accepted upload"),
            ("max_video_seconds", float, DEFAULT_MAX_VIDEO_SECONDS, "longest accepted video")):
        var = f"CAPTION_{name.upper()}"
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=kind(os.environ.get(var, default)),
                       choices={"backend": BACKENDS, "precision": PRECISIONS}.get(name), help=f"{text} (default: %(default)s; env {var})")
    p.add_argument("--concurrency", type=int, default=1, help="jobs run at once; others queue (default: %(default)s)")
    p.add_argument("--share", action="store_true", help="ask Gradio for a public share link (default: off)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with model_loading():
            captioner = Captioner.load(args.weights, device=args.device, backend=args.backend,
                                       precision=args.precision, threads=args.threads)
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
