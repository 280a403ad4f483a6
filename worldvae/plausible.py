"""Is a generated frame one the env could show? Distances to real frames, calibrated by reconstructions.

A sample is judged by the per-pixel MSE to its nearest real frame. That distance alone has no
scale a reader can judge, so it is compared with what a good picture of a real frame scores:
the model's reconstructions of held-out frames, measured against the same real frames. A sample
farther from every real frame than 95% of those reconstructions is implausible; a model whose
samples look like its reconstructions of new frames scores about 5%, one that decodes blends,
blotches or noise scores near 100%. That is precision alone: a model that decodes a few common
frames well scores under 5% too. So recall stands beside it: the share of fresh frames that some
sample comes within the same line of, beside that share for as many real frames of other episodes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

from worldvae import codes
from worldvae.compute import to_unit_float
from worldvae.progress import ProgressBar

QUANTILE = 0.95  # of the reconstructions' distances: the line past which a sample is implausible
Images = Iterable[torch.Tensor]  # batches of frames as floats in [0, 1]: a long run of them never held at once


def float_batches(frames_u8: np.ndarray, device: torch.device | str = "cpu") -> Images:
    """Frames as floats in [0, 1] on `device`, codes.FRAMES_PER_BATCH at a time."""
    for start in range(0, len(frames_u8), codes.FRAMES_PER_BATCH):
        yield to_unit_float(torch.from_numpy(frames_u8[start:start + codes.FRAMES_PER_BATCH]).to(device))


def nearest_frame_mse(images: torch.Tensor | Images, frames_u8: np.ndarray, total: int = 0) -> np.ndarray:
    """For each image (floats in [0, 1]), the per-pixel MSE to its nearest frame in `frames_u8`."""
    return nearest_both_ways(images, frames_u8, total)[0]


@torch.no_grad()
def nearest_both_ways(images: torch.Tensor | Images, frames_u8: np.ndarray, total: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The per-pixel MSE from each image to its nearest frame of `frames_u8`, and from each frame to its
    nearest image. `images` may be batches (`total` of them in all, for the progress bar), so memory stays
    bounded by codes.FRAMES_PER_BATCH images and frames at a time, whatever their numbers: squared
    distances come from |a|^2 + |b|^2 - 2 a.b, one matrix product per pair of batches."""
    if isinstance(images, torch.Tensor):
        images, total = images.split(codes.FRAMES_PER_BATCH), len(images)
    to_image, frame_best = [], torch.full((len(frames_u8),), math.inf)
    with ProgressBar(total, "nearest frames", "image") as bar:
        for batch in images:
            flat = batch.float().flatten(1)
            best = torch.full((len(flat),), math.inf, device=flat.device)
            start = 0
            for real in float_batches(frames_u8, flat.device):
                real = real.flatten(1)
                squared = (flat**2).sum(1, keepdim=True) + (real**2).sum(1) - 2 * flat @ real.T
                best = torch.minimum(best, squared.min(1).values)
                window = frame_best[start:start + len(real)]
                window.copy_(torch.minimum(window, squared.min(0).values.cpu()))
                start += len(real)
            to_image.append((best.clamp(min=0) / flat.shape[1]).cpu())
            bar.update(len(flat))
    pixels = int(np.prod(frames_u8.shape[1:]))
    return torch.cat(to_image).numpy(), (frame_best.clamp(min=0) / pixels).numpy()


def judge(samplers: dict[str, Images], n_samples: int, reconstructions: Images, reference_u8: np.ndarray,
          others_u8: np.ndarray) -> dict[str, dict]:
    """Each sampler's `n_samples` samples (named: one prior each) judged both ways against `reference_u8`,
    fresh frames of episodes the model never saw, by one line and one perfect sampler.

    The line: QUANTILE of the distances from `reconstructions` (of `others_u8`, fresh frames of other
    episodes, never of the reference's own) to their nearest reference frame. Precision: the share of
    samples farther than the line from every reference frame ("implausible"); a perfect model scores
    about 1 - QUANTILE, and a sampler of a few common frames scores under it, so far under is a warning,
    not a win. Recall: the share of reference frames that have a sample within the line, beside the same
    share for as many of `others_u8` (real frames: a perfect sampler) as there are samples."""
    line = float(np.quantile(nearest_frame_mse(reconstructions, reference_u8, len(others_u8)), QUANTILE))
    perfect = others_u8[np.linspace(0, len(others_u8) - 1, min(n_samples, len(others_u8))).astype(int)]
    perfect_recall = float((nearest_both_ways(float_batches(perfect), reference_u8, len(perfect))[1] <= line).mean())
    judged = {}
    for name, samples in samplers.items():
        to_reference, from_reference = nearest_both_ways(samples, reference_u8, n_samples)
        judged[name] = {"implausible": float((to_reference > line).mean()),
                        "recall": float((from_reference <= line).mean()), "perfect_recall": perfect_recall,
                        "line": line, "median": float(np.median(to_reference)), "samples": len(to_reference),
                        "reference_frames": len(reference_u8), "perfect_sampler_frames": len(perfect)}
    return judged
