"""Decode latent vectors into frames with a trained model.

    python sample_vae.py                 # random codes: outputs/samples.png and outputs/samples/*.png
    python sample_vae.py --prior normal  # the codes from z ~ N(0, I), the homework's way, instead of the fitted prior
    python sample_vae.py --traverse      # each active latent dimension swept from -3 to +3: outputs/traversal.png
    python sample_vae.py --interpolate   # a straight line between two held-out frames: outputs/interpolation.png
    python sample_vae.py --reconstruct   # held-out frames over their reconstructions: reconstructions_heldout.png
    python sample_vae.py --rollout       # held-out episodes beside their reconstructions, animated: rollout.gif
    python sample_vae.py --interactive   # a window with a Generate button (needs a display)

The files go beside the checkpoint (outputs/ for the default one), unless --out_dir says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from MyVAE import MyVAE
from worldvae import cli, codes, compute, constants, files, prior, readers
from worldvae.checkpoints import build_vae, load_checkpoint, run_config
from worldvae.cli import UserError
from worldvae.compute import pick_device, to_unit_float
from worldvae.heldout import heldout_frames
from worldvae.pictures import (
    save_comparison,
    save_interpolation,
    save_png,
    save_rollout_gif,
    save_samples,
    save_traversal,
    to_uint8_hwc,
)

# -----------------------------------------------------------------------------
CHECKPOINT = "outputs/vae.pt"  # a checkpoint written by train_vae.py
N_SAMPLES = 16  # how many frames to imagine (random mode) or to reconstruct (--reconstruct)
PRIOR = "auto"  # random codes from: fitted (a mixture fitted to the training codes), normal (N(0, I)); auto: fitted
SEED = 0  # seeds the latent vectors: the same seed gives the same pictures
OUT_DIR = None  # the pictures go here; None: the checkpoint's own folder, so runs never overwrite each other's
DEVICE = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, mps
TRAVERSE = False  # instead: sweep each latent dimension from -3 to +3, the others at 0 (an AE: around its codes)
INTERPOLATE = False  # instead: decode a straight line between two held-out frames' codes
RECONSTRUCT = False  # instead: held-out frames above their reconstructions
ROLLOUT = False  # instead: the first 100 held-out frames, episode after episode, beside their reconstructions (GIF)
INTERACTIVE = False  # instead: show one sample at a time with a Generate button
# -----------------------------------------------------------------------------

_ROLLOUT_FRAMES = 100  # a GIF long enough to watch episodes unfold, small enough to keep in docs/
_MAX_SAMPLES = 10_000
_POOL = 512  # held-out frames whose codes rank the dimensions, and searched for an interpolation's far end


def heldout_batches(checkpoint: dict, path: str, n: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Frames the checkpoint's model never trained on, as floats on `device`: "pool", the first
    _POOL; "spread", n of different episodes and states; "rollout", the first _ROLLOUT_FRAMES in
    episode and step order (several episodes where they are short)."""
    limit = max(_POOL, _ROLLOUT_FRAMES, n)  # no more than the pictures draw
    test = heldout_frames(run_config(checkpoint, path), beside=Path(path).parent, fit=False, limit=limit).test
    in_order = np.lexsort((test["step"], test["episode"]))[:_ROLLOUT_FRAMES]
    picks = {"pool": np.arange(min(_POOL, len(test["frames"]))), "rollout": in_order,
             "spread": readers.spread_frames(test["episode"], test["step"], n)}
    return {name: to_unit_float(torch.from_numpy(test["frames"][idx]).to(device)) for name, idx in picks.items()}


def write_samples(model: MyVAE, prior_name: str, prior_: dict | None, n_samples: int, seed: int,
                  out_dir: Path) -> list[Path]:
    """Decode n_samples draws of the prior; write all of them as one grid, and each as a PNG in samples/
    (whose text field names the prior, as the grid's title does)."""
    samples = prior.new_frames(model, prior_, n_samples, torch.Generator().manual_seed(seed))
    sample_dir = out_dir / "samples"
    sample_dir.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(to_uint8_hwc(samples)):
        save_png(image, sample_dir / f"sample_{i:03d}.png", description=prior.caption(prior_name))
    return [save_samples(samples, out_dir / "samples.png", prior.caption(prior_name)), sample_dir]


