"""TorchServe layer without a running server (request parsing, archive, config), plus the CLI lifecycle
(archive -> start -> status -> stop) and a start that fails with the worker's reason, on a real server."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from support.torchserve import require_torchserve

ROOT = Path(__file__).resolve().parent.parent


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_committed_entry_and_template_are_the_packaged_ones():
    from squeezetime.serving.torchserve.archive import entry_source
    from squeezetime.serving.torchserve.config import template_text

    assert (ROOT / "torchserve" / "handler.py").read_text() == entry_source()
    assert (ROOT / "torchserve" / "config.properties").read_text() == template_text()


def test_template_is_loopback_and_render_replaces_values():
    from squeezetime.serving.torchserve.config import render_config, template_text

    props = dict(line.split("=", 1) for line in template_text().splitlines() if "=" in line and line[0] != "#")
    for key in ("inference_address", "management_address", "metrics_address"):
        assert props[key].startswith("http://127.0.0.1:")
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"
    assert int(props["max_request_size"]) == 64 * 1024 * 1024
    assert props["disable_token_authorization"] == "true" and props["enable_model_api"] == "false"
    text = render_config({"max_request_size": 123, "new_key": "x"})
    assert "\nmax_request_size=123\n" in text and text.endswith("new_key=x\n")
    assert "# --- Token authorisation" in text


def test_parse_request_forms():
    import squeezetime
    from squeezetime.serving.torchserve.inputs import RequestError, parse_request as parse, split_request

    decoder = squeezetime.Classifier(None, squeezetime.DataConfig(), [f"c{i}" for i in range(8)])

    def parse_request(request, **kwargs):
        return parse(request, decoder, **kwargs)

    clips = np.zeros((2, 16, 224, 224, 3), np.uint8)
    parsed = parse_request({"body": npy(clips)}, headers={"X-SqueezeTime-Topk": "3"})
    assert parsed.kind == "clips" and parsed.clips.shape == (2, 16, 224, 224, 3) and parsed.topk == 3
    assert parse_request({"data": bytearray(npy(clips[0])), "topk": b"2"}).clips.shape == (1, 16, 224, 224, 3)
    payload, options = split_request({"body": {"clips": __import__("base64").b64encode(npy(clips)).decode(),
                                               "views": "10x3", "topk": 1}})
    assert payload == npy(clips) and options == {"views": "10x3", "topk": 1}
    assert split_request({"data": b"x", "options": b'{"topk": 4}'}) == (b"x", {"topk": 4})
    # KServe's v1 envelope: an instance arrives as decoded JSON, base64 video and numbers at the top level
    b64 = __import__("base64").b64encode(npy(clips)).decode()
    assert split_request({"video": b64, "topk": 2, "views": "1x1"}) == (npy(clips), {"topk": 2, "views": "1x1"})
    assert parse_request({"clips": b64, "topk": 2}).topk == 2
    with pytest.raises(RequestError, match="not valid base64"):
        split_request({"video": "not base64!"})
    for request, message in [({"body": b""}, "empty request body"), ({"body": {"topk": 1}}, "no video"),
                             ({"body": npy(clips.astype(np.int16))}, "uint8"),
                             ({"body": npy(np.zeros((16, 112, 112, 3), np.uint8))}, "clips must be 224x224"),
                             ({"body": npy(np.zeros((31, 16, 224, 224, 3), np.uint8))}, "1 to 30 clips"),
                             ({"body": npy(clips), "topk": "0"}, "topk must be"),
                             ({"body": npy(clips), "views": "5x5"}, "unknown views"),
                             ({"body": npy(clips), "options": b'{"colour": "red"}'}, "unknown option"),
                             ({"a": b"1", "b": b"2"}, "one video or clip array"),
                             ({"body": b"\x93NUMPY garbage"}, "not a readable .npy")]:
        with pytest.raises(RequestError, match=message):
            parse_request(request)


@pytest.mark.slow
def test_archive_contents(tmp_path, demo_model):
    require_torchserve()
    from squeezetime.serving.torchserve.archive import ArchiveOptions, archive_model_name, build_archive

    mar = build_archive(tmp_path, options=ArchiveOptions(model_name="st-demo", batch_size=3, max_batch_delay_ms=7))
    assert mar.name == "st-demo.mar" and archive_model_name(mar) == "st-demo"
    with zipfile.ZipFile(mar) as z:
        names = set(z.namelist())
        assert {"model.pth", "squeezetime_handler.py", "model-config.yaml", "index_to_name.json",
                "squeezetime_archive.json", "MAR-INF/MANIFEST.json"} <= names
        config = z.read("model-config.yaml").decode()
        assert "batchSize: 3" in config and "maxBatchDelay: 7" in config and "minWorkers: 1" in config
        assert list(json.loads(z.read("index_to_name.json")).values()) == demo_model.class_names
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
        assert manifest["model"]["handler"] == "squeezetime_handler.py"
        import squeezetime

        reloaded = squeezetime.load_checkpoint(z.read("model.pth"))
    assert reloaded.class_names == demo_model.class_names
    assert all((a == b).all() for a, b in zip(reloaded.state_dict().values(), demo_model.state_dict().values()))


def test_gpu_archive_config_asks_for_gpus_and_says_the_batches_are_buckets():
    import yaml

    from squeezetime.serving.torchserve.archive import ArchiveOptions, model_config_yaml

    text = model_config_yaml(ArchiveOptions(device="gpu", gpus=(0, 2), batch_size=8, max_clips_per_forward=32))
    config = yaml.safe_load(text)
    assert config["deviceType"] == "gpu" and config["deviceIds"] == [0, 2] and config["batchSize"] == 8
    assert config["handler"]["device"] == "gpu" and config["handler"]["max_clips_per_forward"] == 32
    assert config["handler"]["dtype"] is None  # the handler's default: float16 on the GPU
    assert "padded to a CUDA graph bucket" in text and "buckets up to 32 before READY" in text
    default = yaml.safe_load(model_config_yaml(ArchiveOptions()))
    assert "deviceType" not in default and default["handler"]["device"] == "auto"  # TorchServe's own choice
    cpu = yaml.safe_load(model_config_yaml(ArchiveOptions(device="cpu", dtype="bfloat16")))
    assert cpu["deviceType"] == "cpu" and "deviceIds" not in cpu and cpu["handler"]["dtype"] == "bfloat16"


@pytest.mark.parametrize("bad, message", [(dict(device="gpu", batch_size=3), "batch-size must be a CUDA graph bucket"),
                                          (dict(device="gpu", max_clips_per_forward=30), "max-clips-per-forward"),
                                          (dict(gpus=(1,)), "go with device 'gpu'"),
                                          (dict(device="tpu"), "device must be one of")])
def test_bad_device_options_are_refused_before_archiving(tmp_path, bad, message):
    import squeezetime
    from squeezetime.serving.torchserve.archive import ArchiveOptions, build_archive

    with pytest.raises(squeezetime.InputError, match=message):
        build_archive(tmp_path, options=ArchiveOptions(**bad))
    assert not list(tmp_path.iterdir())


def test_cli_gpu_options(tmp_path, capsys):
    from squeezetime.cli import main
    from squeezetime.serving.torchserve.config import gpu_config

    assert gpu_config(None) == {} and gpu_config(0) == {"number_of_gpu": 0}
    with pytest.raises(ValueError, match="number-of-gpu"):
        gpu_config(-1)
    assert main(["archive", "--demo", "--out", str(tmp_path), "--device", "gpu", "--max-clips-per-forward", "30"]) == 2
    assert "max-clips-per-forward must be a CUDA graph bucket" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["archive", "--demo", "--out", str(tmp_path), "--device", "gpu", "--gpus", "a,b"])


def cli(*args, timeout=300, env=None):
    return subprocess.run([sys.executable, "-m", "squeezetime.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.timeout(600)
def test_cli_archive_start_status_stop(tmp_path, demo_videos):
    require_torchserve()
    from squeezetime.serving.torchserve.client import RestClient
    from squeezetime.serving.torchserve.server import free_ports

    store, run = tmp_path / "store", tmp_path / "run"
    # deviceType cpu and number_of_gpu 0: TorchServe's frontend takes our GPU keys (a CPU worker either way here)
    done = cli("archive", "--demo", "--out", str(store), "--model-name", "motions", "--batch-size", "2",
               "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert (store / "motions.mar").exists()
    ports = free_ports()
    start = ["torchserve", "start", "--model-store", str(store), "--models", "motions=motions.mar",
             "--run-dir", str(run), "--inference-port", str(ports["inference"]),
             "--management-port", str(ports["management"]), "--metrics-port", str(ports["metrics"]),
             "--grpc-port", str(ports["grpc"]), "--grpc-management-port", str(ports["grpc_management"]),
             "--number-of-gpu", "0"]
    try:
        done = cli(*start)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "TorchServe ready: motions" in done.stdout
        status = cli("torchserve", "status", "--run-dir", str(run))
        assert json.loads(status.stdout)["models"] == {"motions": ["READY"]}
        again = cli(*start)
        assert again.returncode == 2 and "already running" in again.stderr
        path, truth = demo_videos[0]
        assert RestClient(f"http://127.0.0.1:{ports['inference']}", "motions").predict(path)[0]["label"] == truth
        pid = json.loads((run / "state.json").read_text())["pid"]
        assert "\nnumber_of_gpu=0\n" in (run / "config.properties").read_text()
        assert "Invalid device" not in (run / "logs" / "ts_log.log").read_text()
    finally:
        stopped = cli("torchserve", "stop", "--run-dir", str(run), timeout=120)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # launcher, Java and workers are all gone
    assert "not running" in cli("torchserve", "stop", "--run-dir", str(run)).stdout


@pytest.mark.timeout(300)
def test_start_fails_fast_with_the_workers_reason(tmp_path):
    """A .mar whose model file is not a checkpoint: start fails in bounded time, quoting the worker's log."""
    require_torchserve()
    from squeezetime.serving.torchserve import server
    from squeezetime.serving.torchserve.archive import ENTRY_FILE, entry_source

    stage, store = tmp_path / "stage", tmp_path / "store"
    stage.mkdir()
    store.mkdir()
    (stage / "model.pth").write_bytes(b"not a checkpoint")
    (stage / ENTRY_FILE).write_text(entry_source())
    subprocess.run([sys.executable, "-c", "import sys; from model_archiver.model_packaging import "
                    "generate_model_archive as g; sys.exit(g())", "--model-name", "broken", "--version", "1",
                    "--serialized-file", str(stage / "model.pth"), "--handler", str(stage / ENTRY_FILE),
                    "--export-path", str(store)], check=True, timeout=120)
    t0 = time.monotonic()
    with pytest.raises(server.TorchServeError) as err:
        server.start(store, run_dir=tmp_path / "run", ports=server.free_ports(), timeout=120)
    assert time.monotonic() - t0 < 100
    assert "CheckpointError" in str(err.value) or "checkpoint" in str(err.value).lower(), str(err.value)
    assert server.ServerInfo.load(tmp_path / "run") is None  # stopped and cleaned up


def test_the_archive_carries_the_whole_decode_budget_to_the_handler():
    import yaml

    from squeezetime.serving.requests import decode_budget
    from squeezetime.serving.torchserve.archive import ArchiveOptions, model_config_yaml
    from squeezetime.video import DecodeBudget

    budget = DecodeBudget(max_pixels=640 * 480, max_frames=5000, max_seconds=7.5, max_decoded_frames=1234,
                          max_duration=99.0, max_pixel_rate=5e7)
    handler = yaml.safe_load(model_config_yaml(ArchiveOptions(budget=budget)))["handler"]
    assert decode_budget(handler) == budget
