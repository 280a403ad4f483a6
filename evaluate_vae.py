"""Is the trained model any good, and what do its latent dimensions mean?

    python evaluate_vae.py                    # outputs/eval/: metrics.json and five pictures
    python evaluate_vae.py --fresh 2000       # score on 2,000 new frames from another seed instead

Reports reconstruction MSE and PSNR on held-out frames, the KL of each latent dimension
and how many are active, and a linear probe: how well a least-squares map from the
latent mean recovers the true state (for CartPole: cart position and velocity, pole
angle and angular velocity). A high R^2 says the code captured the physics, not just
pixels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from MyVAE import MyVAE, kl_per_dim
from vision import cli, frames
from vision.checkpoints import build_vae, load_checkpoint, run_config
from vision.compute import pick_device, to_unit_float
from vision.pictures import (
    dims_by_information,
    plot_latent_scatter,
    save_comparison,
    save_interpolation,
    save_samples,
    save_traversal,
)

# -----------------------------------------------------------------------------
CHECKPOINT = "outputs/vae.pt"  # a checkpoint written by train_vae.py
FRESH = 0  # 0: score on the checkpoint's own validation episodes; N: on N new frames from another seed
N_SAMPLES = 16  # random samples drawn for samples.png
QUALITY_SAMPLES = 256  # prior samples scored by the MSE to their nearest real frame
SEED = 0  # seeds those samples
OUT_DIR = "outputs/eval"  # metrics.json and the pictures go here
DEVICE = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, mps
# -----------------------------------------------------------------------------

_ACTIVE_KL = 0.01  # nats: a latent dimension carrying less than this on average is inactive
_FRAMES_PER_BATCH = 1024  # bounds the memory of encoding and of the nearest-frame search
_INTERPOLATION_POOL = 512  # held-out frames searched for the one farthest from the first


@torch.no_grad()
def encode(model: MyVAE, frames_u8: np.ndarray, device: torch.device) -> dict[str, np.ndarray]:
    """mu, log_var and per-frame reconstruction MSE, in eval mode (decoding mu), in fp32."""
    model.eval()
    parts = {"mu": [], "log_var": [], "mse": []}
    with cli.Progress(len(frames_u8), "encoding", "frame") as bar:
        for batch in torch.from_numpy(frames_u8).split(_FRAMES_PER_BATCH):
            x = to_unit_float(batch.to(device))
            recon, _, mu, log_var = model(x)
            parts["mu"].append(mu.cpu())
            parts["log_var"].append(log_var.cpu())
            parts["mse"].append(((recon - x) ** 2).flatten(1).mean(1).cpu())
            bar.update(len(batch))
    return {key: torch.cat(values).numpy() for key, values in parts.items()}


def linear_probe(z_fit: np.ndarray, y_fit: np.ndarray, z_test: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    """R^2 of each target on the test set, for a least-squares map (with bias) fitted on the fit set.

    1 means the target is a linear function of the code; 0 means no better than its mean.
    """
    design = np.column_stack([z_fit, np.ones(len(z_fit))])
    weights, *_ = np.linalg.lstsq(design, y_fit, rcond=None)
    predicted = np.column_stack([z_test, np.ones(len(z_test))]) @ weights
    residual = ((y_test - predicted) ** 2).sum(0)
    total = ((y_test - y_test.mean(0)) ** 2).sum(0)
    return 1.0 - residual / np.maximum(total, 1e-12)


def latent_activity(model: MyVAE, codes: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per latent dimension: mean KL in nats (zeros for an autoencoder) and the variance of
    its mean across frames (Burda et al. 2015's activity, which an autoencoder has too)."""
    if model.variational:
        kl = kl_per_dim(torch.from_numpy(codes["mu"]), torch.from_numpy(codes["log_var"])).mean(0).numpy()
    else:
        kl = np.zeros(codes["mu"].shape[1], dtype=np.float32)
    return kl, codes["mu"].var(0)


@torch.no_grad()
def nearest_frame_mse(samples: torch.Tensor, frames_u8: np.ndarray) -> np.ndarray:
    """For each sample (floats in [0, 1]), the per-pixel MSE to its nearest frame in `frames_u8`.

    Squared distances come from |a|^2 + |b|^2 - 2 a.b, one matrix product per batch of
    frames, so memory stays bounded by _FRAMES_PER_BATCH whatever the number of frames.
    """
    flat = samples.float().flatten(1)
    best = torch.full((len(flat),), math.inf, device=flat.device)
    with cli.Progress(len(frames_u8), "nearest frames", "frame") as bar:
        for batch in torch.from_numpy(frames_u8).split(_FRAMES_PER_BATCH):
            real = to_unit_float(batch.to(flat.device)).flatten(1)
            squared = (flat**2).sum(1, keepdim=True) + (real**2).sum(1) - 2 * flat @ real.T
            best = torch.minimum(best, squared.min(1).values)
            bar.update(len(batch))
    return (best.clamp(min=0) / flat.shape[1]).cpu().numpy()


def sample_quality(model: MyVAE, real_u8: np.ndarray, n: int, seed: int) -> dict[str, float]:
    """How far decoded prior samples lie from real frames: median and 90th percentile of the
    nearest-frame MSE. A sample from a hole in the prior (a blotch, a ghost lattice) is far from
    every real frame; a crisp one is about as close as a good reconstruction."""
    distances = nearest_frame_mse(model.sample(n, torch.Generator().manual_seed(seed)), real_u8)
    return {"median": float(np.median(distances)), "p90": float(np.quantile(distances, 0.9))}


