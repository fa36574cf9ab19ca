"""TorchServe entry point of a `squeezetime archive` .mar (copied into the archive as squeezetime_handler.py).

The handler code itself lives in the installed package (squeezetime.serving.torchserve.handler): the
worker's Python must have `squeezetime` installed (`pip install "squeezetime[torchserve]"` in the same
environment as `torchserve`). TorchServe wants exactly one class defined in this module.
"""
try:
    from squeezetime.serving.torchserve.handler import SqueezeTimeHandler as _SqueezeTimeHandler
except ImportError as e:  # make the worker log say what to do
    raise ImportError(f"squeezetime is not importable in the TorchServe worker's Python ({e}); install it in "
                      "the environment that runs `torchserve`: pip install 'squeezetime[torchserve]'") from e


class SqueezeTimeTorchServeHandler(_SqueezeTimeHandler):
    """Accepts encoded videos, uint8 .npy clips and JSON options; returns top-k labels as JSON."""
