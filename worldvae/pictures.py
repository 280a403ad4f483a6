"""Pictures: labelled PNG grids with numpy and Pillow (torchvision is not usable here), GIFs and plots.

Every function draws what it is handed (images, names, colours, labels): it knows nothing of
models or envs. Plots use matplotlib's object API with the Agg canvas, so nothing here needs
a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from worldvae import files

_MIN_TILE = 128  # px: small frames are upscaled to at least this, so a 64x64 frame can be seen
_FONT_SIZE = 14


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


def save_png(image: np.ndarray, path: str | Path, description: str = "") -> Path:
    """Write an (H, W, 3) uint8 array as PNG, atomically; `description` goes in its text field."""
    info = PngInfo()
    if description:
        info.add_text("Description", description)
    files.atomic_write(path, lambda f: Image.fromarray(image).save(f, format="PNG", pnginfo=info))
    return Path(path)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a matplotlib figure as PNG, atomically."""
    files.atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return Path(path)


def save_grid(
    images: torch.Tensor | np.ndarray,
    path: str | Path,
    ncols: int = 8,
    title: str = "",
    row_labels: Sequence[str] = (),
    col_labels: Sequence[str] = (),
) -> Path:
    """A grid that explains itself: tiles upscaled (nearest neighbour, so pixels stay sharp) to at
    least _MIN_TILE px, a title on top, a label left of each row and above each column."""
    return save_png(labelled_grid(images, ncols, title, row_labels, col_labels), path)


