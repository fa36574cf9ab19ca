from .registry import CONFIGS, MEAN, STD, ModelConfig, class_names, create_model, list_models
from .squeezetime import SqueezeTime

__all__ = ["CONFIGS", "MEAN", "STD", "ModelConfig", "SqueezeTime", "class_names", "create_model", "list_models"]
