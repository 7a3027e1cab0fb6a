"""The encoder's inference backends (captioning.runtime): parity with torch, ``auto``'s fallback,
the graph cache (concurrent builders, a damaged file, a changed encoder) and the --backend flag."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from captioning import Captioner, load_bundle
from captioning import runtime as rt
from captioning.cli import main as caption_main
from captioning.runtime import RUNTIMES, BackendError, EncoderGraph


@pytest.fixture(scope="module")
def torch_captioner(tiny_bundle_dir) -> Captioner:
    return Captioner.load(tiny_bundle_dir, device="cpu", backend="torch")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_matches_torch(runtime, tiny_bundle_dir, torch_captioner, photo):
    """Grid, semantic vector and logits within tolerance of torch; the same greedy and beam captions."""
    cap = Captioner.load(tiny_bundle_dir, device="cpu", backend=runtime)
    assert cap.backend == runtime
    images = [photo, photo[::-1].copy(), photo[:, ::-1].copy()]
    got, want = cap.encode(images), torch_captioner.encode(images)
    for name in ("grid", "pooled", "logits"):
        assert getattr(got, name).shape == getattr(want, name).shape
        assert torch.allclose(getattr(got, name), getattr(want, name), atol=rt.PARITY_ATOL), name
    for method in ("greedy", "beam"):
        assert [r.text for r in cap.decode(got, method=method)] == [r.text for r in torch_captioner.decode(want, method=method)]
    assert [t.label for t in cap.tags(photo)] == [t.label for t in torch_captioner.tags(photo)]
    assert json.loads(EncoderGraph(cap.encoder, cap.preprocessing.size).record_path.read_text())["parity"][runtime] \
        <= rt.PARITY_ATOL


def test_auto_picks_the_fastest_runtime_and_builds_only_it_later(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv(rt.CACHE_ENV, str(tmp_path))
    built = []
    for name, make in list(rt._RUNTIMES.items()):
        monkeypatch.setitem(rt._RUNTIMES, name, lambda graph, threads, make=make, name=name: built.append(name)
                            or make(graph, threads))
    cap = Captioner(tiny_bundle, device="cpu", threads=1)
    graph = EncoderGraph(cap.encoder, cap.preprocessing.size)
    speeds = graph.record()["speed"]
    assert sorted(built) == sorted(RUNTIMES) and set(speeds) == {rt.speed_key(r, 1) for r in RUNTIMES}  # first use: all timed
    ranked = {r: speeds[rt.speed_key(r, 1)] * (rt.PREFERENCE if r == rt.PREFERRED_RUNTIME else 1) for r in RUNTIMES}
    assert cap.backend == max(RUNTIMES, key=ranked.get)
    slower = min(RUNTIMES, key=ranked.get)
    record = graph.record()
    record["speed"][rt.speed_key(slower, 1)] = 10 * max(speeds.values())  # as if measured faster on this machine
    graph._write_record(record)
    built.clear()
    assert Captioner(tiny_bundle, device="cpu", threads=1).backend == slower and built == [slower]


def test_auto_prefers_onnx_runtime_unless_another_times_twice_as_fast(tiny_bundle, tmp_path, monkeypatch):
    """The tools run the encoder beside other work, where ONNX Runtime's lanes kept up better than its
    speed alone says: another runtime has to time PREFERENCE times faster alone."""
    monkeypatch.setenv(rt.CACHE_ENV, str(tmp_path))
    cap = Captioner(tiny_bundle, device="cpu", threads=1)
    graph = EncoderGraph(cap.encoder, cap.preprocessing.size)
    other = next(r for r in RUNTIMES if r != rt.PREFERRED_RUNTIME)
    for factor, expected in ((1.5, rt.PREFERRED_RUNTIME), (2.5, other)):
        record = graph.record()
        record["speed"] = {rt.speed_key(rt.PREFERRED_RUNTIME, 1): 40.0, rt.speed_key(other, 1): 40.0 * factor}
        graph._write_record(record)
        assert Captioner(tiny_bundle, device="cpu", threads=1).backend == expected, factor


def _fail_import(monkeypatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError


def test_auto_falls_back_when_a_runtime_is_missing(monkeypatch, tiny_bundle_dir, caplog):
    _fail_import(monkeypatch, "openvino")
    assert Captioner.load(tiny_bundle_dir, device="cpu").backend == "onnxruntime"
    _fail_import(monkeypatch, "onnxruntime")
    with caplog.at_level(logging.WARNING, logger="captioning.runtime"):
        cap = Captioner.load(tiny_bundle_dir, device="cpu")
    assert cap.backend == "torch"
    lines = [r.getMessage() for r in caplog.records if r.name == "captioning.runtime" and "exporting" not in r.getMessage()]
    assert len(lines) == 1 and "openvino is not installed" in lines[0] and "onnxruntime is not installed" in lines[0]
    with pytest.raises(BackendError, match="openvino is not installed"):  # asked for by name: no fallback
        Captioner.load(tiny_bundle_dir, device="cpu", backend="openvino")


def test_auto_falls_back_when_compiling_fails(monkeypatch, tiny_bundle_dir, caplog):
    def broken(graph, threads):
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:\nno kernel for this op")

    monkeypatch.setitem(rt._RUNTIMES, "openvino", broken)
    monkeypatch.setitem(rt._RUNTIMES, "onnxruntime", broken)
    with caplog.at_level(logging.WARNING, logger="captioning.runtime"):
        assert Captioner.load(tiny_bundle_dir, device="cpu").backend == "torch"
    assert "openvino failed: RuntimeError: Exception from src/inference" in caplog.text
    with pytest.raises(BackendError, match="onnxruntime failed"):
        Captioner.load(tiny_bundle_dir, device="cpu", backend="onnxruntime")


def test_a_runtime_that_differs_from_torch_is_refused(monkeypatch, tiny_bundle, tmp_path):
    monkeypatch.setenv(rt.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(rt, "PARITY_ATOL", 0.0)
    real = rt._RUNTIMES["onnxruntime"]

    def off_by_one(graph, threads):
        run = real(graph, threads)
        return lambda pixels: rt.EncoderOutput(*(t + 1 for t in (lambda o: (o.grid, o.pooled, o.logits))(run(pixels))))

    monkeypatch.setitem(rt._RUNTIMES, "onnxruntime", off_by_one)
    with pytest.raises(BackendError, match="onnxruntime differs from torch by 1"):
        Captioner(tiny_bundle, device="cpu", backend="onnxruntime")
    with pytest.raises(BackendError, match="differs"):  # recorded: not measured again, still refused
        Captioner(tiny_bundle, device="cpu", backend="onnxruntime")


def test_a_damaged_graph_is_rebuilt(tiny_bundle, tmp_path, monkeypatch, photo):
    monkeypatch.setenv(rt.CACHE_ENV, str(tmp_path))
    graph = EncoderGraph(tiny_bundle.model.encoder, tiny_bundle.preprocessing.size)
    path = graph.ensure()
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    cap = Captioner(tiny_bundle, device="cpu", backend="onnxruntime")
    assert path.stat().st_size == size and graph.record()["sha256"] == rt._sha256(path)
    assert cap.caption(photo).text == Captioner(tiny_bundle, device="cpu", backend="torch").caption(photo).text


def test_a_changed_encoder_gets_its_own_graph(tiny_bundle_dir, photo):
    """A bundle whose encoder weights differ is never served another encoder's graph."""
    first, second = load_bundle(tiny_bundle_dir), load_bundle(tiny_bundle_dir)
    with torch.no_grad():
        second.model.encoder._fc.bias += 5.0
        second.model.encoder._conv_head.weight.mul_(1.5)
    size = first.preprocessing.size
    assert EncoderGraph(first.model.encoder, size).folder != EncoderGraph(second.model.encoder, size).folder
    changed = Captioner(second, device="cpu", backend="onnxruntime").encode([photo])
    want = Captioner(load_bundle(tiny_bundle_dir), device="cpu", backend="torch")
    with torch.no_grad():
        want.model.encoder._fc.bias += 5.0
        want.model.encoder._conv_head.weight.mul_(1.5)
    reference = want.encode([photo])
    assert torch.allclose(changed.logits, reference.logits, atol=rt.PARITY_ATOL)
    assert torch.allclose(changed.grid, reference.grid, atol=rt.PARITY_ATOL)


