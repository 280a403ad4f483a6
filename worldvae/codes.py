"""What a trained model makes of frames: their codes, which latent dimensions carry information,
and the decodings that the pictures show (traversals, interpolations).

Everything here runs the model in eval mode (the code is the mean of q(z|x), decoded
deterministically) and in fp32, whatever the training used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from MyVAE import MyVAE, kl_per_dim
from worldvae.compute import to_unit_float
from worldvae.progress import ProgressBar
from worldvae.road import road_scores

FRAMES_PER_BATCH = 1024  # frames encoded (or compared) at once: bounds the memory of every pass over many frames
ACTIVE = 0.01  # nats of mean KL (an autoencoder: variance of the code across frames) that make a dimension active
TRAVERSAL_VALUES = np.linspace(-3.0, 3.0, 9)  # z values a traversal sweeps each dimension through
INTERPOLATION_STEPS = 11  # decodings from A's code to B's, both included: t = 0, 0.1, ..., 1


@dataclass
class Codes:
    """Per frame: the code's mean and log-variance (zeros for an autoencoder), the per-pixel MSE
    of the frame's reconstruction from that mean, and (asked for) the road IoU of that
    reconstruction (worldvae/road.py; NaN where the frame shows no road)."""

    mu: np.ndarray
    log_var: np.ndarray
    mse: np.ndarray
    road_iou: np.ndarray | None = None
    phantom_road_rate: float | None = None  # of the road-free frames, the share whose reconstruction shows road


@torch.no_grad()
def encode_frames(model: MyVAE, frames_u8: np.ndarray, device: torch.device, desc: str = "encoding",
                  road: bool = False) -> Codes:
    """Encode uint8 frames (N, 3, H, W) in batches of FRAMES_PER_BATCH, with a progress bar."""
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {"mu": [], "log_var": [], "mse": [], "road_iou": []}
    phantoms = road_free = 0
    with ProgressBar(len(frames_u8), desc, "frame") as bar:
        for batch in torch.from_numpy(frames_u8).split(FRAMES_PER_BATCH):
            x = to_unit_float(batch.to(device))
            out = model(x)
            parts["mu"].append(out.mu.float().cpu())
            parts["log_var"].append(out.log_var.float().cpu())
            parts["mse"].append((out.recon.float() - x).pow(2).flatten(1).mean(1).cpu())
            if road:  # the reconstruction as the frame's own uint8 pixels, as a controller would see it
                recon_u8 = (out.recon.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
                iou, free, painted = road_scores(batch.numpy(), recon_u8)
                parts["road_iou"].append(torch.from_numpy(iou))
                phantoms, road_free = phantoms + int((free & painted).sum()), road_free + int(free.sum())
            bar.update(len(batch))
    found = Codes(**{key: torch.cat(values).numpy() for key, values in parts.items() if values})
    found.phantom_road_rate = phantoms / road_free if road and road_free else None
    return found


@torch.no_grad()
def code_means(model: MyVAE, frames_u8: np.ndarray, device: torch.device, desc: str = "encoding") -> np.ndarray:
    """The mean of q(z|x) (an autoencoder's code) of each uint8 frame (N, 3, H, W), the encoder alone
    (no decoding), in batches of FRAMES_PER_BATCH: what a prior is fitted to."""
    model.eval()
    means = []
    with ProgressBar(len(frames_u8), desc, "frame") as bar:
        for batch in torch.from_numpy(frames_u8).split(FRAMES_PER_BATCH):
            means.append(model.code_mean(to_unit_float(batch.to(device))).float().cpu())
            bar.update(len(batch))
    return torch.cat(means).numpy()


def mean_kl(mu: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """How much each latent dimension of a VAE carries: its mean KL from the prior, in nats."""
    return kl_per_dim(torch.from_numpy(mu), torch.from_numpy(log_var)).mean(0).numpy()


def code_variance(mu: np.ndarray) -> np.ndarray:
    """How much each dimension of an autoencoder's code carries, which has no KL: its variance across
    frames (Burda et al. 2015's activity)."""
    return mu.var(0)


def ranked_dims(score: np.ndarray) -> list[int]:
    """Latent dimensions by `score` (mean_kl or code_variance), the most informative first."""
    return np.argsort(-score, kind="stable").tolist()


@torch.no_grad()
def traversal(model: MyVAE, dims: Sequence[int], values: Sequence[float] = TRAVERSAL_VALUES,
              centre: np.ndarray | None = None, spread: np.ndarray | None = None) -> torch.Tensor:
    """Decodings, one row per dimension in `dims`: that dimension at centre + value * spread for each
    value, the others at the centre (by default 0 and 1: the VAE's prior N(0, I))."""
    model.eval()
    centre = torch.zeros(model.latent_dim) if centre is None else torch.as_tensor(centre, dtype=torch.float32)
    spread = torch.ones(model.latent_dim) if spread is None else torch.as_tensor(spread, dtype=torch.float32)
    z = centre.repeat(len(dims), len(values), 1)
    for row, dim in enumerate(dims):
        z[row, :, dim] = centre[dim] + torch.as_tensor(values, dtype=torch.float32) * spread[dim]
    return model.decode(z.view(-1, model.latent_dim).to(_device(model)))


@torch.no_grad()
def interpolation(model: MyVAE, a: torch.Tensor, b: torch.Tensor, steps: int = INTERPOLATION_STEPS) -> torch.Tensor:
    """Frame a, the decodings of `steps` evenly spaced codes from a's to b's, then frame b."""
    model.eval()
    codes = model(torch.stack([a, b])).mu
    t = torch.linspace(0, 1, steps, device=codes.device)[:, None]
    return torch.cat([a[None], model.decode((1 - t) * codes[0] + t * codes[1]), b[None]])


def farthest_from_first(frames: torch.Tensor) -> int:
    """The index of the frame that differs most from frames[0]: an interpolation to it shows something."""
    return int(((frames - frames[0]) ** 2).flatten(1).sum(1).argmax())


def _device(model: MyVAE) -> torch.device:
    return next(model.parameters()).device


def traversal_rows(model: MyVAE, mu: np.ndarray, log_var: np.ndarray
                   ) -> tuple[torch.Tensor, list[str], Sequence[float], int, str]:
    """What a traversal picture shows, from the codes of some held-out frames: the decodings of the
    active dimensions (the most informative one if none is), a label for each row naming the
    dimension and what it carries, the values swept, how many inactive dimensions were left out, and
    where the sweep sits. A VAE's sweep crosses its prior N(0, I); an autoencoder's codes need not
    come near 0, so its sweep crosses where they lie: their mean, in steps of their spread."""
    score = mean_kl(mu, log_var) if model.variational else code_variance(mu)
    ranked = ranked_dims(score)
    dims = [dim for dim in ranked if score[dim] > ACTIVE] or ranked[:1]  # inactive ones decode alike
    unit = "KL" if model.variational else "var"
    labels = [f"z[{dim}], {unit} {score[dim]:.2f}" for dim in dims]
    left_out = model.latent_dim - len(dims)
    if model.variational:
        return traversal(model, dims), labels, TRAVERSAL_VALUES, left_out, "the others at 0"
    decoded = traversal(model, dims, centre=mu.mean(0), spread=mu.std(0))
    where = "in standard deviations of the codes from their mean, the others at it"
    return decoded, labels, TRAVERSAL_VALUES, left_out, where
