"""SqueezeTime for production: video -> clip -> tensor -> model -> labels.

    import squeezetime
    classifier = squeezetime.load("squeezetime_k400.pth")      # or a model, or "demo"
    classifier.classify("video.mp4", views="1x1", topk=5)      # [(label, probability), ...]
"""
from . import ops  # loads torch.ops.squeezetime (the C++ extension) and its fake kernels
from .errors import CheckpointError, InputError, SqueezeTimeError, VideoError
from .models import CONFIGS, MEAN, STD, SqueezeTime, class_names, create_model, list_models
from .models.checkpoint import load_checkpoint, save_checkpoint
from .data_config import DataConfig
from .backends import BackendError
from .classifier import DEMO, Classifier, ClipScores, load
from .optimize import optimize
from .predict import predict
from .preprocess import normalize_clip
from .video import read_video, sample_clips

__version__ = "0.1.0"


def demo_model() -> SqueezeTime:
    """The small SqueezeTime shipped with the package, trained on ``squeezetime.synthetic`` motions."""
    from .synthetic.demo import demo_model as _demo_model
    return _demo_model()


__all__ = ["BackendError", "CONFIGS", "CheckpointError", "Classifier", "ClipScores", "DEMO", "DataConfig",
           "InputError", "MEAN", "STD", "SqueezeTime", "SqueezeTimeError", "VideoError", "class_names",
           "create_model", "demo_model", "list_models", "load", "load_checkpoint", "normalize_clip", "optimize",
           "predict", "read_video", "sample_clips", "save_checkpoint"]
