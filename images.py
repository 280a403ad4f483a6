"""PNG output with numpy and Pillow (torchvision is not usable here), and loss plots.

Plots use matplotlib's object API with the Agg canvas, so nothing here needs a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image


def to_uint8_hwc(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] or uint8 -> (N, H, W, C) uint8 for Pillow."""
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    if images.dtype != np.uint8:
        images = (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return images.transpose(0, 2, 3, 1)


def make_grid(images: torch.Tensor | np.ndarray, ncols: int = 8, pad: int = 2) -> np.ndarray:
    """Tile a batch into one (H, W, 3) uint8 image, row by row, on a grey background."""
    tiles = to_uint8_hwc(images)
    n, h, w, c = tiles.shape
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    grid = np.full((pad + nrows * (h + pad), pad + ncols * (w + pad), c), 128, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        top, left = pad + (i // ncols) * (h + pad), pad + (i % ncols) * (w + pad)
        grid[top : top + h, left : left + w] = tile
    return grid


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W, 3) uint8 array as PNG."""
    Image.fromarray(image).save(path)
    return Path(path)


def save_grid(images: torch.Tensor | np.ndarray, path: str | Path, ncols: int = 8) -> Path:
    return save_png(make_grid(images, ncols), path)


def save_comparison(originals: torch.Tensor | np.ndarray, reconstructions: torch.Tensor, path: str | Path) -> Path:
    """Originals in the top row, their reconstructions right below."""
    both = np.concatenate([to_uint8_hwc(originals), to_uint8_hwc(reconstructions)])
    return save_grid(both.transpose(0, 3, 1, 2), path, ncols=len(originals))


def plot_curves(epochs: Sequence[int], panels: dict[str, dict[str, Sequence[float]]], path: str | Path) -> Path:
    """One panel per title, one line per named curve in it, against epoch (log scale)."""
    fig = Figure(figsize=(5 * len(panels), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, (title, curves) in enumerate(panels.items(), start=1):
        ax = fig.add_subplot(1, len(panels), i)
        for label, values in curves.items():
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set(xlabel="epoch", title=title, yscale="log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
