"""The ``caption-images`` command: find the images, skip the ones already done, caption the
rest with the local or the Ray engine, and write records and sidecars as they come.

    caption-images PHOTOS/ --recursive --out captions.jsonl        # re-run to resume
    caption-images 'shots/*.png' --sidecar .txt --prefix "photo, "   # dataset-style sidecars
    caption-images PHOTOS/ -r --xmp                                  # photo.jpg.xmp for darktable, digiKam
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections import Counter
from dataclasses import asdict
from typing import Any, Callable, Iterator

from tqdm import tqdm

from captioning.bundle import BundleError, recorded_decoding, resolve_bundle, verified_manifest
from captioning.everyday import EverydayOptions
from captioning.images import Preprocessing
from captioning.options import (add_dataclass_flags, add_runtime_flags, add_strict_flag, add_weights_flag,
                                options_from_args, runtime_from_args)
from captioning.startup import model_loading
from captioning.trust import sure_word

from ..flags import add_engine_flags, add_recursive_flag
from ..inputs import discover, path_key, read_list
from ..headstart import worth_starting
from .local import BATCH_SIZE, WORKERS, caption_images, prepare_head
from .outputs import OutputError, RecordOutput, open_output
from .ray import RayEngine
from .records import CaptionOptions, confidence_problem, has_calibration, run_settings
from .sidecars import SidecarFiles, Sidecars, check_sidecar_extension
from .xmp import XmpSidecars

PROG = "caption-images"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Caption folders of images, resumably, on this machine "
                                "or a Ray cluster. Writes one record per image (JSONL or CSV) and/or sidecar files "
                                "(text, XMP).")
    p.add_argument("inputs", nargs="*", help="image files, folders or glob patterns (quote them)")
    p.add_argument("--from-list", metavar="FILE", help="text file with one image path per line, '-' for stdin "
                   "(default: none)")
    add_recursive_flag(p)
    p.add_argument("-o", "--out", help="output file: .csv for CSV, any other name for JSONL, '-' for stdout "
                   "(default: stdout when neither --sidecar nor --xmp is given, else none)")
    p.add_argument("--sidecar", metavar="EXT", help="also write the caption next to each image with this "
                   "extension, e.g. .txt (default: none)")
    p.add_argument("--prefix", default="", help="text written before the caption in sidecars (default: none)")
    p.add_argument("--suffix", default="", help="text written after the caption in sidecars (default: none)")
    p.add_argument("--xmp", action="store_true", help="also write an XMP sidecar next to each image, photo.jpg.xmp, "
                   "with the caption as dc:description and the everyday tags as dc:subject, as darktable and digiKam "
                   "read them (Lightroom reads XMP sidecars only for raw files); an existing one is merged into, every "
                   "other field and its own keywords kept, and one that is not XMP is left alone (default: off)")
    p.add_argument("--skip-existing", action=argparse.BooleanOptionalAction, default=True,
                   help="skip images already in --out (or with their sidecars when there is no --out), to resume an "
                   "interrupted run (default: on)")
    p.add_argument("--overwrite", action="store_true", help="start over: empty --out and rewrite sidecars "
                   "(default: off)")
    add_weights_flag(p)
    add_runtime_flags(p)
    add_dataclass_flags(p, CaptionOptions, skip=("everyday",))
    add_dataclass_flags(p, EverydayOptions)
    p.add_argument("--batch-size", metavar="N", type=int, default=BATCH_SIZE,
                   help="images per model batch (default: %(default)s)")
    p.add_argument("--workers", metavar="N", type=int, default=WORKERS, help="threads (local) or parallel tasks (ray) "
                   "reading and decoding images while the model runs (default: %(default)s)")
    add_strict_flag(p)
    add_engine_flags(p, actors=1)
    p.add_argument("--cpus-per-actor", metavar="N", type=float, default=1.0, help="ray engine: CPUs reserved by "
                   "each model actor, which is also its number of torch threads (default: %(default)s)")
    return p


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> CaptionOptions:
    """The caption options the flags give; exits through ``p.error`` on a bad flag."""
    if not args.inputs and not args.from_list:
        p.error("give image files, folders or glob patterns, or --from-list FILE")
    for name in ("batch_size", "workers", "actors"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.cpus_per_actor <= 0:
        p.error("--cpus-per-actor must be > 0")
    if args.sidecar is not None:
        try:
            check_sidecar_extension(args.sidecar)
        except ValueError as e:
            p.error(str(e))
    args.runtime = runtime_from_args(p, args)  # checked with the other flags, used by _engine
    options = options_from_args(p, CaptionOptions, args, skip=("everyday",))
    return dataclasses.replace(options, everyday=options_from_args(p, EverydayOptions, args))


Engine = Callable[[list[str]], Iterator[dict[str, Any]]]


def _engine(args: argparse.Namespace, options: CaptionOptions, todo: list[str]) -> tuple[Engine, dict[str, Any]]:
    """The chosen engine (model or Ray bundle check), loaded up front so that a bad bundle, a
    missing device or an unreachable cluster fails before any work, and the SETTINGS of the
    records it makes. The local engine's first images of ``todo`` are decoded by a head start
    while the model loads. Raises BundleError / RuntimeError."""
    if args.engine == "ray":
        engine = RayEngine(args.weights, options=options, batch_size=args.batch_size, workers=args.workers,
                           actors=args.actors, cpus_per_actor=args.cpus_per_actor, runtime=args.runtime,
                           address=args.address)
        return engine, engine.settings
    bundle = resolve_bundle(args.weights)
    manifest = verified_manifest(bundle)
    if problem := confidence_problem(options, recorded_decoding(bundle, manifest), calibrated=has_calibration(manifest),
                                     bundle=str(bundle)):
        raise BundleError(problem)
    preprocessing = Preprocessing(**manifest["preprocessing"])
    head = prepare_head(todo, preprocessing) if todo and worth_starting() else None
    try:
        with model_loading():
            from captioning import Captioner  # imports torch, while the head start decodes

            captioner = Captioner.load(bundle, **asdict(args.runtime))
        if head is not None:  # from here the reader threads decode the rest, on both cores
            head.stop()
    except BaseException:
        if head is not None:
            head.close()
        raise

    def engine(paths: list[str]) -> Iterator[dict[str, Any]]:
        try:
            yield from caption_images(paths, captioner, options, batch_size=args.batch_size, workers=args.workers,
                                      head=head if paths == todo else None)
        finally:
            if head is not None:
                head.close()

    return engine, run_settings(captioner.name, captioner.version, captioner.decoding, options, captioner.precision)


def _run(records: Iterator[dict[str, Any]], total: int, outputs: list[RecordOutput | SidecarFiles], *,
         batch_size: int, tally: Counter[str], captions: Counter[str]) -> None:
    """Write records batch by batch as they come (sidecars first, the resumable file last),
    counting "captioned", "failed", "unsure", "unfamiliar" and "withheld" (captions under
    --min-confidence) in ``tally`` and each caption text in ``captions`` once written (kept when
    interrupted)."""
    buffer: list[dict[str, Any]] = []

    with tqdm(total=total, unit="img", desc=PROG, dynamic_ncols=True, file=sys.stderr) as bar:
        def flush() -> None:
            batch = buffer[:]
            buffer.clear()
            for out in outputs if batch else []:
                for note in out.write(batch) or []:
                    bar.write(f"{PROG}: {note}", file=sys.stderr)
            tally.update("captioned" if r["error"] is None else "failed" for r in batch)
            tally.update(_trust(r) for r in batch if r["error"] is None and r.get("confidence") is not None)
            tally.update("unfamiliar" for r in batch if r.get("unfamiliar"))
            tally.update("withheld" for r in batch if r["error"] is None and r["caption"] is None)
            captions.update(r["caption"] for r in batch if r["caption"] is not None)

        try:
            for record in records:
                if record["error"] is not None:
                    bar.write(f"{PROG}: {record['error']}", file=sys.stderr)
                buffer.append(record)
                bar.update()
                if len(buffer) >= batch_size:
                    flush()
        finally:  # also on Ctrl-C: keep every finished record
            flush()
            records.close()


def _trust(record: dict[str, Any]) -> str:
    return sure_word(record["confidence"], record.get("unfamiliar"))


def _trust_summary(tally: Counter[str], min_confidence: float) -> str:
    """" (3 unsure, 1 unfamiliar photo, 2 captions withheld under --min-confidence 0.4)", or "" when
    no caption had a confidence."""
    parts = []
    if tally["sure"] + tally["unsure"]:
        parts.append(f"{tally['unsure']:,} unsure")
    if tally["unfamiliar"]:
        parts.append(f"{tally['unfamiliar']:,} unfamiliar photo{'s' if tally['unfamiliar'] > 1 else ''}")
    if min_confidence > 0:
        parts.append(f"{tally['withheld']:,} caption{'' if tally['withheld'] == 1 else 's'} withheld under "
                     f"--min-confidence {min_confidence:g}")
    return f" ({', '.join(parts)})" if parts else ""


def _self_sidecars(paths: list[str], sidecars: Sidecars) -> list[str]:
    """Inputs whose sidecar would be the input itself (a file named explicitly with the sidecar extension)."""
    return [p for p in paths if path_key(sidecars.path_for(p)) == path_key(p)]


def _shared_sidecars(paths: list[str], sidecars: Sidecars, xmp: XmpSidecars) -> list[str]:
    """Text sidecars that would be some image's XMP sidecar (``--sidecar .xmp`` and ``a.jpg.png`` beside ``a.jpg``)."""
    xmp_files = {path_key(xmp.path_for(p)) for p in paths}
    return [str(sidecars.path_for(p)) for p in paths if path_key(sidecars.path_for(p)) in xmp_files]


