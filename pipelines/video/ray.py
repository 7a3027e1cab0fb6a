"""``tag-video --engine ray``: videos spread over Ray actors, each loading the model once.

Each actor holds a :class:`captioning.Captioner` loaded from the bundle folder and runs
the same :func:`pipelines.video.job.process_video` as the local engine (tagging and writing
the output files), so results are identical; on a cluster the videos, the bundle and
``--out`` must be on a file system every node sees. Ray is imported only here.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Iterator

from captioning.config import RuntimeOptions

from .export import OutputOptions
from .job import describe_error, process_video
from .layout import Target
from .results import VideoTags
from .options import TagOptions


class _Worker:
    """One Ray actor: a Captioner loaded once, then any number of videos."""

    def __init__(self, bundle: str, runtime: RuntimeOptions):
        from captioning import Captioner  # imports torch: in the actor, not in the driver

        self.captioner = Captioner.load(bundle, **asdict(runtime))

    def run(self, path: str, target: Target | None, options: TagOptions, output: OutputOptions
            ) -> tuple[str, VideoTags | None, str | None]:
        try:
            return path, process_video(path, target, self.captioner, options, output), None
        except Exception as e:  # reported by the driver; the actor goes on with the next video
            return path, None, describe_error(path, e)


def tag_videos_ray(jobs: list[tuple[str, Target | None]], *, bundle: str, runtime: RuntimeOptions, options: TagOptions,
                   output: OutputOptions, address: str | None = None, actors: int | None = None,
                   cpus_per_worker: float = 1.0) -> Iterator[tuple[str, VideoTags | None, str | None]]:
    """Tag ``jobs`` (video path, its output folder or None) on Ray; yields (path, tags or None, error or None)
    as videos finish. Uses the running Ray if initialised, else ``ray.init(address)``."""
    import ray  # an optional extra: only --engine ray needs it
    from ray.util import ActorPool

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    if not jobs:
        return
    cpus = int(ray.cluster_resources().get("CPU", 1) // cpus_per_worker) or 1
    n = max(1, min(actors or cpus, len(jobs)))
    gpus = 1 if runtime.device.startswith("cuda") else 0
    runtime = replace(runtime, threads=runtime.threads or max(1, int(cpus_per_worker)))  # an actor's: its CPUs
    actor = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus)(_Worker)
    pool = ActorPool([actor.remote(bundle, runtime) for _ in range(n)])
    results: Iterator[Any] = pool.map_unordered(lambda a, job: a.run.remote(*job, options, output), jobs)
    yield from results
