"""What a process needs to load its own ``Classifier``: Ray actors and benchmark loops rebuild it from this."""
from __future__ import annotations

from dataclasses import dataclass

from ..classifier import Classifier, load


@dataclass(frozen=True)
class ModelSpec:
    """``squeezetime.load`` arguments that travel to other processes (a path, not the loaded network)."""

    source: str                 # checkpoint path (visible to every node) or "demo"
    arch: str | None = None
    backend: str = "auto"
    dtype: str | None = None
    device: str | None = None
    threads: int | None = None
    batch_size: int = 8         # clips per backend call

    def load(self, device: str | None = None) -> Classifier:
        return load(self.source, backend=self.backend, dtype=self.dtype, device=device or self.device,
                    threads=self.threads, batch_size=self.batch_size, arch=self.arch)

    def decoder(self) -> Classifier:
        """A network-less ``Classifier`` with this model's data config: what decode tasks need, nothing more."""
        return decoder_of(load(self.source, backend="eager", arch=self.arch))  # the checkpoint says how to crop


def decoder_of(classifier: Classifier) -> Classifier:
    """The decoding half of ``classifier`` (data config, budget, names): small and picklable for other processes."""
    return Classifier(None, classifier.data_config, classifier.class_names, budget=classifier.budget)
