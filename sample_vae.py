"""Decode random latent vectors z ~ N(0, I) into new frames with a trained model.

    python sample_vae.py                 # outputs/samples.png and outputs/samples/*.png
    python sample_vae.py --interactive   # a window with a Generate button (needs a display)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

import cli
from cli import UserError
from images import make_grid, save_png, to_uint8_hwc
from MyVAE import MyVAE, load_vae, pick_device

# -----------------------------------------------------------------------------
CHECKPOINT = "outputs/vae.pt"  # a checkpoint written by train_vae.py
N_SAMPLES = 16  # how many frames to imagine
SEED = 0  # seeds the latent vectors: the same seed gives the same pictures
OUT_DIR = "outputs"  # samples.png (a grid) and samples/sample_NNN.png go here
DEVICE = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, mps
INTERACTIVE = False  # show one sample at a time with a Generate button instead of writing files
# -----------------------------------------------------------------------------


def write_samples(model: MyVAE, n_samples: int, seed: int, out_dir: Path) -> list[Path]:
    """Decode n_samples prior draws; write each as a PNG and all of them as one grid."""
    samples = model.sample(n_samples, generator=torch.Generator().manual_seed(seed))
    sample_dir = out_dir / "samples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    paths = [save_png(image, sample_dir / f"sample_{i:03d}.png") for i, image in enumerate(to_uint8_hwc(samples))]
    return [save_png(make_grid(samples), out_dir / "samples.png"), *paths]


def show_interactive(model: MyVAE, seed: int) -> None:
    """The homework's Generate button: each press decodes a fresh z ~ N(0, I)."""
    import matplotlib.pyplot as plt
    from matplotlib.widgets import Button

    if plt.get_backend().lower() == "agg":
        raise UserError("--interactive needs a display; without one, run without it to write PNG files")
    generator = torch.Generator().manual_seed(seed)
    fig, ax = plt.subplots(figsize=(4, 4.6))
    fig.subplots_adjust(bottom=0.15)
    ax.axis("off")
    shown = ax.imshow(to_uint8_hwc(model.sample(1, generator))[0])
    button = Button(fig.add_axes((0.35, 0.03, 0.3, 0.08)), "Generate")

    def generate(_event: object) -> None:
        shown.set_data(to_uint8_hwc(model.sample(1, generator))[0])
        fig.canvas.draw_idle()

    button.on_clicked(generate)
    plt.show()


def main(argv: Sequence[str] | None = None) -> None:
    cfg = cli.parse_config(__name__, argv)
    if cfg.n_samples < 1:
        raise UserError(f"N_SAMPLES must be at least 1, got {cfg.n_samples}")
    model = load_vae(cfg.checkpoint, pick_device(cfg.device))
    if cfg.interactive:
        show_interactive(model, cfg.seed)
        return
    paths = write_samples(model, cfg.n_samples, cfg.seed, cli.prepare_out_dir(cfg.out_dir))
    print(f"wrote {cfg.n_samples} samples from {cfg.checkpoint}:")
    print(f"  {paths[0]} (grid)")
    print(f"  {paths[1].parent}/sample_000.png ... {paths[-1].name}")


if __name__ == "__main__":
    cli.run(main)
