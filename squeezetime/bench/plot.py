"""The PNG every benchmark draws: one matplotlib figure, off-screen, written and closed in one place.

    with figure(path, 1, 2, figsize=(11, 4.2)) as (fig, (left, right)):
        left.plot(...)

The figure is laid out and saved when the block ends without an error, and closed either way (a benchmark
that plots in a loop would otherwise keep every figure alive).
"""
from __future__ import annotations

from contextlib import contextmanager

DPI = 110


@contextmanager
def figure(path, nrows: int = 1, ncols: int = 1, *, dpi: int = DPI, **subplots_options):
    """(figure, axes) of ``plt.subplots(nrows, ncols, **subplots_options)`` on the Agg backend; saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, **subplots_options)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)


def legend_and_grid(axes, fontsize: int = 7) -> None:
    """A small legend and a light grid on each of ``axes``."""
    for ax in axes:
        ax.legend(fontsize=fontsize)
        ax.grid(alpha=0.3)


__all__ = ["DPI", "figure", "legend_and_grid"]