def show_interactive(model: MyVAE, prior_: dict | None, seed: int) -> None:
    """The homework's Generate button: each press decodes a fresh code of the prior."""
    import matplotlib.pyplot as plt
    from matplotlib.widgets import Button

    if plt.get_backend().lower() == "agg":
        raise UserError("--interactive needs a display; without one, run without it to write PNG files")
    generator = torch.Generator().manual_seed(seed)
    fig, ax = plt.subplots(figsize=(4, 4.6))
    fig.subplots_adjust(bottom=0.15)
    ax.axis("off")
    shown = ax.imshow(to_uint8_hwc(prior.new_frames(model, prior_, 1, generator))[0])
    button = Button(fig.add_axes((0.35, 0.03, 0.3, 0.08)), "Generate")

    def generate(_event: object) -> None:
        shown.set_data(to_uint8_hwc(prior.new_frames(model, prior_, 1, generator))[0])
        fig.canvas.draw_idle()

    button.on_clicked(generate)
    plt.show()


def main(argv: Sequence[str] | None = None) -> None:
    cfg = constants.parse_config(__name__, argv)
    cli.require(cfg.n_samples >= 1, f"N_SAMPLES must be at least 1, got {cfg.n_samples}")
    cli.require_at_most(cfg.n_samples, _MAX_SAMPLES, "N_SAMPLES", "each is a PNG file and a tile of one grid")
    cli.require_seed(cfg.seed)
    checkpoint = load_checkpoint(cfg.checkpoint)
    prior_name, prior_ = prior.choose(checkpoint, cfg.prior, cfg.checkpoint)
    device = pick_device(cfg.device)
    model = build_vae(checkpoint, device)
    side = model.model_args["img_size"]
    compute.require_memory(cfg.n_samples * 3 * side**2 * 4 * 4, f"N_SAMPLES={cfg.n_samples} frames of {side} px, "
                       "decoded and drawn at once,", "lower N_SAMPLES")
    if cfg.interactive:
        show_interactive(model, prior_, cfg.seed)
        return
    from_frames = cfg.traverse or cfg.interpolate or cfg.reconstruct or cfg.rollout  # they need the run's frames
    if from_frames:
        run_config(checkpoint, cfg.checkpoint)  # refused here, before any picture is written
    out_dir = files.prepare_out_dir(cfg.out_dir or str(Path(cfg.checkpoint).parent))
    written = []
    if from_frames:
        heldout = heldout_batches(checkpoint, cfg.checkpoint, cfg.n_samples, device)
        pool = heldout["pool"]
        if cfg.traverse:
            with torch.no_grad():
                out = model.eval()(pool)
            rows = codes.traversal_rows(model, out.mu.cpu().numpy(), out.log_var.cpu().numpy())
            written.append(save_traversal(*rows, out_dir / "traversal.png"))
        if cfg.interpolate:
            far = codes.farthest_from_first(pool)
            written.append(save_interpolation(codes.interpolation(model, pool[0], pool[far]),
                                              out_dir / "interpolation.png"))
        if cfg.reconstruct:
            x = heldout["spread"]
            written.append(save_comparison(x, model.reconstruct(x), out_dir / "reconstructions_heldout.png"))
        if cfg.rollout:
            x = heldout["rollout"]
            written.append(save_rollout_gif(x, model.reconstruct(x), out_dir / "rollout.gif"))
    else:
        written += write_samples(model, prior_name, prior_, cfg.n_samples, cfg.seed, out_dir)
    print(f"from {cfg.checkpoint}" + ("" if from_frames else f", codes drawn from {prior.caption(prior_name)}") + ":")
    for path in written:
        print(f"  {path}")
    checkpoint_flag = "" if cfg.checkpoint == CHECKPOINT else f" --checkpoint {cfg.checkpoint}"
    print(f"next: python evaluate_vae.py{checkpoint_flag} --fresh 2000   # how good it is, on frames of another seed")


if __name__ == "__main__":
    cli.run(main)
