"""Official-checkpoint loading: safe unpickling, key normalisation, architecture inference, strict checks.

A checkpoint is untrusted input. Files are read with ``torch.load(weights_only=True)``; globals that
mmengine files carry in their metadata (``HistoryBuffer``, ``ConfigDict``, numpy scalars...) are
replaced by inert placeholders that only record their arguments, so nothing named in the file runs.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import replace
from typing import BinaryIO, Mapping

import torch

from ..data_config import DataConfig
from ..errors import CheckpointError
from .registry import CONFIGS, ModelConfig, build
from .squeezetime import DEPTHS, SqueezeTime

PathOrFile = str | os.PathLike | BinaryIO | bytes
BACKBONE = "backbone.net."
HEAD = "cls_head."
MAX_GLOBAL_ROUNDS = 64
_UNSUPPORTED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unrecognized global) ([\w.]+)")


class OpaqueObject:
    """Stands in for any class or function named in a checkpoint's pickle that is not a tensor type.

    It never runs the original code: it keeps the arguments it was called with and its pickled state.
    """

    qualified_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<opaque {self.qualified_name}>"


# Containers a pickled subclass turns into: the safe unpickler only fills exact dicts and lists.
_CONTAINERS = {"object": None, "dict": dict, "list": list}
_CONTAINER_ERROR = re.compile(r"Can only (?:SETITEMS?|append|extend)[^<]*<class 'squeezetime\.placeholder\.([^']+)'>")


def _placeholder(qualified_name: str, kind: str = "object") -> tuple[type, str]:
    namespace = {"qualified_name": qualified_name, "__module__": "squeezetime.placeholder",
                 "__qualname__": qualified_name}
    container = _CONTAINERS[kind]
    if container is not None:  # a dict/list subclass (ConfigDict...): becomes the plain container
        namespace["__new__"] = lambda cls, *args, **kwargs: container()
    return type(qualified_name.rsplit(".", 1)[-1], (OpaqueObject,), namespace), qualified_name


def _as_buffer(source: PathOrFile) -> io.BytesIO:
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                return io.BytesIO(f.read())
        except OSError as e:
            raise CheckpointError(f"cannot read checkpoint {os.fspath(source)!r}: {e.strerror}") from e
    return io.BytesIO(source.read())


def safe_load(source: PathOrFile, map_location="cpu"):
    """``torch.load(weights_only=True)`` that tolerates (and neutralises) foreign pickled classes.

    Foreign globals are learnt from the file (or from the loader's refusals, for legacy files) and
    replaced by placeholders; a placeholder that the file fills like a dict or list becomes one.
    """
    data = _as_buffer(source)
    kinds: dict[str, str] = {}
    try:
        kinds = {name: "object" for name in torch.serialization.get_unsafe_globals_in_checkpoint(data)}
    except Exception:  # legacy (non-zip) files: learn the names from the loader's refusals below
        pass
    for _ in range(MAX_GLOBAL_ROUNDS):
        data.seek(0)
        try:
            with torch.serialization.safe_globals([_placeholder(n, k) for n, k in kinds.items()]):
                return torch.load(data, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises several types for a bad file
            if (match := _UNSUPPORTED_GLOBAL.search(str(e))) and match.group(1) not in kinds:
                kinds[match.group(1)] = "object"
                continue
            if (match := _CONTAINER_ERROR.search(str(e))) and kinds.get(match.group(1)) == "object":
                kinds[match.group(1)] = "list" if "append" in match.group(0) or "extend" in match.group(0) else "dict"
                continue
            raise CheckpointError(f"not a readable PyTorch checkpoint: {_first_line(e)}") from e
    raise CheckpointError("checkpoint references too many foreign classes to be a model checkpoint")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def extract_state_dict(obj) -> tuple[dict[str, torch.Tensor], dict]:
    """Unwrap {"state_dict"}/{"model"} containers and strip ``module.`` prefixes; return (state, meta)."""
    meta = obj.get("meta") if isinstance(obj, Mapping) and isinstance(obj.get("meta"), Mapping) else {}
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError("file holds no state_dict (expected a dict of tensors, or one under "
                              "'state_dict' or 'model')")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"state_dict has {len(bad)} non-tensor entries: {_name_some(bad)}")
    state = {}
    for key, value in obj.items():
        while key.startswith("module."):
            key = key[len("module."):]
        if key.startswith("net."):  # ImageNet-pretrained backbone file
            key = "backbone." + key
        state[key] = value
    if not any(k.startswith(BACKBONE) for k in state):
        raise CheckpointError(f"no SqueezeTime backbone keys ('{BACKBONE}*' or 'net.*') among "
                              f"{len(state)} keys, e.g. {_name_some(list(state))}")
    return state, dict(meta)


def _name_some(keys: list, limit: int = 5) -> str:
    keys = [str(k) for k in keys]
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _stage_blocks(state: Mapping[str, torch.Tensor], stage: int) -> int:
    pattern = re.compile(rf"^{re.escape(BACKBONE)}layer{stage}\.(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def infer_config(state: Mapping[str, torch.Tensor], arch: str | None = None) -> ModelConfig:
    """Read depth, width, frames, strides, pos_dim and classes from key names and shapes."""
    try:
        stem = state[BACKBONE + "conv1.weight"]
        bottleneck = f"{BACKBONE}layer1.0.conv3.weight" in state
        layers = tuple(_stage_blocks(state, s) for s in (1, 2, 3, 4))
        depth = next(d for d, (block, n) in DEPTHS.items()
                     if n == layers and (block.expansion == 4) == bottleneck)
        pos_dim = tuple(int(state[f"{BACKBONE}layer{s}.0.conv2.spatial_conv.pos_embed"].shape[-1])
                        for s in (1, 2, 3, 4))
    except (KeyError, StopIteration) as e:
        if arch is None:
            raise CheckpointError(f"cannot infer a SqueezeTime architecture from the keys ({e!r}); "
                                  "pass arch= explicitly") from None
        return CONFIGS[arch]  # the strict key check then names what is missing
    strides = tuple(2 if f"{BACKBONE}layer{s}.0.downsample.0.weight" in state else 1 for s in (1, 2, 3, 4))
    head = state.get(HEAD + "fc_cls.weight")
    num_classes = int(head.shape[0]) if head is not None else None
    if arch is None:
        arch = _guess_arch(num_classes, strides)
    base = CONFIGS[arch]
    if num_classes is None and base.num_classes is not None:
        num_classes = base.num_classes  # backbone-only file loaded into a recognizer: head stays untrained
    labels = base.labels if num_classes == base.num_classes else None
    if labels is None:
        labels = {400: "k400", 600: "k600", 51: "hmdb51"}.get(num_classes) if base.num_classes else None
    return replace(base, depth=depth, widen_factor=int(stem.shape[0]) / 64, num_frames=int(stem.shape[1]) // 3,
                   spatial_stride=strides, pos_dim=pos_dim, num_classes=num_classes, labels=labels)


def _guess_arch(num_classes: int | None, strides: tuple[int, ...]) -> str:
    if num_classes is None:
        return "ava" if strides[-1] == 1 else "k400"
    return {600: "k600", 51: "hmdb51"}.get(num_classes, "k400")


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, allow_missing_head=False):
    """Return (missing, unexpected, misshapen) key lists of ``state`` against ``model``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not (allow_missing_head and k.startswith(HEAD))]
    unexpected = [k for k in state if k not in expected]
    misshapen = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    return missing, unexpected, misshapen


