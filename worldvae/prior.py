"""Where a trained model's codes really lie, and drawing new codes from there.

A VAE's decoder is trained on the codes of real frames, and those need not fill N(0, I): on
Pendulum the angle is a circle, the codes lie on a ring, and a draw from N(0, I) lands inside
it, where the decoder blends every angle at once. So, after training, a Gaussian mixture is
fitted to the codes of the training frames (as Ghosh et al., "From Variational to Deterministic
Autoencoders", ICLR 2020, do for their autoencoders) and stored in vae.pt; sample_vae.py draws
from it by default. It is a density: each draw is a new code near where codes lie, never the
code of a stored frame. N(0, I), the homework's prior, stays one switch away (--prior normal).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from MyVAE import MyVAE
from worldvae import codes, readers, store
from worldvae.checkpoints import build_vae, load_checkpoint, write_checkpoint
from worldvae.cli import require

PRIORS = ("auto", "fitted", "normal")  # auto: the fitted mixture where a checkpoint holds one, else N(0, I)
COMPONENTS = 32  # Gaussians in the mixture: 16 left 12% of Pendulum's samples implausible, 32 left 5%
FIT_FRAMES = 8000  # the first training frames (in shard order) whose codes the mixture is fitted to
_ITERATIONS = 100  # EM steps at most; it stops once the mean log-likelihood moves less than _TOLERANCE
_TOLERANCE = 1e-4
_RIDGE = 1e-4  # added to each covariance, times the codes' mean variance: a component on a few codes stays proper


def fit_mixture(codes: np.ndarray, components: int = COMPONENTS, seed: int = 0) -> dict[str, torch.Tensor]:
    """A Gaussian mixture with full covariances fitted to `codes` (N, D) by expectation-maximization,
    started from k-means++ centres: its weights (K,), means (K, D) and the Cholesky factors of its
    covariances (K, D, D), as float32 tensors (what a checkpoint stores). Components that end with less
    than one code's weight are dropped, so K may be under `components`."""
    x = np.asarray(codes, dtype=np.float64)
    n, dim = x.shape
    k = max(1, min(components, n // (dim + 1)))  # each component needs more codes than it has parameters per axis
    rng = np.random.default_rng(seed)
    ridge = _RIDGE * max(float(x.var(0).mean()), 1e-12) * np.eye(dim)
    resp = _kmeans_responsibilities(x, k, rng)
    previous = -np.inf
    for _ in range(_ITERATIONS):
        weights, means, covariances = _maximize(x, resp, ridge)
        log_joint = _log_joint(x, weights, means, np.linalg.cholesky(covariances))
        top = log_joint.max(1, keepdims=True)
        log_norm = top + np.log(np.exp(log_joint - top).sum(1, keepdims=True))
        resp = np.exp(log_joint - log_norm)
        likelihood = float(log_norm.mean())
        if likelihood - previous < _TOLERANCE:
            break
        previous = likelihood
    weights, means, covariances = _maximize(x, resp, ridge)
    kept = weights * n >= 1  # a component that holds less than one code is empty: it would sit at the origin
    weights, means, covariances = weights[kept] / weights[kept].sum(), means[kept], covariances[kept]
    return {"weights": torch.tensor(weights, dtype=torch.float32), "means": torch.tensor(means, dtype=torch.float32),
            "scale_tril": torch.tensor(np.linalg.cholesky(covariances), dtype=torch.float32)}


def fit_to_checkpoint(path: Path, frame_store: store.Store, cfg: SimpleNamespace, device: torch.device) -> None:
    """Fit the mixture to the codes of the first FIT_FRAMES training frames of a run (its constants `cfg`,
    its frames in `frame_store`), as the model saved at `path` encodes them, and store it there."""
    start = time.perf_counter()
    checkpoint = load_checkpoint(path)
    shards = range(len(store.shard_sizes(cfg.n_frames, cfg.shard_frames)))
    frames = readers.read_part(frame_store, shards, cfg.val_fraction, cfg.seed, "train", FIT_FRAMES)["frames"]
    mu = codes.code_means(build_vae(checkpoint, device), frames, device, "encoding the frames the prior is fitted to")
    mixture = fit_mixture(mu, seed=cfg.seed)
    write_checkpoint(path, checkpoint | {"prior": mixture})
    print(f"fitted the prior, {len(mixture['weights'])} Gaussians, to the codes of {len(mu)} training frames, in "
          f"{time.perf_counter() - start:.1f}s; stored in {path}")


def draw_codes(prior: dict[str, torch.Tensor] | None, n: int, latent_dim: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """n codes (n, latent_dim) on the CPU: from the fitted mixture, or from N(0, I) when `prior` is None.
    Every sample in this repo is drawn here."""
    if prior is None:
        return torch.randn(n, latent_dim, generator=generator)
    component = torch.multinomial(prior["weights"].float(), n, replacement=True, generator=generator)
    eps = torch.randn(n, latent_dim, 1, generator=generator)
    return prior["means"].float()[component] + (prior["scale_tril"].float()[component] @ eps)[..., 0]


def new_frame_batches(model: MyVAE, prior: dict[str, torch.Tensor] | None, n: int,
                      generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """n frames decoded from codes drawn from `prior` (None: N(0, I)), in eval mode, codes.FRAMES_PER_BATCH
    at a time: the decoder's frames for all n at once could exceed memory (100,000 of 64 px: 5 GB)."""
    for z in draw_codes(prior, n, model.latent_dim, generator).split(codes.FRAMES_PER_BATCH):
        yield model.generate(z)


def new_frames(model: MyVAE, prior: dict[str, torch.Tensor] | None, n: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """n frames decoded from codes drawn from `prior` (None: N(0, I)), all at once: what a picture shows."""
    return torch.cat(list(new_frame_batches(model, prior, n, generator)))


def choose(checkpoint: dict, name: str, path: str | Path) -> tuple[str, dict[str, torch.Tensor] | None]:
    """The prior PRIOR names for this checkpoint, resolved ("auto": its fitted mixture where it holds one,
    else N(0, I)), and its mixture (None for N(0, I))."""
    require(name in PRIORS, f"PRIOR must be one of {', '.join(PRIORS)}, got {name!r}")
    if name == "auto":
        name = "fitted" if "prior" in checkpoint else "normal"
    if name == "normal":
        return name, None
    require("prior" in checkpoint, f"{path} holds no fitted prior (it was written before train_vae.py fitted one): "
            "sample with --prior normal, or train it again")
    return name, checkpoint["prior"]


def caption(prior_name: str) -> str:
    """What drew a picture's codes, for its title."""
    return ("a Gaussian mixture fitted to the training frames' codes" if prior_name == "fitted"
            else "z ~ N(0, I), the VAE's prior")


def _kmeans_responsibilities(x: np.ndarray, k: int, rng: np.random.Generator, rounds: int = 10) -> np.ndarray:
    """Hard assignments (N, K) to k-means centres seeded by k-means++: EM's starting point."""
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        gap = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(x[rng.choice(len(x), p=gap / gap.sum())] if gap.sum() > 0 else x[rng.integers(len(x))])
    centres = np.array(centres)
    for _ in range(rounds):
        label = ((x[:, None, :] - centres[None]) ** 2).sum(2).argmin(1)
        centres = np.array([x[label == j].mean(0) if (label == j).any() else centres[j] for j in range(k)])
    return np.eye(k)[label]


def _maximize(x: np.ndarray, resp: np.ndarray, ridge: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM's M-step: each component's weight, mean and covariance from the responsibilities."""
    mass = resp.sum(0) + 1e-10
    means = resp.T @ x / mass[:, None]
    covariances = np.stack([(r[:, None] * (x - m)).T @ (x - m) for r, m in zip(resp.T, means, strict=True)])
    covariances = covariances / mass[:, None, None] + ridge
    return mass / len(x), means, covariances


def _log_joint(x: np.ndarray, weights: np.ndarray, means: np.ndarray, scale_tril: np.ndarray) -> np.ndarray:
    """log(weight_k) + log N(x | mean_k, L_k L_k^T) for every code and component: (N, K)."""
    dim = x.shape[1]
    out = np.empty((len(x), len(weights)))
    for j, (mean, tril) in enumerate(zip(means, scale_tril, strict=True)):
        whitened = (x - mean) @ np.linalg.inv(tril).T  # L^-1 (x - mean): its squared norm is the Mahalanobis
        log_det = 2 * np.log(np.diag(tril)).sum()
        out[:, j] = np.log(max(weights[j], 1e-300)) - 0.5 * ((whitened**2).sum(1) + log_det + dim * np.log(2 * np.pi))
    return out