def labelled_grid(
    images: torch.Tensor | np.ndarray,
    ncols: int = 8,
    title: str = "",
    row_labels: Sequence[str] = (),
    col_labels: Sequence[str] = (),
) -> np.ndarray:
    tiles = to_uint8_hwc(images)
    scale = max(1, -(-_MIN_TILE // tiles.shape[1]))
    grid = Image.fromarray(make_grid(tiles.repeat(scale, 1).repeat(scale, 2).transpose(0, 3, 1, 2), ncols))
    font = ImageFont.load_default(size=_FONT_SIZE)
    line = _FONT_SIZE + 6
    left = 8 + max((int(font.getlength(label)) for label in row_labels), default=-8)
    top = (line if title else 0) + (line if col_labels else 0)
    canvas = Image.new("RGB", (left + grid.width, top + grid.height + 4), "white")
    canvas.paste(grid, (left, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 3), title, fill="black", font=font)
    step = (grid.width - 2) // max(1, min(ncols, len(tiles)))
    for col, label in enumerate(col_labels):
        draw.text((left + 2 + col * step + step // 2, top - line // 2), label, fill="black", font=font, anchor="mm")
    step = (grid.height - 2) // max(1, -(-len(tiles) // ncols))
    for row, label in enumerate(row_labels):
        draw.text((left - 6, top + 2 + row * step + step // 2), label, fill="black", font=font, anchor="rm")
    return np.asarray(canvas)


def save_comparison(originals: torch.Tensor | np.ndarray, reconstructions: torch.Tensor, path: str | Path,
                    title: str = "frames the model never trained on, and what it makes of them") -> Path:
    """Originals in the top row, their reconstructions right below."""
    both = np.concatenate([to_uint8_hwc(originals), to_uint8_hwc(reconstructions)])
    return save_grid(both.transpose(0, 3, 1, 2), path, ncols=len(originals), title=title,
                     row_labels=("held-out frame", "reconstruction"))


def plot_curves(panels: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]], path: str | Path) -> Path:
    """One panel per title, one line per named curve (epochs, values) in it, on a log scale."""
    fig = Figure(figsize=(5 * len(panels), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, (title, curves) in enumerate(panels.items(), start=1):
        ax = fig.add_subplot(1, len(panels), i)
        for label, (epochs, values) in curves.items():
            dense = len(values) > 20
            ax.plot(epochs, values, marker="" if dense else "o", markersize=3, label=label, lw=0.8 if dense else 1.5)
        # This picture is drawn after every epoch, so two defaults that cost time go: the title's
        # automatic placement (a given height skips measuring every tick label) and mathtext tick labels
        # (plain 1e-03 instead: the parser costs ~0.3 s in every process that draws).
        ax.set(xlabel="epoch", yscale="log")
        ax.set_title(title, y=1.0, pad=6)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)  # the curves fall from the top left: the legend keeps clear
    width = fig.get_figwidth()  # fixed margins in inches: tight_layout costs ~0.5 s
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.2 / width, bottom=0.14, top=0.9, wspace=0.35)
    return save_figure(fig, path)


def save_interpolation(decoded: torch.Tensor, path: str | Path) -> Path:
    """Frame A, the decodings between the two codes (t evenly spaced from 0 to 1), frame B."""
    steps = [f"{t:.1f}" for t in np.linspace(0, 1, len(decoded) - 2)]
    return save_grid(decoded, path, ncols=len(decoded), col_labels=["A", *steps, "B"],
                     title="held-out frames A and B at the ends; between them, the decodings of (1-t) z_A + t z_B")


def save_traversal(decoded: torch.Tensor, row_labels: Sequence[str], values: Sequence[float], left_out: int,
                   where: str, path: str | Path) -> Path:
    """One row per latent dimension (`row_labels`), one column per value it is set to (`where` says
    what the values measure and where the other dimensions sit)."""
    note = f"; {left_out} inactive dimensions, which decode alike, left out" if left_out else ""
    return save_grid(decoded, path, ncols=len(values), row_labels=row_labels, col_labels=[f"{v:+.2f}" for v in values],
                     title=f"each row sweeps one latent dimension (value on top, {where}){note}")


def save_rollout_gif(originals: torch.Tensor, reconstructions: torch.Tensor, path: str | Path,
                     ms_per_frame: int = 100) -> Path:
    """An animated GIF: each frame of an episode (left) beside its reconstruction (right)."""
    pairs = np.concatenate([to_uint8_hwc(originals), to_uint8_hwc(reconstructions)], axis=2)
    tiles = [labelled_grid(pair.transpose(2, 0, 1)[None], 1, title="episode | reconstruction") for pair in pairs]
    images = [Image.fromarray(tile) for tile in tiles]
    files.atomic_write(path, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                                                duration=ms_per_frame, loop=0))
    return Path(path)


def save_samples(samples: torch.Tensor, path: str | Path, drawn_from: str, ncols: int = 8) -> Path:
    """New frames in a grid, its title naming what drew their codes (`drawn_from`)."""
    return save_grid(samples, path, ncols=ncols, title=f"new frames, decoded from random codes: {drawn_from}")


def plot_latent_scatter(mu: np.ndarray, order: list[int], colour: Sequence[float], label: str, path: Path) -> None:
    """The two most informative latent dimensions, one dot per frame, coloured by `colour`."""
    fig = Figure(figsize=(5, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    first, second = (order[0], order[1]) if len(order) > 1 else (order[0], order[0])
    dots = ax.scatter(mu[:, first], mu[:, second], c=colour, cmap="coolwarm", s=8)
    fig.colorbar(dots, label=label)
    ax.set(xlabel=f"z[{first}]", ylabel=f"z[{second}]", title="held-out frames in the two most informative dims")
    fig.tight_layout()
    save_figure(fig, path)


def plot_beta_sweep(betas: Sequence[float], mse: Sequence[float], probe_r2: dict[str, Sequence[float]],
                    path: Path) -> None:
    """Validation MSE and probe R^2 of each state variable against the KL weight."""
    fig = Figure(figsize=(10, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    mse_ax, r2_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    mse_ax.plot(betas, mse, marker="o")
    mse_ax.set(xscale="log", yscale="log", xlabel="KL_WEIGHT (beta)", title="validation MSE per pixel")
    for name, values in probe_r2.items():
        r2_ax.plot(betas, values, marker="o", label=name)
    r2_ax.set(xscale="log", xlabel="KL_WEIGHT (beta)", title="linear probe R^2 (held-out)", ylim=(-0.05, 1.05))
    r2_ax.legend(fontsize=8)
    for ax in (mse_ax, r2_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