def describe_mismatch(missing, unexpected, misshapen) -> str:
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen)):
        if keys:
            parts.append(f"{len(keys)} {label}: {_name_some(keys)}")
    return "; ".join(parts)


def load_checkpoint(path: PathOrFile, *, arch: str | None = None, strict: bool = True,
                    map_location="cpu", labels: list[str] | None = None) -> SqueezeTime:
    """Load an official (mmaction2/mmengine) or bare SqueezeTime checkpoint into a model in eval mode.

    Architecture, width, frames, pos_dim and classes come from the checkpoint's keys and shapes;
    ``arch`` picks the named configuration they refine. Strict by default: any missing, unexpected or
    misshapen key raises ``CheckpointError``; ``strict=False`` loads what fits and warns. A backbone-only
    (ImageNet-pretrained) file loads into the backbone and leaves the head initialised, with a warning.
    ``labels`` overrides the class names (else those saved by ``save_checkpoint``, else the shipped list).
    """
    if arch is not None and arch not in CONFIGS:
        raise CheckpointError(f"unknown arch {arch!r}; choose one of {sorted(CONFIGS)}")
    state, meta = extract_state_dict(safe_load(path, map_location))
    own = meta.get("squeezetime") if isinstance(meta.get("squeezetime"), Mapping) else {}
    config = infer_config(state, arch)
    names = labels or own.get("class_names")
    if names is not None and config.num_classes is not None and len(names) != config.num_classes:
        raise CheckpointError(f"{len(names)} class names for a head of {config.num_classes} classes")
    model = build(replace(config, labels=None) if names else config, list(names) if names else None)
    backbone_only = not any(k.startswith(HEAD) for k in state) and model.cls_head is not None
    missing, unexpected, misshapen = check_state_dict(model, state, allow_missing_head=backbone_only)
    problems = describe_mismatch(missing, unexpected, misshapen)
    if problems and strict:
        raise CheckpointError(f"checkpoint does not fit SqueezeTime '{arch or 'inferred'}' "
                              f"(depth {config.depth}, width x{config.widen_factor:g}): {problems}")
    if problems:
        warnings.warn(f"loading non-strictly, skipped: {problems}", stacklevel=2)
    if backbone_only:
        warnings.warn("checkpoint has no classification head (backbone-only file): the head is untrained",
                      stacklevel=2)
    skip = set(unexpected) | {m.split(" ")[0] for m in misshapen}
    model.load_state_dict({k: v for k, v in state.items() if k not in skip}, strict=False)
    if isinstance(own.get("data_config"), Mapping):  # else the official pipeline the registry attached
        model.data_config = DataConfig.from_dict(own["data_config"])
    return model.eval()


def save_checkpoint(model: SqueezeTime, path: str | os.PathLike, **extra_meta) -> None:
    """Write the official layout ({"state_dict", "meta"}) plus our config, class names and data config
    (plain dicts and lists: loadable safely)."""
    data_config = model.data_config or DataConfig.for_model_config(model.config)
    meta = {"squeezetime": {"config": model.config, "class_names": model.class_names,
                            "data_config": data_config.to_dict()}, **extra_meta}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, path)


__all__ = ["OpaqueObject", "check_state_dict", "extract_state_dict", "infer_config", "load_checkpoint",
           "safe_load", "save_checkpoint"]
