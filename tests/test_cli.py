"""The command line, run as a user runs it (a subprocess)."""
import json
import subprocess

import pytest
import sys

from squeezetime.models.checkpoint import save_checkpoint


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "squeezetime.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_predict_good_and_bad_videos(demo_videos, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    (good, truth), (good2, truth2) = demo_videos[0], demo_videos[3]
    result = run_cli("predict", good, str(bad), good2, "--demo", "--topk", "2", "--json")
    assert result.returncode == 1  # one video failed
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["video"] for line in lines] == [good, good2]
    assert lines[0]["labels"][0]["label"] == truth and lines[1]["labels"][0]["label"] == truth2
    assert len(lines[0]["labels"]) == 2
    assert f"error: {bad}: " in result.stderr and "not a readable video" in result.stderr


@pytest.mark.slow
def test_predict_with_a_checkpoint_file(demo_model, demo_videos, tmp_path):
    path = tmp_path / "demo.pth"
    save_checkpoint(demo_model, path)
    result = run_cli("predict", demo_videos[2][0], "--checkpoint", str(path), "--topk", "1")
    assert result.returncode == 0, result.stderr
    assert demo_videos[2][1] in result.stdout


def test_bad_checkpoint_is_one_clear_line(tmp_path, demo_videos):
    path = tmp_path / "bad.pth"
    path.write_bytes(b"garbage")
    result = run_cli("predict", demo_videos[0][0], "--checkpoint", str(path))
    assert result.returncode != 0
    assert "not a readable PyTorch checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_path_is_named_once_in_an_error_line(tmp_path):
    missing = tmp_path / "absent.mp4"
    result = run_cli("predict", str(missing), "--demo")
    assert result.returncode == 1
    assert result.stderr.count(str(missing)) == 1 and f"error: {missing}: no such file" in result.stderr


@pytest.mark.slow
def test_exit_codes_are_one_rule(demo_videos, tmp_path):
    """0 all done, 1 some inputs failed, 2 usage or setup error: for every subcommand."""
    good = demo_videos[0][0]
    assert run_cli("predict", good, "--demo").returncode == 0
    no_model = run_cli("predict", good)  # no --checkpoint/--demo: a usage error, not a silent demo model
    assert no_model.returncode == 2 and "--checkpoint" in no_model.stderr
    assert run_cli("predict", good, "--demo", "--views", "3x3").returncode == 2
    bad_ckpt = tmp_path / "bad.pth"
    bad_ckpt.write_bytes(b"garbage")
    assert run_cli("predict", good, "--checkpoint", str(bad_ckpt)).returncode == 2
    assert run_cli("predict", good, "--demo", "--backend", "eager", "--topk", "0").returncode == 2
    assert run_cli("archive", "--demo", "--out", str(tmp_path), "--model-name", "bad name!").returncode == 2
    assert run_cli("triton-repo", "--demo", "--out", str(tmp_path / "r"), "--max-batch-size", "0").returncode == 2
    assert run_cli("torchserve", "stop", "--run-dir", str(tmp_path / "none")).returncode == 0  # nothing to stop


@pytest.mark.slow
def test_predict_backend_option(demo_videos):
    path, truth = demo_videos[1]
    eager = run_cli("predict", path, "--demo", "--backend", "eager", "--json", "--topk", "3")
    fast = run_cli("predict", path, "--demo", "--json", "--topk", "3")
    assert eager.returncode == fast.returncode == 0, eager.stderr + fast.stderr
    a, b = json.loads(eager.stdout)["labels"], json.loads(fast.stdout)["labels"]
    assert [x["label"] for x in a] == [x["label"] for x in b] and a[0]["label"] == truth
    assert all(abs(x["probability"] - y["probability"]) < 1e-4 for x, y in zip(a, b))
