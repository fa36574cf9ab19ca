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


def test_no_import_circle():
    assert architecture.circles() == []


def test_the_circle_checks_see_a_circle_and_a_private_import():
    """Not vacuous: two probe modules importing each other (one inside a function, as lazy imports do) are a
    circle, and one taking the other's ``_private`` name is reported."""
    first, second = (architecture.PACKAGE / "models" / f"_probe_{n}.py" for n in ("first", "second"))
    first.write_text("from ._probe_second import _hidden\n")
    second.write_text("def _hidden():\n    from . import _probe_first\n    return _probe_first\n")
    try:
        circles, private = architecture.circles(), architecture.private_imports()
    finally:
        first.unlink()
        second.unlink()
    assert ["squeezetime.models._probe_first", "squeezetime.models._probe_second"] in circles
    assert "squeezetime.models._probe_first:1 imports _hidden from squeezetime.models._probe_second" in private


def test_no_module_imports_a_private_name_of_another():
    assert architecture.private_imports() == []


def test_no_function_is_longer_than_80_lines():
    assert architecture.long_functions() == []


def test_picture_is_drawn(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "architecture.py"), "--png", str(tmp_path / "a.png")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
