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
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import cli
import train_vae
from images import save_comparison, save_grid
from MyVAE import MyVAE, build_vae, kl_per_dim, load_checkpoint, pick_device
from sample_vae import TRAVERSAL_VALUES, dims_by_information, interpolation, traversal

# -----------------------------------------------------------------------------
CHECKPOINT = "outputs/vae.pt"  # a checkpoint written by train_vae.py
FRESH = 0  # 0: score on the checkpoint's own validation episodes; N: on N new frames from another seed
N_SAMPLES = 16  # random samples drawn for samples.png
SEED = 0  # seeds those samples
OUT_DIR = "outputs/eval"  # metrics.json and the pictures go here
DEVICE = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, mps
# -----------------------------------------------------------------------------

ACTIVE_KL = 0.01  # nats: a latent dimension carrying less than this on average is inactive
STATE_NAMES = {
    "CartPole": ["cart position", "cart velocity", "pole angle", "pole angular velocity"],
    "Pendulum": ["cos(angle)", "sin(angle)", "angular velocity"],
    "MountainCar": ["position", "velocity"],
}


@torch.no_grad()
def encode(model: MyVAE, frames: np.ndarray, device: torch.device, batch: int = 250) -> dict[str, np.ndarray]:
    """mu, log_var and per-frame reconstruction MSE, in eval mode (decoding mu), in fp32."""
    model.eval()
    parts = {"mu": [], "log_var": [], "mse": []}
    for start in range(0, len(frames), batch):
        x = torch.from_numpy(frames[start : start + batch]).to(device).float().div(255)
        recon, _, mu, log_var = model(x)
        parts["mu"].append(mu.cpu())
        parts["log_var"].append(log_var.cpu())
        parts["mse"].append(((recon - x) ** 2).flatten(1).mean(1).cpu())
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


def evaluate(checkpoint_path: str | Path, out_dir: Path, fresh: int = 0, n_samples: int = 16, seed: int = 0,
             device: torch.device | None = None) -> dict:
    """Score one checkpoint, write its pictures and metrics.json to out_dir, return the metrics."""
    checkpoint = load_checkpoint(checkpoint_path)
    device = device or torch.device("cpu")
    model = build_vae(checkpoint, device)
    config = checkpoint["config"]
    data, fit_idx, test_idx = train_vae.dataset_for(config, fresh)
    fit, test = encode(model, data["frames"][fit_idx], device), encode(model, data["frames"][test_idx], device)

    mse = float(test["mse"].mean())
    kl, variance = latent_activity(model, test)
    order = dims_by_information(model.variational, torch.from_numpy(test["mu"]), torch.from_numpy(test["log_var"]))
    names = STATE_NAMES.get(train_vae.env_family(config["env_id"]), [])
    names = [names[i] if i < len(names) else f"state {i}" for i in range(data["states"].shape[1])]
    r2 = linear_probe(fit["mu"], data["states"][fit_idx], test["mu"], data["states"][test_idx])
    metrics = {
        "checkpoint": str(checkpoint_path),
        "variational": model.variational,
        "env_id": config["env_id"],
        "frames_scored": int(len(test_idx)),
        "data": f"{fresh} fresh frames, seed {config['seed'] + 1}" if fresh else "the checkpoint's validation episodes",
        "mse": mse,
        "psnr_db": 10 * math.log10(1.0 / mse),
        "kl_per_dim": [float(v) for v in kl],
        "kl_total": float(kl.sum()),
        "active_dims": int((kl > ACTIVE_KL).sum()) if model.variational else None,
        "active_dims_by_variance": int((variance > ACTIVE_KL).sum()),
        "dims_by_information": order,
        "probe_r2": dict(zip(names, (float(v) for v in r2), strict=True)),
    }
    write_pictures(model, config["env_id"], data, test_idx, test, order, out_dir, n_samples, seed, device)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def write_pictures(model: MyVAE, env_id: str, data: dict[str, np.ndarray], test_idx: np.ndarray,
                   codes: dict[str, np.ndarray], order: list[int], out_dir: Path, n_samples: int, seed: int,
                   device: torch.device) -> None:
    x = torch.from_numpy(data["frames"][test_idx[:8]]).to(device).float().div(255)
    save_comparison(x, model.reconstruct(x), out_dir / "reconstructions.png")
    save_grid(traversal(model, order), out_dir / "traversal.png", ncols=len(TRAVERSAL_VALUES))
    far = int(((x - x[0]) ** 2).flatten(1).sum(1).argmax())
    frames = interpolation(model, x[0], x[far])
    save_grid(frames, out_dir / "interpolation.png", ncols=len(frames))
    save_grid(model.sample(n_samples, torch.Generator().manual_seed(seed)), out_dir / "samples.png")
    states = data["states"][test_idx]
    angles = [train_vae.pole_angle(env_id, state) for state in states]
    colour, label = (angles, "pole angle (rad)") if angles[0] is not None else (states[:, 0], "state[0]")
    plot_latent_scatter(codes["mu"], order, colour, label, out_dir / "latent_scatter.png")


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
    fig.savefig(path)


def summary(metrics: dict) -> str:
    """One screen of text."""
    kind = "VAE" if metrics["variational"] else "autoencoder"
    lines = [
        f"{kind} {metrics['checkpoint']}: {metrics['frames_scored']} {metrics['env_id']} frames ({metrics['data']})",
        f"  reconstruction MSE {metrics['mse']:.5f} per pixel, PSNR {metrics['psnr_db']:.1f} dB",
    ]
    if metrics["variational"]:
        kl = ", ".join(f"{v:.2f}" for v in metrics["kl_per_dim"])
        lines.append(f"  KL per latent dimension (nats): {kl}")
        n_dims = len(metrics["kl_per_dim"])
        lines.append(f"  active dimensions (KL > {ACTIVE_KL}): {metrics['active_dims']} of {n_dims}")
    lines.append(f"  dimensions whose mean varies across frames (> {ACTIVE_KL}): {metrics['active_dims_by_variance']}")
    lines.append("  linear probe from the latent mean to the true state, R^2 on held-out frames:")
    lines += [f"    {name:<24} {r2:6.3f}" for name, r2 in metrics["probe_r2"].items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    cfg = cli.parse_config(__name__, argv)
    if cfg.fresh < 0 or cfg.n_samples < 1:
        raise cli.UserError("FRESH must be 0 or more and N_SAMPLES at least 1")
    out_dir = cli.prepare_out_dir(cfg.out_dir)
    metrics = evaluate(cfg.checkpoint, out_dir, cfg.fresh, cfg.n_samples, cfg.seed, pick_device(cfg.device))
    print(summary(metrics))
    print(f"wrote {out_dir}/: metrics.json, reconstructions.png, traversal.png, interpolation.png, samples.png, "
          "latent_scatter.png")


if __name__ == "__main__":
    cli.run(main)
