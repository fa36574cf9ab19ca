"""Post-training static int8 quantisation with an accuracy gate (``squeezetime quantize``).

    report = quantize(model, "my_videos/", "model.int8.zip")       # QuantizeError below the gate
    squeezetime.load("model.int8.zip").classify("video.mp4")        # served by the int8 backend

1. The videos of the calibration folder are split by video (seeded): ``holdout`` videos for the gate, the rest
   for calibration, so no held-out clip was seen by the calibration. Their clips come from
   ``Classifier.clips`` (the views, frames and crops every other path uses).
2. The network is exported to ONNX (``squeezetime.export.onnx``: uint8 clip in, normalisation in the graph;
   the ``onnxruntime`` backend's cached file), converted to OpenVINO and quantised by NNCF (``nncf.quantize``,
   preset ``mixed``: int8 weights per channel, asymmetric int8 activations from statistics of the calibration
   clips, fast bias correction).
3. Gate: the int8 network (read back from the bytes that will be written) and our float32 network score the
   held-out clips; the figure is their top-1 agreement per clip, plus per-video accuracy when the videos'
   labels are known. Below ``min_agreement`` nothing is written unless ``force``.

Why OpenVINO/NNCF rather than PyTorch PT2E: torchao 0.18's ``X86InductorQuantizer`` (PT2E left torch.ao in
torch 2.13) cannot annotate this graph (``Input partition has more than one output node``) and its int8 kernels
need ``torch.compile`` at every load; see docs/quantize.md for the figures.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .backends.int8 import SUFFIX, Int8Artifact, Int8Backend, write_artifact
from .classifier import Classifier, label_names, load
from .errors import InputError, SqueezeTimeError

DEFAULT_MIN_AGREEMENT = 0.99
HOLDOUT_SEED = 0
VIDEO_SUFFIXES = {".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".gif"}


class QuantizeError(SqueezeTimeError, RuntimeError):
    """Quantisation could not run (no usable videos, engine missing) or the result failed the gate."""


class GateError(QuantizeError):
    """The int8 network agrees with float32 on fewer held-out clips than asked; carries the report."""

    def __init__(self, message: str, report: "QuantizeReport"):
        super().__init__(message)
        self.report = report


@dataclass
class QuantizeReport:
    agreement: float                   # top-1 agreement with float32, per held-out clip
    holdout_clips: int
    holdout_videos: int
    calibration_clips: int
    calibration_videos: int
    min_agreement: float
    fp32_accuracy: float | None = None  # per held-out video with a known label (mean over its views)
    int8_accuracy: float | None = None
    labelled_videos: int = 0
    failed_videos: list[str] = field(default_factory=list)
    written: str | None = None
    forced: bool = False

    @property
    def passed(self) -> bool:
        return self.agreement >= self.min_agreement

    def lines(self) -> list[str]:
        out = [f"calibration: {self.calibration_clips} clips of {self.calibration_videos} videos; held out: "
               f"{self.holdout_clips} clips of {self.holdout_videos} videos",
               f"top-1 agreement int8 vs float32: {100 * self.agreement:.2f} % of {self.holdout_clips} held-out clips "
               f"(gate: >= {100 * self.min_agreement:.2f} %)"]
        if self.fp32_accuracy is not None:
            out.append(f"accuracy on {self.labelled_videos} labelled held-out videos: float32 "
                       f"{100 * self.fp32_accuracy:.2f} %, int8 {100 * self.int8_accuracy:.2f} %")
        return out


# -- videos and their labels --------------------------------------------------------------------------------------
def find_videos(directory: str | os.PathLike) -> list[Path]:
    """Video files under ``directory`` (recursive, by suffix, sorted; hidden files skipped)."""
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"{directory}: not a directory of videos")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


def known_label(path: Path, class_names: list[str]) -> str | None:
    """The class a video shows, when its folder (``DIR/<class>/x.mp4``, Kinetics' layout) or its name
    (``<class>_<n>.mp4``, the demo videos) names one; spaces, '_' and '-' match each other."""
    by_key = {_key(n): n for n in class_names}
    stem = re.sub(r"[_\-\s]*\d+$", "", path.stem)
    for candidate in (path.parent.name, stem):
        if _key(candidate) in by_key:
            return by_key[_key(candidate)]
    return None


def split_holdout(videos: list[Path], holdout: int | None) -> tuple[list[Path], list[Path]]:
    """(calibration, held out): a seeded shuffle, ``holdout`` videos (default a fifth, at least one) held out."""
    if len(videos) < 2:
        raise InputError(f"need at least 2 videos (calibration and held out), found {len(videos)}")
    count = max(1, round(len(videos) / 5)) if holdout is None else holdout
    if not 1 <= count < len(videos):
        raise InputError(f"--holdout must be in 1..{len(videos) - 1} for {len(videos)} videos, got {count}")
    order = list(videos)
    random.Random(HOLDOUT_SEED).shuffle(order)
    return sorted(order[count:]), sorted(order[:count])


def gather_clips(classifier: Classifier, videos: list[Path], views: str | None, desc: str,
                 failed: list[str]) -> tuple[list[np.ndarray], list[Path]]:
    """Clips of each video that decodes (``failed`` collects ``path: reason`` of the others)."""
    from tqdm import tqdm

    clips, used = [], []
    for path in tqdm(videos, desc=desc, unit="video", file=sys.stderr, leave=False):
        try:
            clips.append(classifier.clips(str(path), views))
            used.append(path)
        except SqueezeTimeError as e:
            failed.append(f"{path}: {e}")
    return clips, used


# -- the engine ---------------------------------------------------------------------------------------------------
def _import_engine():
    try:
        import nncf
        import openvino as ov
    except ImportError as e:
        raise QuantizeError(f"quantize needs nncf and openvino (pip install 'squeezetime[int8]'): {e}") from e
    return ov, nncf


def quantize_ir(model, calibration: np.ndarray, image_size: int, preset: str = "mixed") -> tuple[bytes, bytes]:
    """float32 network -> int8 OpenVINO IR (xml, bin) calibrated on uint8 clips (N, T, H, W, 3).

    Cached on disk (``engine_cache``, kind ``int8``) by weights, calibration clips and versions: running the
    command again with another gate or ``--force`` does not quantise again. The ONNX export is the one the
    ``onnxruntime`` and ``openvino`` backends cache. ``preset``: NNCF's ``mixed`` (default: symmetric weights,
    asymmetric activations, which this network's signed, gated activations want: 99.25 % top-1 agreement on 400
    held-out demo clips against 98.75 % for the all-symmetric ``performance``) or ``performance``."""
    from .backends import engine_cache
    from .backends.onnxruntime import onnx_file

    ov, nncf = _import_engine()
    clips = hashlib.blake2b(np.ascontiguousarray(calibration).tobytes(), digest_size=16).hexdigest()
    key = engine_cache.cache_key(model, model.data_config.mean, model.data_config.std, image_size,
                                 openvino=ov.__version__, nncf=nncf.__version__, calibration=clips, preset=preset)

    def write(folder: Path) -> None:
        onnx_path, _ = onnx_file(model, image_size)
        dataset = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])
        int8 = nncf.quantize(ov.convert_model(onnx_path), dataset, subset_size=len(calibration),
                             preset=nncf.QuantizationPreset(preset))
        ov.save_model(int8, folder / "model.xml", compress_to_fp16=False)

    xml, _ = engine_cache.cached("int8", key, "model.xml", write)
    return xml.read_bytes(), xml.with_suffix(".bin").read_bytes()


def int8_peer(model, threads: int, calibration_clips: int = 16):
    """``squeezetime bench --peers`` row "ours int8": ``model`` quantised on generated demo clips at its crop (no
    gate: for speed only; cached like any quantisation) -> callable uint8 clips (N, T, H, W, 3) -> logits."""
    from .synthetic.generator import make_dataset

    size = model.data_config.view(model.data_config.default_views).crop_size
    calibration, _ = make_dataset(calibration_clips, seed=20_000, num_frames=model.num_frames, size=size)
    xml, weights = quantize_ir(model, calibration, size)
    return Int8Backend(Int8Artifact({}, xml, weights), threads).logits


# -- the gate -----------------------------------------------------------------------------------------------------
def _top1(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(dim=1)


def _video_accuracy(probs: torch.Tensor, counts: list[int], truths: list[str | None], names: list[str]):
    hits = [names[int(p.mean(0).argmax())] == t for p, t in zip(torch.split(probs, counts), truths) if t is not None]
    return (sum(hits) / len(hits), len(hits)) if hits else (None, 0)


def gate(fp32: Classifier, int8: Int8Backend, clips: list[np.ndarray], truths: list[str | None],
         batch_size: int = 8) -> dict:
    """Agreement and accuracies of the int8 backend against ``fp32`` on held-out clips (a list per video)."""
    from tqdm import tqdm

    everything = torch.from_numpy(np.concatenate(clips))
    fp32_logits, int8_logits = [], []
    for i in tqdm(range(0, len(everything), batch_size), desc="gate", unit="batch", file=sys.stderr, leave=False):
        batch = everything[i:i + batch_size]
        fp32_logits.append(fp32.infer(batch).logits)
        int8_logits.append(int8.logits(batch))
    a, b = torch.cat(fp32_logits), torch.cat(int8_logits)
    counts = [len(c) for c in clips]
    fp32_acc, labelled = _video_accuracy(a.softmax(1), counts, truths, fp32.class_names)
    int8_acc, _ = _video_accuracy(b.softmax(1), counts, truths, fp32.class_names)
    return dict(agreement=float((_top1(a) == _top1(b)).double().mean()), fp32_accuracy=fp32_acc,
                int8_accuracy=int8_acc, labelled_videos=labelled)


def _source_info(model, checkpoint) -> dict:
    info = {"checkpoint": os.path.basename(os.fspath(checkpoint)) if checkpoint else "demo",
            "model_config": model.config}
    if checkpoint and os.path.isfile(checkpoint):
        with open(checkpoint, "rb") as f:
            info["sha256"] = hashlib.file_digest(f, "sha256").hexdigest()
    return info


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"torch": torch.__version__}
    for name in ("squeezetime", "openvino", "nncf"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def quantize(model, calibration_dir: str | os.PathLike, out: str | os.PathLike, *, views: str | None = None,
             holdout: int | None = None, min_agreement: float = DEFAULT_MIN_AGREEMENT, force: bool = False,
             checkpoint: str | os.PathLike | None = None, batch_size: int = 8) -> QuantizeReport:
    """Quantise ``model`` (a SqueezeTime with a head) on the videos of ``calibration_dir``; write ``out`` when the
    gate passes (or ``force``). Returns the report; raises ``GateError`` (report attached) below the gate."""
    if not min_agreement >= 0.0:
        raise InputError(f"min_agreement must be a fraction >= 0, got {min_agreement}")
    if model.cls_head is None:
        raise InputError("a backbone-only model (no classification head) cannot be quantised as a classifier")
    _import_engine()  # before any decoding
    fp32 = load(model, batch_size=batch_size)  # the float32 reference: the package's default backend
    names, config = label_names(model), fp32.data_config
    config.view(views)  # an unknown view is an InputError before any work
    calibration_videos, holdout_videos = split_holdout(find_videos(calibration_dir), holdout)
    failed: list[str] = []
    calib, calib_used = gather_clips(fp32, calibration_videos, views, "calibration clips", failed)
    held, held_used = gather_clips(fp32, holdout_videos, views, "held-out clips", failed)
    if not calib or not held:
        raise QuantizeError(f"no decodable {'calibration' if not calib else 'held-out'} video "
                            f"({len(failed)} failed: {'; '.join(failed[:3])})")
    image_size = config.view(views).crop_size
    xml, weights = quantize_ir(model, np.concatenate(calib), image_size)
    int8 = Int8Backend(Int8Artifact({}, xml, weights), torch.get_num_threads())
    figures = gate(fp32, int8, held, [known_label(p, names) for p in held_used], batch_size)
    report = QuantizeReport(holdout_clips=sum(len(c) for c in held), holdout_videos=len(held_used),
                            calibration_clips=sum(len(c) for c in calib), calibration_videos=len(calib_used),
                            min_agreement=min_agreement, failed_videos=failed, forced=force, **figures)
    if not report.passed and not force:
        raise GateError(f"top-1 agreement with float32 is {100 * report.agreement:.2f} %, below the gate of "
                        f"{100 * min_agreement:.2f} %: {out} not written (--force writes it anyway)", report)
    meta = {"class_names": names, "data_config": config.to_dict(), "image_size": image_size,
            "input": "CLIP uint8 (N, T, H, W, 3)", "output": "LOGITS float32 (N, classes)",
            "source": _source_info(model, checkpoint), "fp32_reference": {"backend": fp32.backend.name},
            "gate": {k: v for k, v in asdict(report).items() if k not in ("failed_videos", "written")},
            "calibration": {"views": views or config.default_views, "videos": len(calib_used)},
            "versions": _versions()}
    report.written = write_artifact(out, meta, xml, weights)
    return report


__all__ = ["DEFAULT_MIN_AGREEMENT", "GateError", "QuantizeError", "QuantizeReport", "SUFFIX", "find_videos", "gate",
           "int8_peer", "known_label", "quantize", "quantize_ir", "split_holdout"]
