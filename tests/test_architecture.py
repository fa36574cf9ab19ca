"""The layers of docs/architecture.md hold: a module imports only its own layer or lower ones, so the data
flows video -> clips -> tensor -> backend -> labels and the transports stay thin."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import architecture  # noqa: E402


def test_no_module_imports_a_higher_layer():
    assert architecture.violations() == []


def test_every_module_has_a_layer():
    unplaced = [architecture.module_name(p) for p in architecture.sources()
                if architecture.layer_of(architecture.module_name(p)) is None]
    assert unplaced == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The checker is not vacuous: a model module that imports the classifier is reported."""
    fake = architecture.PACKAGE / "models" / "_upward_probe.py"
    fake.write_text("from ..classifier import load\n")
    try:
        found = architecture.violations()
    finally:
        fake.unlink()
    assert found == ["squeezetime.models._upward_probe:1 imports squeezetime.classifier (models -> classifier)"]


def test_picture_is_drawn(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "architecture.py"), "--png", str(tmp_path / "a.png")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
