"""``squeezetime quantize`` on the demo model and the generated demo videos: the artifact, its gate, loading it
(``squeezetime.load``, Triton's clip model, the TorchServe handler from a real .mar) and refusing bad files.

Stated int8 tolerance: agreement-based, not golden logits. int8 changes every logit by up to a few percent of
its range, so the check is the one the command's gate makes: top-1 agreement with float32 (>= 95 % of 64
generated held-out clips here; docs/quantize.md has the figure on 400) and the right class for every demo video.
One quantisation (a few minutes on a busy 2-core machine: ONNX export, conversion, NNCF) serves the
module: later runs hit the on-disk int8 cache.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import zipfile

import pytest

import squeezetime

pytest.importorskip("nncf", reason="quantize needs nncf: pip install 'squeezetime[int8]'")
pytest.importorskip("openvino", reason="the int8 backend needs openvino (requirements/main/engines.txt)")

from squeezetime.backends.int8 import META_FILE, XML_FILE, Int8ArtifactError, read_artifact  # noqa: E402

pytestmark = pytest.mark.slow  # calibrates and quantises with NNCF

HOLDOUT = 4


def cli(*argv) -> tuple[int, str, str]:
    from squeezetime.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """The ONNX export and the int8 IR are cached in a folder of this module's own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SQUEEZETIME_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def calibration_dir(demo_videos) -> str:
    return os.path.dirname(demo_videos[0][0])


@pytest.fixture(scope="module")
def quantized(calibration_dir, tmp_path_factory):
    """(exit status, stdout, stderr, artifact path) of one real run of the command."""
    out = tmp_path_factory.mktemp("int8") / "demo.int8.zip"
    status, stdout, stderr = cli("quantize", "--demo", "--calibration", calibration_dir, "--out", out,
                                 "--holdout", HOLDOUT)
    return status, stdout, stderr, out


def test_quantize_writes_an_artifact_with_its_gate_figures(quantized, demo_videos):
    status, stdout, stderr, out = quantized
    assert status == 0, stderr[-3000:]
    assert f"of {HOLDOUT} held-out clips (gate: >= 99.00 %)" in stdout
    assert f"accuracy on {HOLDOUT} labelled held-out videos" in stdout and f"wrote {out}" in stdout
    meta = read_artifact(out).meta
    gate = meta["gate"]
    assert gate["holdout_videos"] == HOLDOUT and gate["calibration_videos"] == len(demo_videos) - HOLDOUT
    assert gate["agreement"] >= 0.99 and not gate["forced"] and gate["int8_accuracy"] == 1.0
    assert meta["class_names"] == squeezetime.demo_model().class_names
    assert meta["source"]["checkpoint"] == "demo" and meta["versions"]["nncf"]


def test_load_serves_the_artifact_and_classifies_the_demo_videos(quantized, demo_videos):
    classifier = squeezetime.load(str(quantized[3]))
    assert classifier.backend.name == "int8" and classifier.data_config == squeezetime.demo_model().data_config
    results = classifier.classify_many([p for p, _ in demo_videos], topk=1)
    wrong = [(p, r[0][0]) for (p, truth), r in zip(demo_videos, results) if r[0][0] != truth]
    assert not wrong
    assert squeezetime.load(quantized[3].read_bytes()).backend.name == "int8"  # bytes work too


def test_int8_agrees_with_float32_on_held_out_clips(quantized):
    from squeezetime.synthetic.generator import make_dataset

    clips, _ = make_dataset(64, seed=10_123)  # not the videos it was calibrated on
    int8 = squeezetime.load(str(quantized[3])).infer(clips).logits
    fp32 = squeezetime.load("demo", backend="eager").infer(clips).logits
    agreement = float((int8.argmax(1) == fp32.argmax(1)).double().mean())
    assert agreement >= 0.95, agreement


def test_the_gate_refuses_and_force_overrides(quantized, calibration_dir, tmp_path):
    out = tmp_path / "refused.int8.zip"
    args = ["quantize", "--demo", "--calibration", calibration_dir, "--out", out, "--holdout", HOLDOUT,
            "--min-agreement", "1.01"]  # never reachable
    status, stdout, stderr = cli(*args)
    assert status == 1 and not out.exists()
    assert "below the gate of 101.00 %" in stderr and "not written (--force writes it anyway)" in stderr
    assert "top-1 agreement int8 vs float32" in stdout  # the figures are still reported
    status, stdout, stderr = cli(*args, "--force")
    assert status == 0 and out.exists() and "(forced: below the gate)" in stdout
    assert read_artifact(out).meta["gate"]["forced"] is True


def test_usage_errors_are_exit_2(tmp_path, demo_videos):
    (tmp_path / "one").mkdir()
    shutil.copy(demo_videos[0][0], tmp_path / "one")
    status, _, stderr = cli("quantize", "--demo", "--calibration", tmp_path / "one", "--out", tmp_path / "x.int8.zip")
    assert status == 2 and "need at least 2 videos" in stderr
    status, _, stderr = cli("quantize", "--demo", "--calibration", tmp_path / "nowhere", "--out", tmp_path / "x")
    assert status == 2 and "not a directory of videos" in stderr