def _collapse_warning(captions: Counter[str]) -> str | None:
    """"N of M photos share a caption with another photo" when N > 0."""
    shared = sum(n for n in captions.values() if n > 1)
    if not shared:
        return None
    return f"warning: {shared:,} of {sum(captions.values()):,} photos share a caption with another photo"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    options = _check(parser, args)
    listed = read_list(args.from_list) if args.from_list else []
    found = discover(args.inputs, listed=listed, recursive=args.recursive)
    for warning in found.warnings:
        print(f"{PROG}: {warning}", file=sys.stderr)
    if not found.paths:
        print(f"{PROG}: no images found in the given inputs", file=sys.stderr)
        return 2

    out_path = args.out if args.out is not None else (None if args.sidecar or args.xmp else "-")
    sidecars = Sidecars(args.sidecar, prefix=args.prefix, suffix=args.suffix) if args.sidecar else None
    if sidecars and (clash := _self_sidecars(found.paths, sidecars)):
        print(f"{PROG}: {clash[0]}: its --sidecar {sidecars.extension} file would be the input itself"
              f"{f' (and {len(clash) - 1} more)' if len(clash) > 1 else ''}; choose another extension", file=sys.stderr)
        return 2
    xmp = XmpSidecars() if args.xmp else None
    if sidecars and xmp and (clash := _shared_sidecars(found.paths, sidecars, xmp)):
        print(f"{PROG}: {clash[0]}: would be both a --sidecar {sidecars.extension} file and an --xmp file; choose "
              "another --sidecar extension", file=sys.stderr)
        return 2
    try:
        output = open_output(out_path, overwrite=args.overwrite) if out_path else None
    except (OutputError, OSError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    for note in output.notes if output else []:
        print(f"{PROG}: {note}", file=sys.stderr)
    try:
        return _caption_found(args, options, found.paths, output, [s for s in (sidecars, xmp) if s is not None])
    finally:
        if output is not None:
            output.close()


def _caption_found(args: argparse.Namespace, options: CaptionOptions, paths: list[str], output: RecordOutput | None,
                   sidecars: list[SidecarFiles]) -> int:
    """Caption what ``output`` (or the sidecars) does not hold yet; returns the exit status."""
    keys = {p: path_key(p) for p in paths}
    if not args.skip_existing or args.overwrite:
        done: set[str] = set()
    elif output is not None:
        done = output.done
    else:  # sidecars only: an image with all its sidecars is done
        done = {keys[p] for p in paths if all(s.done(p) for s in sidecars)}
    todo = [p for p in paths if keys[p] not in done]
    skipped = len(paths) - len(todo)

    start, tally, captions, status = time.perf_counter(), Counter[str](), Counter[str](), 0
    checked = output is not None and skipped > 0  # what is kept as done must be what this run would write
    try:
        engine, settings = _engine(args, options, todo) if todo or checked else (None, {})
        if checked:
            output.check(settings, done & set(keys.values()))
    except (BundleError, RuntimeError) as e:  # no/bad bundle, no CUDA, Ray missing or cluster unreachable
        print(f"{PROG}: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    try:
        if output is not None and (redo := (output.done | output.failed) & {keys[p] for p in todo}):
            output.forget(redo)  # this run's records replace theirs: one record per image
            print(f"{PROG}: replacing {len(redo)} earlier records (failed images tried again, or --no-skip-existing)",
                  file=sys.stderr)
        if todo:
            outputs = [*sidecars, *([output] if output is not None else [])]
            _run(engine(todo), len(todo), outputs, batch_size=args.batch_size, tally=tally, captions=captions)
    except OSError as e:
        print(f"{PROG}: cannot write output ({e})", file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        status = 130
    seconds, captioned, failed = time.perf_counter() - start, tally["captioned"], tally["failed"]
    rate = f" in {seconds:.1f} s ({(captioned + failed) / seconds:.1f} images/s)" if captioned + failed else ""
    print(f"{PROG}: captioned {captioned}{_trust_summary(tally, options.min_confidence)}, skipped {skipped} "
          f"(already done), failed {failed}{rate}", file=sys.stderr)
    if warning := _collapse_warning(captions):
        print(f"{PROG}: {warning}", file=sys.stderr)
    if status:
        return status
    return 1 if args.strict and failed else 0

