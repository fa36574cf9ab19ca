"""The command line, run as a user runs it (a subprocess)."""
import json
import subprocess
import sys

from squeezetime.models.checkpoint import save_checkpoint


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "squeezetime.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


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
