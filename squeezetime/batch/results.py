"""The results file: one JSON object per line and per video, appended as videos finish.

    {"path": "/data/a.mp4", "top": [["moving left", 0.97], ...]}
    {"path": "/data/b.mp4", "error": "/data/b.mp4: corrupt or truncated video (...)"}

Every line is written whole and flushed, so a killed run leaves at worst one torn last line; opening the file
again cuts it off, which keeps the file valid JSON lines and lets the rerun redo that video.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..prediction import Prediction
from ..errors import InputError


def prediction_record(path: str, top: Prediction) -> dict:
    return {"path": path, "top": [[label, float(p)] for label, p in top]}


def error_record(path: str, error: BaseException | str) -> dict:
    """``PATH: reason``, the path named once (decoding from bytes names the video ``<bytes>``)."""
    text = str(error)
    for prefix in (f"{path}: ", "<bytes>: "):
        text = text.removeprefix(prefix)
    return {"path": path, "error": f"{path}: {text}"}


@dataclass
class Summary:
    """What one run did, and what the file already held for the inputs it was given."""

    classified: int = 0
    failed: int = 0
    skipped: int = 0          # already in the file
    skipped_failed: int = 0   # of those, error lines
    interrupted: bool = False

    @property
    def any_failed(self) -> bool:
        return bool(self.failed or self.skipped_failed)

    def __str__(self) -> str:
        text = f"{self.classified} classified, {self.failed} failed"
        if self.skipped:
            text += f", {self.skipped} already done ({self.skipped_failed} of them errors)"
        return text + (" - interrupted, rerun to resume" if self.interrupted else "")


class ResultsFile:
    """Append-only JSON-lines results; ``done`` maps each path already in the file to its record."""

    def __init__(self, path: str):
        self.path = path
        self.done: dict[str, dict] = {}
        self._file = None
        if os.path.exists(path):
            self._read_existing()
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")

    def _read_existing(self) -> None:
        with open(self.path, "rb+") as f:
            data = f.read()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):  # a torn last line from an interrupted run: drop it, redo that video
                f.truncate(complete)
        for number, line in enumerate(data[:complete].decode("utf-8", "replace").splitlines(), 1):
            if line.strip():
                record = parse_line(line, self.path, number)
                self.done[record["path"]] = record

    def write(self, record: dict) -> None:
        """One whole line, flushed at once (a later crash cannot tear an earlier line)."""
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self.done[record["path"]] = record

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> "ResultsFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse_line(line: str, path: str, number: int) -> dict:
    """A result line, else ``InputError`` (the file is someone else's: refuse to append to it)."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not (isinstance(record, dict) and isinstance(record.get("path"), str)
            and ("top" in record or "error" in record)):
        raise InputError(f"{path}:{number}: not a squeezetime batch result line; choose another --out")
    return record