class Metrics:
    """What BaseHandler.handle records (TorchServe's metric cache needs a running frontend)."""

    def add_time(self, *args, **kwargs):
        pass

    def add_metric(self, *args, **kwargs):
        pass


def _rewrite(src, dst, change):
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    change(members)
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return dst


def test_corrupt_or_foreign_artifacts_get_a_clear_error(quantized, tmp_path):
    good = quantized[3]
    truncated = tmp_path / "truncated.int8.zip"
    truncated.write_bytes(good.read_bytes()[:4000])
    meta = read_artifact(good).meta

    def newer(m):
        m[META_FILE] = json.dumps({**meta, "format_version": 99}).encode()

    def foreign(m):
        m[META_FILE] = b'{"format": "something-else"}'

    def broken_ir(m):
        m[XML_FILE] = b"<net><layers>"

    cases = {truncated: "unreadable int8 artifact",
             _rewrite(good, tmp_path / "newer.zip", newer): "newer than this squeezetime reads",
             _rewrite(good, tmp_path / "foreign.zip", foreign): "not a squeezetime int8 artifact",
             _rewrite(good, tmp_path / "ir.zip", broken_ir): "OpenVINO IR is unreadable"}
    for path, message in cases.items():
        with pytest.raises(Int8ArtifactError, match=message):
            squeezetime.load(str(path))
    assert issubclass(Int8ArtifactError, squeezetime.CheckpointError)
    status, _, stderr = cli("predict", "--checkpoint", truncated, str(good))
    assert status == 2 and "unreadable int8 artifact" in stderr
    with pytest.raises(squeezetime.SqueezeTimeError, match="int8 backend, not 'eager'"):
        squeezetime.load(str(good), backend="eager")
    with pytest.raises(squeezetime.SqueezeTimeError, match="serves an artifact of `squeezetime quantize`"):
        squeezetime.load("demo", backend="int8")


def test_triton_repository_serves_the_artifact(quantized, tmp_path, demo_videos):
    from google.protobuf.json_format import MessageToDict

    from squeezetime.serving.triton import parse_config, write_repository
    from squeezetime.serving.triton.clip_model import ClipModel

    repo = write_repository(tmp_path / "repo", checkpoint=quantized[3])
    version = repo / "squeezetime" / "1"
    assert (version / "model.int8.zip").read_bytes() == quantized[3].read_bytes()
    assert not (version / "model.pth").exists()
    config = parse_config(repo / "squeezetime" / "config.pbtxt")
    assert config.parameters["checkpoint"].string_value == "model.int8.zip"
    model = ClipModel()  # the clip model's own initialize, in this process (no server)
    model.initialize({"model_config": json.dumps(MessageToDict(config, preserving_proto_field_name=True)),
                      "model_repository": str(repo / "squeezetime"), "model_version": "1",
                      "model_name": "squeezetime"})
    assert model.classifier.backend.name == "int8"
    path, truth = demo_videos[5]
    assert model.classifier.classify(path, topk=1)[0][0] == truth


def test_torchserve_archive_serves_the_artifact(quantized, tmp_path, demo_videos):
    from support.torchserve import require_torchserve

    require_torchserve()
    from ts.context import Context, RequestProcessor

    from squeezetime.serving.torchserve.archive import build_archive
    from squeezetime.serving.torchserve.handler import SqueezeTimeHandler

    mar = build_archive(tmp_path / "store", checkpoint=quantized[3])
    model_dir = tmp_path / "model"
    with zipfile.ZipFile(mar) as z:
        z.extractall(model_dir)
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
    assert manifest["model"]["serializedFile"] == "model.int8.zip"
    context = Context("squeezetime", str(model_dir), manifest, batch_size=1, gpu=None, mms_version="0.12",
                      metrics=Metrics(), model_yaml_config={})
    context.request_processor = [RequestProcessor({})]
    handler = SqueezeTimeHandler()
    handler.initialize(context)
    assert handler.classifier.backend.name == "int8"
    path, truth = demo_videos[3]
    out = handler.handle([{"body": open(path, "rb").read()}], context)
    assert json.loads(out[0])[0]["label"] == truth


def test_a_checkpoint_is_not_taken_for_an_artifact(tmp_path):
    from squeezetime.backends.int8 import is_int8_artifact

    squeezetime.save_checkpoint(squeezetime.demo_model(), tmp_path / "model.pth")  # a zip too
    assert not is_int8_artifact(tmp_path / "model.pth")
    assert squeezetime.load(str(tmp_path / "model.pth"), backend="eager").backend.name == "eager"


def test_a_real_tritonserver_serves_the_artifact(quantized, tmp_path, demo_videos):
    """The one real-server check: tritonserver's python backend (its own venv) loads the artifact."""
    from support.triton import require_tritonserver, running

    require_tritonserver()
    from squeezetime.serving.triton import RepoOptions, TritonServer, write_repository
    from squeezetime.triton import TritonClient

    repo = write_repository(tmp_path / "repo", checkpoint=quantized[3],
                            options=RepoOptions(video_instances=1, num_threads=2))
    with running(TritonServer(repo, start_timeout=240)) as server, \
            TritonClient(server.grpc_url, timeout=120) as client:
        for path, truth in demo_videos[:2]:
            assert client.classify(path, topk=1)[0][0] == truth