def evaluate(checkpoint_path: str | Path, out_dir: Path, fresh: int = 0, n_samples: int = 16, seed: int = 0,
             device: torch.device | None = None, quality_samples: int = QUALITY_SAMPLES) -> dict:
    """Score one checkpoint, write its pictures and metrics.json to out_dir, return the metrics."""
    checkpoint = load_checkpoint(checkpoint_path)
    device = device or torch.device("cpu")
    model = build_vae(checkpoint, device)
    config = run_config(checkpoint, checkpoint_path)
    held = frames.heldout_frames(config, fresh)
    fit, test = encode(model, held.fit["frames"], device), encode(model, held.test["frames"], device)

    mse = float(test["mse"].mean())
    kl, variance = latent_activity(model, test)
    order = dims_by_information(model.variational, torch.from_numpy(test["mu"]), torch.from_numpy(test["log_var"]))
    names = frames.state_names(config["env_id"], held.test["states"].shape[1])
    r2 = linear_probe(fit["mu"], held.fit["states"], test["mu"], held.test["states"])
    quality = sample_quality(model, held.fit["frames"], quality_samples, seed)
    metrics = {
        "checkpoint": str(checkpoint_path),
        "variational": model.variational,
        "kl_weight": config["kl_weight"] if model.variational else None,
        "env_id": config["env_id"],
        "frames_scored": int(len(held.test["frames"])),
        "data": held.description,
        "mse": mse,
        "psnr_db": 10 * math.log10(1.0 / mse),
        "sample_nearest_mse_median": quality["median"],
        "sample_nearest_mse_p90": quality["p90"],
        "kl_per_dim": [float(v) for v in kl],
        "kl_total": float(kl.sum()),
        "active_dims": int((kl > _ACTIVE_KL).sum()) if model.variational else None,
        "active_dims_by_variance": int((variance > _ACTIVE_KL).sum()),
        "dims_by_information": order,
        "probe_r2": dict(zip(names, (float(v) for v in r2), strict=True)),
    }
    write_pictures(model, config["env_id"], held.test, test, order, out_dir, n_samples, seed, device)
    cli.atomic_write(out_dir / "metrics.json", lambda f: f.write(json.dumps(metrics, indent=2).encode()))
    return metrics


def write_pictures(model: MyVAE, env_id: str, test: dict[str, np.ndarray], codes: dict[str, np.ndarray],
                   order: list[int], out_dir: Path, n_samples: int, seed: int, device: torch.device) -> None:
    x = to_unit_float(torch.from_numpy(test["frames"][:_INTERPOLATION_POOL]).to(device))
    save_comparison(x[:8], model.reconstruct(x[:8]), out_dir / "reconstructions.png")
    kl = latent_activity(model, codes)[0] if model.variational else None
    save_traversal(model, order, kl, out_dir / "traversal.png")
    save_interpolation(model, x, out_dir / "interpolation.png")
    save_samples(model.sample(n_samples, torch.Generator().manual_seed(seed)), out_dir / "samples.png")
    angles = [frames.pole_angle(env_id, state) for state in test["states"]]
    if angles[0] is not None:
        colour, label = angles, "pole angle (rad)"
    elif test["states"].shape[1]:
        colour, label = test["states"][:, 0], frames.state_names(env_id, 1)[0]
    else:  # an env that observes images has no state vector: colour by time in the episode
        colour, label = test["step"], "step in the episode"
    plot_latent_scatter(codes["mu"], order, colour, label, out_dir / "latent_scatter.png")


def summary(metrics: dict) -> str:
    """One screen of text."""
    kind = "VAE" if metrics["variational"] else "autoencoder"
    lines = [
        f"{kind} {metrics['checkpoint']}: {metrics['frames_scored']} {metrics['env_id']} frames ({metrics['data']})",
        f"  reconstruction MSE {metrics['mse']:.5f} per pixel, PSNR {metrics['psnr_db']:.1f} dB",
        f"  samples from N(0, I), MSE to the nearest real frame: median {metrics['sample_nearest_mse_median']:.5f}, "
        f"90th percentile {metrics['sample_nearest_mse_p90']:.5f}",
    ]
    if metrics["variational"]:
        kl = ", ".join(f"{v:.2f}" for v in metrics["kl_per_dim"])
        lines.append(f"  KL per latent dimension (nats): {kl}")
        n_dims = len(metrics["kl_per_dim"])
        lines.append(f"  active dimensions (mean KL > {_ACTIVE_KL} nats, so the code carries information there): "
                     f"{metrics['active_dims']} of {n_dims}")
    else:  # an autoencoder has no KL: a dimension is active where its code varies across frames
        lines.append(f"  active dimensions (code variance across frames > {_ACTIVE_KL}): "
                     f"{metrics['active_dims_by_variance']}")
    lines.append("  linear probe from the latent mean to the true state, R^2 on held-out frames:")
    lines += [f"    {name:<24} {r2:6.3f}" for name, r2 in metrics["probe_r2"].items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    cfg = cli.parse_config(__name__, argv)
    cli.require(cfg.fresh == 0 or cfg.fresh >= 50, f"FRESH must be 0 or at least 50 frames, got {cfg.fresh}")
    cli.require(cfg.n_samples >= 1, f"N_SAMPLES must be at least 1, got {cfg.n_samples}")
    cli.require(cfg.quality_samples >= 1, f"QUALITY_SAMPLES must be at least 1, got {cfg.quality_samples}")
    cli.require_seed(cfg.seed)
    out_dir = cli.prepare_out_dir(cfg.out_dir)
    metrics = evaluate(cfg.checkpoint, out_dir, cfg.fresh, cfg.n_samples, cfg.seed, pick_device(cfg.device),
                       cfg.quality_samples)
    print(summary(metrics))
    print(f"wrote {out_dir}/: metrics.json, reconstructions.png, traversal.png, interpolation.png, samples.png, "
          "latent_scatter.png")


if __name__ == "__main__":
    cli.run(main)
