"""Is a generated frame one the env could show? Distances to real frames, calibrated by reconstructions.

A sample is judged by the per-pixel MSE to its nearest real frame. That distance alone has no
scale a reader can judge, so it is compared with what a good picture of a real frame scores:
the model's reconstructions of held-out frames, measured against the same real frames. A sample
farther from every real frame than 95% of those reconstructions is implausible; a model whose
samples look like its reconstructions of new frames scores about 5%, one that decodes blends,
blotches or noise scores near 100%.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from worldvae import codes
from worldvae.compute import to_unit_float
from worldvae.progress import ProgressBar

QUANTILE = 0.95  # of the reconstructions' distances: the line past which a sample is implausible


@torch.no_grad()
def nearest_frame_mse(images: torch.Tensor, frames_u8: np.ndarray) -> np.ndarray:
    """For each image (floats in [0, 1]), the per-pixel MSE to its nearest frame in `frames_u8`.

    Squared distances come from |a|^2 + |b|^2 - 2 a.b, one matrix product per batch of
    frames, so memory stays bounded by codes.FRAMES_PER_BATCH whatever the number of frames.
    """
    flat = images.float().flatten(1)
    best = torch.full((len(flat),), math.inf, device=flat.device)
    with ProgressBar(len(frames_u8), "nearest frames", "frame") as bar:
        for batch in torch.from_numpy(frames_u8).split(codes.FRAMES_PER_BATCH):
            real = to_unit_float(batch.to(flat.device)).flatten(1)
            squared = (flat**2).sum(1, keepdim=True) + (real**2).sum(1) - 2 * flat @ real.T
            best = torch.minimum(best, squared.min(1).values)
            bar.update(len(batch))
    return (best.clamp(min=0) / flat.shape[1]).cpu().numpy()


def implausible_share(samples: torch.Tensor, reconstructions: torch.Tensor, reference_u8: np.ndarray) -> dict:
    """The share of `samples` farther from every frame of `reference_u8` than QUANTILE of the
    `reconstructions` (of other held-out frames, never of the reference's own) are, with that line
    and the samples' median distance."""
    line = float(np.quantile(nearest_frame_mse(reconstructions, reference_u8), QUANTILE))
    distances = nearest_frame_mse(samples, reference_u8)
    return {"implausible": float((distances > line).mean()), "line": line, "median": float(np.median(distances)),
            "samples": len(distances), "reference_frames": len(reference_u8)}