BUILD = """
import sys
import threading
from captioning import Captioner
cap = Captioner.load(sys.argv[1], device="cpu", backend="onnxruntime")
print(cap.backend)
"""


def test_processes_building_one_graph_at_once_both_succeed(tiny_bundle_dir, tmp_path):
    env = {**os.environ, rt.CACHE_ENV: str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, str(tiny_bundle_dir)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert [out.strip() for out, _ in outs] == ["onnxruntime", "onnxruntime"]
    folders = list((tmp_path / "encoders").iterdir())
    assert len(folders) == 1
    graph = folders[0] / "encoder.onnx"
    record = json.loads((folders[0] / "encoder.json").read_text())
    assert record["sha256"] == rt._sha256(graph) and "onnxruntime" in record["parity"]
    assert not [p for p in folders[0].iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind


def test_backend_flag(tiny_bundle_dir, photo, tmp_path, capsys):
    from PIL import Image

    path = tmp_path / "cat.jpg"
    Image.fromarray(photo).save(path)
    texts = {}
    for backend in ("torch", *RUNTIMES):
        assert caption_main([str(path), "--weights", str(tiny_bundle_dir), "--backend", backend, "--threads", "1",
                             "--json"]) == 0
        texts[backend] = json.loads(capsys.readouterr().out)["caption"]
    assert len(set(texts.values())) == 1, texts
    with pytest.raises(SystemExit):
        caption_main([str(path), "--weights", str(tiny_bundle_dir), "--backend", "tensorrt"])
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_nothing_is_exported_at_import(tmp_path):
    env = {**os.environ, rt.CACHE_ENV: str(tmp_path / "cache")}
    code = "import captioning, captioning.runtime, pipelines, pipelines.images, pipelines.video, app"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=Path(__file__).parents[1])
    assert not (tmp_path / "cache").exists()


def test_the_runtimes_split_a_batch_into_one_thread_lanes(tiny_bundle, monkeypatch, photo):
    """threads=N runs N single-threaded parts of a batch at once (no thread pool inside a runtime
    to spin or to wait on a core the beam search holds), with the same outputs as one call."""
    import onnxruntime as ort

    callers, intra = set(), []
    real = ort.InferenceSession

    class Spy:
        def __init__(self, path, options, **kw):
            intra.append(options.intra_op_num_threads)
            self.session = real(path, options, **kw)

        def run(self, *args):
            callers.add(threading.current_thread().name)
            return self.session.run(*args)

    monkeypatch.setattr(ort, "InferenceSession", Spy)
    cap = Captioner(tiny_bundle, device="cpu", backend="onnxruntime", threads=2)
    callers.clear()
    four = cap.encode([photo] * 4)
    assert intra == [1] and len(callers) == 2 and all(n.startswith("encoder-lane") for n in callers)
    want = Captioner(tiny_bundle, device="cpu", backend="torch").encode([photo] * 4)
    assert torch.allclose(four.grid, want.grid, atol=rt.PARITY_ATOL) and four.grid.shape == want.grid.shape


def test_a_lane_runs_its_part_a_few_images_at_a_time():
    """Each lane's part goes to the runtime in runs of at most ``rows`` images, the outputs in the
    batch's order whatever the runs."""
    sizes = []

    def run_part(lane, x):  # grid, pooled, logits that name their image
        sizes.append(len(x))
        ids = x[:, 0, 0, 0]  # (b,)
        return [ids[:, None, None] * np.ones((1, 2, 3), np.float32), ids[:, None] * 1.0, -ids[:, None]]

    for lanes, rows, want in ((2, 2, [2, 2, 1]), (1, 2, [2, 2, 1]), (2, 0, [3, 2]), (1, 0, [5])):
        sizes.clear()
        pixels = torch.arange(5.0)[:, None, None, None].expand(5, 3, 4, 4)  # (5, 3, 4, 4) image i is all i
        out = rt._in_lanes(run_part, lanes, rows)(pixels)
        assert sorted(sizes, reverse=True) == want, (lanes, rows, sizes)
        assert out.grid[:, 0, 0].tolist() == out.pooled[:, 0].tolist() == (-out.logits[:, 0]).tolist() == [0, 1, 2, 3, 4]


# -- precision bf16 ------------------------------------------------------------------------------
def test_bf16_runs_on_openvino_where_the_cpu_has_it(tiny_bundle_dir, torch_captioner, photo, caplog):
    """Where OpenVINO finds BF16 arithmetic, the encoder runs in it, its outputs pointing where torch's do
    (cosine, not values: BF16 keeps 8 bits of mantissa); elsewhere it runs in FP32 and says so once."""
    with caplog.at_level(logging.WARNING, logger="captioning.runtime"):
        cap = Captioner.load(tiny_bundle_dir, device="cpu", precision="bf16")
    assert cap.backend == "openvino" or rt.precision_here("bf16") == "fp32"
    assert cap.precision == rt.precision_here("bf16")
    if cap.precision == "fp32":
        assert "the encoder runs in FP32" in caplog.text
    images = [photo, photo[::-1].copy()]
    got, want = cap.encode(images), torch_captioner.encode(images)
    for name in ("grid", "pooled", "logits"):
        rows = torch.nn.functional.cosine_similarity(getattr(got, name).flatten(1), getattr(want, name).flatten(1))
        assert rows.min() > 1 - rt.BF16_PARITY, name


def test_bf16_decodes_in_bf16_too_and_fp32_stays_fp32(tiny_bundle_dir, photo):
    """--precision bf16 runs the decoder's matrix products in BF16 (torch autocast) wherever the encoder
    got BF16; scores stay float32 (log-softmax in float32), and an FP32 captioner never autocasts."""
    seen = []
    for precision in ("bf16", "fp32"):
        cap = Captioner.load(tiny_bundle_dir, device="cpu", precision=precision)
        handle = cap.model.decoder.out.register_forward_hook(lambda m, args, out: seen.append((precision, out.dtype)))
        try:
            for method in ("beam", "greedy"):
                r = cap.caption(photo, method=method)
                assert isinstance(r.score, float) and r.attention.dtype == np.float32
        finally:
            handle.remove()
        want = torch.bfloat16 if cap.precision == "bf16" else torch.float32
        assert {dtype for p, dtype in seen if p == precision} == {want}, precision


def test_bf16_without_the_arithmetic_or_openvino_runs_in_fp32(monkeypatch, tiny_bundle_dir, caplog):
    monkeypatch.setattr(rt, "precision_here", lambda precision: "fp32")  # a CPU without AVX-512 BF16 or AMX
    with caplog.at_level(logging.WARNING, logger="captioning.runtime"):
        cap = Captioner.load(tiny_bundle_dir, device="cpu", precision="bf16")
    assert cap.precision == "fp32" and cap.backend in RUNTIMES
    assert "OpenVINO finds no BF16 arithmetic on this CPU" in caplog.text
    caplog.clear()
    _fail_import(monkeypatch, "openvino")
    with caplog.at_level(logging.WARNING, logger="captioning.runtime"):
        cap = Captioner.load(tiny_bundle_dir, device="cpu", precision="bf16")
    assert (cap.backend, cap.precision) == ("onnxruntime", "fp32") and "OpenVINO is not installed" in caplog.text


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_bf16_on_another_backend_fails_loudly(tiny_bundle_dir, backend):
    with pytest.raises(BackendError, match="precision bf16 runs on OpenVINO"):
        Captioner.load(tiny_bundle_dir, device="cpu", backend=backend, precision="bf16")


def test_precision_flag(tiny_bundle_dir, photo, tmp_path, capsys):
    from PIL import Image

    path = tmp_path / "cat.jpg"
    Image.fromarray(photo).save(path)
    assert caption_main([str(path), "--weights", str(tiny_bundle_dir), "--precision", "bf16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["caption"]
    with pytest.raises(SystemExit):
        caption_main([str(path), "--weights", str(tiny_bundle_dir), "--precision", "fp16"])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        rt.RuntimeOptions(precision="int8")


def test_runs_record_their_precision_and_one_in_another_is_refused(tiny_bundle_dir, tmp_path, photo, capsys):
    """bf16 and fp32 captions differ, so a resume in the other precision is refused, naming it; records and
    run records made before --precision existed (none named) read as fp32."""
    from PIL import Image

    from captioning.decoding import Decoding
    from pipelines.images.cli import main as caption_images
    from pipelines.images.records import CaptionOptions, recorded_settings
    from pipelines.images.records import run_settings as image_settings
    from pipelines.video.export import OutputOptions
    from pipelines.video.options import TagOptions
    from pipelines.video.runs import run_settings as video_settings

    assert image_settings("m", "1.0.0", Decoding(), CaptionOptions(), "bf16")["options"]["precision"] == "bf16"
    assert video_settings("m", "1.0.0", Decoding(), TagOptions(), OutputOptions(), "bf16")["precision"] == "bf16"
    fp32 = image_settings("m", "1.0.0", Decoding(), CaptionOptions())
    older = {"format_version": 4, **fp32, "options": {k: v for k, v in fp32["options"].items() if k != "precision"}}
    assert recorded_settings(older) == fp32

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.jpg")
    out = tmp_path / "c.jsonl"
    run = ["--out", str(out), "--weights", str(tiny_bundle_dir), "--backend", "openvino"]
    records = out.read_text() if caption_images([str(folder), *run, "--precision", "bf16"]) == 0 else None
    got = json.loads(records.splitlines()[0])["options"]["precision"]
    assert got == rt.precision_here("bf16")
    capsys.readouterr()
    status = caption_images([str(folder), *run, "--precision", "fp32"])
    if got == "bf16":
        assert status == 2 and "options.precision 'bf16' (this run: 'fp32')" in capsys.readouterr().err
        assert out.read_text() == records  # nothing appended or changed
    else:  # no BF16 here: both ran in FP32, so the second run found the photo done
        assert status == 0
