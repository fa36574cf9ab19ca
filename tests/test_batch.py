"""``squeezetime batch``: a corpus of generated demo videos (four containers, a corrupt and an empty file) through
the local pipeline and through Ray Data on a real two-node Ray cluster started here; resume, torn lines, signals."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from squeezetime.cli import main

ROOT = Path(__file__).resolve().parent.parent
BAD = ("corrupt.mp4", "empty.webm")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A directory tree of demo videos (one per class, mp4/avi/webm/mkv, half in a subdirectory), a corrupt
    and an empty video and a non-video file: (directory, {absolute path: true label or None for the bad})."""
    from squeezetime.cli.demo import write_demo_videos

    root = tmp_path_factory.mktemp("corpus")
    videos = write_demo_videos(str(root / "clips"), per_class=1)
    (root / "clips" / "more").mkdir()
    truth = {}
    for i, (path, label) in enumerate(videos):
        if i % 2:
            moved = root / "clips" / "more" / Path(path).name
            shutil.move(path, moved)
            path = str(moved)
        truth[path] = label
    good = Path(videos[0][0]).read_bytes()  # the first video stays at the top
    (root / "clips" / BAD[0]).write_bytes(good[:len(good) // 3])  # the header and a third of the frames
    (root / "clips" / BAD[1]).write_bytes(b"")
    (root / "clips" / "notes.txt").write_text("not a video")
    truth.update({str(root / "clips" / name): None for name in BAD})
    return root / "clips", truth


def read_lines(path: Path) -> list[dict]:
    """Every line parses: the file is valid JSON lines."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_same_top(actual, expected) -> None:
    """Same labels in the same order, probabilities within 1e-5."""
    assert [label for label, _ in actual] == [label for label, _ in expected]
    assert [p for _, p in actual] == pytest.approx([p for _, p in expected], abs=1e-5)


def batch(*args: str) -> int:
    return main(["batch", *args, "--demo", "--no-progress"])


@pytest.fixture(scope="module")
def local_run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "results.jsonl"
    assert batch(str(corpus[0]), "--out", str(out), "--workers", "2") == 1  # the bad videos fail
    return out


@pytest.mark.slow
def test_every_good_video_gets_its_label_and_each_bad_one_an_error_line(corpus, local_run):
    records = read_lines(local_run)
    by_path = {r["path"]: r for r in records}
    assert len(by_path) == len(records) == len(corpus[1])  # one line per video, the .txt file is not one
    for path, label in corpus[1].items():
        if label is None:
            assert by_path[path]["error"].startswith(f"{path}: ") and "top" not in by_path[path]
        else:
            assert by_path[path]["top"][0][0] == label and len(by_path[path]["top"]) == 5


@pytest.mark.slow
def test_same_numbers_as_predict(corpus, local_run):
    import squeezetime

    classifier = squeezetime.load(squeezetime.DEMO)
    by_path = {r["path"]: r for r in read_lines(local_run)}
    for path in [p for p, label in corpus[1].items() if label][:2]:
        expected = classifier.classify(path, views="1x1", topk=5)
        assert_same_top(by_path[path]["top"], expected)


def test_a_rerun_skips_every_video_already_in_the_file(corpus, local_run, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    shutil.copy(local_run, out)
    before = out.read_bytes()
    assert batch(str(corpus[0]), "--out", str(out)) == 1  # the earlier error lines still count
    assert out.read_bytes() == before
    err = capsys.readouterr().err
    assert "0 classified, 0 failed, 10 already done (2 of them errors)" in err
    assert all(f"error: {p}: " in err for p, label in corpus[1].items() if label is None)


@pytest.mark.slow
def test_a_torn_last_line_is_cut_off_and_that_video_redone(corpus, local_run, tmp_path):
    good = [p for p, label in corpus[1].items() if label]
    listing = tmp_path / "videos.txt"
    listing.write_text("# three of the corpus\n\n" + "\n".join(good[:3]) + "\n")
    first, second = [next(r for r in read_lines(local_run) if r["path"] == p) for p in good[:2]]
    out = tmp_path / "results.jsonl"
    torn = json.dumps(second)[:40]  # a run killed while writing the second line
    out.write_text(json.dumps(first) + "\n" + torn)
    assert batch(str(listing), "--out", str(out), "--workers", "1") == 0
    records = read_lines(out)
    assert [r["path"] for r in records[:1]] == good[:1] and sorted(r["path"] for r in records) == sorted(good[:3])
    assert all(r["top"][0][0] == corpus[1][r["path"]] for r in records)


def test_a_file_that_is_not_ours_is_refused_untouched(corpus, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    out.write_text('{"video": "a.mp4", "labels": []}\n')
    assert batch(str(corpus[0]), "--out", str(out)) == 2
    assert out.read_text() == '{"video": "a.mp4", "labels": []}\n'
    assert "not a squeezetime batch result line" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert batch(str(tmp_path / "missing"), "--out", str(tmp_path / "r.jsonl")) == 2
    assert batch(str(tmp_path / "empty"), "--out", str(tmp_path / "r.jsonl")) == 2
    err = capsys.readouterr().err
    assert "no such directory or file" in err and "no videos found" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["batch", str(tmp_path), "--out", str(tmp_path / "r.jsonl")])  # neither --checkpoint nor --demo
    assert exit_info.value.code == 2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_leaves_a_valid_file_and_the_rerun_finishes_it(corpus, tmp_path):
    """16 entries (symlinks to the 8 good videos), one network call per video; SIGTERM after the first line."""
    links = tmp_path / "links"
    links.mkdir()
    good = [p for p, label in corpus[1].items() if label]
    for i in range(16):
        (links / f"v{i:02d}{Path(good[i % 8]).suffix}").symlink_to(good[i % 8])
    out = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "squeezetime.cli", "batch", str(links), "--out", str(out), "--demo",
               "--workers", "1", "--batch-size", "1", "--no-progress"]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline and not (out.exists() and out.stat().st_size):
        time.sleep(0.05)
    # SIGTERM within ~0.05 s of the first line, while 15 videos (each a decode and a network call, 0.1 s or more)
    # remain: over 10x the margin the assertion "1 <= lines < 16" needs, on a loaded machine too
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    interrupted = read_lines(out)
    assert 1 <= len(interrupted) < 16 and "interrupted, rerun to resume" in err
    assert batch(str(links), "--out", str(out), "--workers", "1") == 0
    records = read_lines(out)
    assert records[:len(interrupted)] == interrupted
    assert sorted(r["path"] for r in records) == sorted(str(p) for p in links.iterdir())


# -- Ray: a real two-node cluster on this machine -------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'squeezetime[ray]')")
    from squeezetime.batch.ray_cluster import LocalRayCluster

    cluster = LocalRayCluster(nodes=2, cpus_per_node=1)
    try:
        cluster.start()
        yield cluster
    finally:
        assert cluster.stop() == [], "processes of the test's Ray cluster still running"


@pytest.mark.servers  # a real two-node Ray cluster (head and worker processes): about 27 s, not a unit test
@pytest.mark.timeout(400)
def test_ray_on_a_two_node_cluster_writes_the_same_lines(corpus, local_run, ray_cluster, tmp_path):
    out = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "squeezetime.cli", "batch", str(corpus[0]), "--out", str(out), "--demo",
               "--ray", ray_cluster.address, "--no-progress"]
    done = subprocess.run(command, cwd=tmp_path, env=ray_cluster.env, capture_output=True, text=True, timeout=360)
    assert done.returncode == 1, done.stderr  # the two bad videos
    expected = {r["path"]: r for r in read_lines(local_run)}
    actual = {r["path"]: r for r in read_lines(out)}
    assert actual.keys() == expected.keys() and len(read_lines(out)) == len(expected)
    for path, record in expected.items():
        if "error" in record:
            assert actual[path]["error"].startswith(f"{path}: ")
        else:
            assert_same_top(actual[path]["top"], record["top"])
    assert ray_nodes(ray_cluster) == 2  # one CPU each: the actor holds one, so decode tasks ran on the other


def ray_nodes(cluster) -> int:
    """Alive nodes of the cluster, asked by a separate driver."""
    code = ("import ray; ray.init(address=%r, logging_level='ERROR');"
            "print(sum(n['Alive'] for n in ray.nodes()))" % cluster.address)
    done = subprocess.run([sys.executable, "-c", code], env=cluster.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])
