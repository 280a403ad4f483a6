"""Collect filtered frames from a Gymnasium env, then train a (variational) autoencoder on them.

    python train_vae.py                       # CartPole-v1, the defaults below
    python train_vae.py --env_id Pendulum-v1  # any constant can be overridden like this
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

import cli
from cli import UserError
from images import plot_curves, save_comparison
from MyVAE import MyVAE, pick_autocast_dtype, pick_device, save_checkpoint

# -----------------------------------------------------------------------------
# data
ENV_ID = "CartPole-v1"  # any classic-control id: CartPole-v1, Pendulum-v1, Acrobot-v1, MountainCar-v0, ...
N_FRAMES = 10_000  # frames to keep after filtering
RESET_AFTER = 20  # every episode is reset after its first RESET_AFTER observations
ANGLE_RANGE = (-0.3, 0.3)  # keep frames whose pole angle (rad) lies here; None keeps all
CROP = None  # (top, bottom, left, right) fractions of the frame to keep; None: the env's default
IMG_SIZE = 64  # frames are resized to IMG_SIZE x IMG_SIZE (a power of two, >= 32)
MAX_STEPS_PER_FRAME = 50  # give up when N_FRAMES * this many observations kept too few
# model
LATENT_DIM = 10  # size of the latent code z
VARIATIONAL = True  # False: a plain autoencoder (no sampling, no KL term)
KL_WEIGHT = 5e-4  # beta: weight of the KL term (nats per frame) against the per-pixel MSE
# training
BATCH_SIZE = 100  # frames per optimizer step
EPOCHS = 10  # passes over the training split
LR = 1e-3  # Adam learning rate
VAL_FRACTION = 0.1  # share of the episodes held out for validation
# system
SEED = 0  # seeds the env, the actions, the split, the weights and the shuffling
OUT_DIR = "outputs"  # dataset, checkpoints, metrics and pictures go here
DEVICE = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, mps
PRECISION = "auto"  # auto (bf16 autocast where the hardware has it), bf16, fp32
CHANNELS_LAST = True  # NHWC memory layout: faster convolutions on CPU and recent GPUs
# -----------------------------------------------------------------------------

# What each env family needs to know; an env not listed has no angle and keeps its full frame.
_ANGLE_OF_STATE = {
    "CartPole": lambda obs: obs[2],  # pole angle from vertical
    "Pendulum": lambda obs: np.arctan2(obs[1], obs[0]),  # obs = [cos, sin, velocity]
    "Acrobot": lambda obs: np.arctan2(obs[1], obs[0]),  # first link; obs starts [cos, sin]
}
_DEFAULT_CROP = {"CartPole": (0.4, 1.0, 0.0, 1.0)}  # the cart runs in the lower part of the frame
_FULL_FRAME = (0.0, 1.0, 0.0, 1.0)
_NUM_EVAL_IMAGES = 8  # frames shown in reconstructions.png


# ---------------------------------------------------------------- configuration


def env_family(env_id: str) -> str:
    """'CartPole-v1' -> 'CartPole' (the part that decides crop and angle)."""
    return env_id.split("/")[-1].split("-v")[0]


def resolve_crop(env_id: str, crop: tuple[float, ...] | None) -> tuple[float, ...]:
    return crop if crop is not None else _DEFAULT_CROP.get(env_family(env_id), _FULL_FRAME)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def validate_config(cfg: SimpleNamespace) -> None:
    """Reject bad constants with one clear message, before any work starts."""
    make_env(cfg.env_id, cfg.seed).close()  # an unknown id first: the other checks depend on the env
    for name in ("n_frames", "reset_after", "latent_dim", "epochs", "max_steps_per_frame"):
        _require(getattr(cfg, name) >= 1, f"{name.upper()} must be at least 1, got {getattr(cfg, name)}")
    _require(cfg.batch_size >= 2, f"BATCH_SIZE must be at least 2 (BatchNorm), got {cfg.batch_size}")
    _require(cfg.lr > 0, f"LR must be positive, got {cfg.lr}")
    _require(cfg.kl_weight >= 0, f"KL_WEIGHT must be zero or positive, got {cfg.kl_weight}")
    _require(0 < cfg.val_fraction < 1, f"VAL_FRACTION must lie strictly between 0 and 1, got {cfg.val_fraction}")
    _require(
        cfg.img_size >= 32 and cfg.img_size & (cfg.img_size - 1) == 0,
        f"IMG_SIZE must be a power of two >= 32, got {cfg.img_size}",
    )
    if cfg.angle_range is not None:
        _require(
            len(cfg.angle_range) == 2 and cfg.angle_range[0] < cfg.angle_range[1],
            f"ANGLE_RANGE must be (low, high) with low < high, or None; got {cfg.angle_range}",
        )
        _require(
            env_family(cfg.env_id) in _ANGLE_OF_STATE,
            f"{cfg.env_id} has no pole angle to filter on: set ANGLE_RANGE to None "
            f"(envs with an angle: {', '.join(_ANGLE_OF_STATE)})",
        )
    if cfg.crop is not None:
        top, bottom, left, right = cfg.crop if len(cfg.crop) == 4 else (0, 0, 0, 0)
        _require(
            0 <= top < bottom <= 1 and 0 <= left < right <= 1,
            f"CROP must be (top, bottom, left, right) fractions with 0 <= top < bottom <= 1 and "
            f"0 <= left < right <= 1; got {cfg.crop}",
        )
    n_train = int(cfg.n_frames * (1 - cfg.val_fraction))
    _require(
        n_train >= cfg.batch_size,
        f"the training split (~{n_train} frames) is smaller than BATCH_SIZE={cfg.batch_size}: "
        "raise N_FRAMES or lower BATCH_SIZE",
    )


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- collection


def make_env(env_id: str, seed: int) -> gym.Env:
    """The env rendering off-screen, its action sampler seeded."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # rgb_array needs no window
    try:
        env = gym.make(env_id, render_mode="rgb_array")
    except gym.error.Error as error:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UserError(f"ENV_ID={env_id!r} cannot be made ({error}){hint}") from None
    if "rgb_array" not in env.metadata.get("render_modes", []):
        env.close()
        raise UserError(f"ENV_ID={env_id!r} cannot render rgb_array frames; pick a classic-control env")
    env.action_space.seed(seed)
    return env


def preprocess_frame(frame: np.ndarray, crop: Sequence[float], img_size: int) -> np.ndarray:
    """(H, W, 3) render -> cropped, area-averaged (antialiased) (3, img_size, img_size) uint8."""
    height, width = frame.shape[:2]
    top, bottom, left, right = crop
    box = (left * width, top * height, right * width, bottom * height)
    image = Image.fromarray(frame).resize((img_size, img_size), Image.Resampling.BOX, box=box)
    return np.asarray(image).transpose(2, 0, 1)


def collect_frames(
    env_id: str,
    n_frames: int,
    reset_after: int,
    angle_range: tuple[float, float] | None,
    crop: Sequence[float],
    img_size: int,
    seed: int,
    max_observations: int,
) -> dict[str, np.ndarray]:
    """Run random actions until `n_frames` observations pass the filters; render only those.

    Filters: (1) each episode is reset after its first `reset_after` observations, so
    no episode contributes more than that; (2) an observation is kept only if its pole
    angle lies in `angle_range`. A rejected observation is never rendered nor stored.
    """
    env = make_env(env_id, seed)
    angle_of = _ANGLE_OF_STATE.get(env_family(env_id))
    obs_dim = env.observation_space.shape[0]
    frames = np.empty((n_frames, 3, img_size, img_size), dtype=np.uint8)
    states = np.empty((n_frames, obs_dim), dtype=np.float32)
    episodes = np.empty(n_frames, dtype=np.int32)
    steps = np.empty(n_frames, dtype=np.int32)
    kept = seen = rejected_angle = episode = step = ended_by_env = 0

    obs, _ = env.reset(seed=seed)
    done = False
    with tqdm(total=n_frames, desc="collecting", unit="frame", leave=False, disable=None) as bar:
        while kept < n_frames and seen < max_observations:
            seen += 1
            if angle_range is None or angle_range[0] <= angle_of(obs) <= angle_range[1]:
                frames[kept] = preprocess_frame(env.render(), crop, img_size)
                states[kept], episodes[kept], steps[kept] = obs, episode, step
                kept += 1
                bar.update()
            else:
                rejected_angle += 1
            step += 1
            if done or step >= reset_after:
                ended_by_env += done
                obs, _ = env.reset()
                done, step, episode = False, 0, episode + 1
            else:
                obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
                done = terminated or truncated
    env.close()

    summary = (
        f"{seen} observations in {episode + 1} episodes ({ended_by_env} ended by the env, "
        f"the rest reset after {reset_after}): kept {kept}, rejected by ANGLE_RANGE={angle_range}: "
        f"{rejected_angle}"
    )
    if kept < n_frames:
        raise UserError(
            f"the filters kept only {kept} of N_FRAMES={n_frames} frames: {summary}; "
            "widen ANGLE_RANGE (or set it to None), or lower N_FRAMES"
        )
    print(f"collected {env_id}: {summary}")
    return {"frames": frames, "states": states, "episode": episodes, "step": steps}


# ---------------------------------------------------------------- dataset cache


def collection_settings(cfg: SimpleNamespace) -> dict:
    """Everything that decides the dataset's contents: a cache is reused only if these match."""
    return {
        "env_id": cfg.env_id,
        "n_frames": cfg.n_frames,
        "reset_after": cfg.reset_after,
        "angle_range": list(cfg.angle_range) if cfg.angle_range is not None else None,
        "crop": list(resolve_crop(cfg.env_id, cfg.crop)),
        "img_size": cfg.img_size,
        "seed": cfg.seed,
    }


def dataset_path(out_dir: str | Path, env_id: str) -> Path:
    return Path(out_dir) / f"frames_{env_id.replace('/', '_')}.npz"


def _checksum(data: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(data[key]).tobytes())
    return digest.hexdigest()


def save_dataset(path: Path, data: dict[str, np.ndarray], settings: dict) -> None:
    """Compressed .npz with the settings and a checksum of its arrays, written atomically."""
    meta = json.dumps({"settings": settings, "sha256": _checksum(data)})
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, meta=np.array(meta), **data)
    os.replace(tmp, path)


def load_dataset(path: Path, settings: dict) -> dict[str, np.ndarray] | None:
    """The cached dataset if it was made with `settings` and is intact; else None, saying why."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in ("frames", "states", "episode", "step")}
            meta = json.loads(str(npz["meta"]))
    except Exception as error:  # zip, json, key and value errors all mean the same thing here
        print(f"{path} is unreadable ({type(error).__name__}); collecting again")
        return None
    if meta.get("settings") != settings:
        print(f"{path} was collected with other settings; collecting again")
        return None
    if meta.get("sha256") != _checksum(data):
        print(f"{path} does not match its checksum; collecting again")
        return None
    return data


def load_or_collect(cfg: SimpleNamespace, out_dir: Path) -> dict[str, np.ndarray]:
    settings = collection_settings(cfg)
    path = dataset_path(out_dir, cfg.env_id)
    data = load_dataset(path, settings)
    if data is not None:
        print(f"reusing {len(data['frames'])} frames from {path}")
        return data
    start = time.perf_counter()
    data = collect_frames(
        cfg.env_id,
        cfg.n_frames,
        cfg.reset_after,
        cfg.angle_range,
        settings["crop"],
        cfg.img_size,
        cfg.seed,
        cfg.n_frames * cfg.max_steps_per_frame,
    )
    save_dataset(path, data, settings)
    print(f"collection took {time.perf_counter() - start:.1f}s; saved to {path}")
    return data


# ---------------------------------------------------------------- training


def split_by_episode(episodes: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices for training and validation; whole episodes go to one side only,
    so near-duplicate neighbouring frames cannot leak into validation."""
    ids, counts = np.unique(episodes, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val_episodes = int(np.searchsorted(np.cumsum(counts[order]), val_fraction * len(episodes)) + 1)
    val_ids = ids[order[:n_val_episodes]]
    is_val = np.isin(episodes, val_ids)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


@dataclass(frozen=True)
class Compute:
    """Where and how batches run: device, autocast dtype and memory layout."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False

    @classmethod
    def from_config(cls, cfg: SimpleNamespace) -> Compute:
        device = pick_device(cfg.device)
        return cls(device, pick_autocast_dtype(cfg.precision, device), cfg.channels_last)

    def inputs(self, frames: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """uint8 frames at `idx` -> float batch in [0, 1] on the device; only a batch is ever float."""
        x = frames[idx].to(self.device, non_blocking=True).float().div_(255)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    def prepare(self, model: MyVAE) -> MyVAE:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def __str__(self) -> str:
        dtype = str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else "fp32"
        return f"{self.device}, {dtype}{', channels_last' if self.channels_last else ''}"


def batch_indices(
    idx: torch.Tensor, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
) -> Iterator[torch.Tensor]:
    """Index batches over `idx`, shuffled when a generator is given."""
    if generator is not None:
        idx = idx[torch.randperm(len(idx), generator=generator)]
    stop = len(idx) - len(idx) % batch_size if drop_last else len(idx)
    for start in range(0, stop, batch_size):
        yield idx[start : start + batch_size]


def train_epoch(
    model: MyVAE,
    optimizer: torch.optim.Optimizer,
    frames: torch.Tensor,
    train_idx: torch.Tensor,
    cfg: SimpleNamespace,
    generator: torch.Generator,
    compute: Compute,
    desc: str,
) -> dict[str, float]:
    """One shuffled pass over the training split; mean loss parts over its batches."""
    model.train()
    totals = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
    n_batches = len(train_idx) // cfg.batch_size
    # drop_last: a final batch of one frame would break BatchNorm
    batches = batch_indices(train_idx, cfg.batch_size, generator, drop_last=True)
    for idx in tqdm(batches, total=n_batches, desc=desc, unit="batch", leave=False, disable=None):
        with compute.autocast():
            parts = model.loss(*model(compute.inputs(frames, idx)), kl_weight=cfg.kl_weight)
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        optimizer.step()
        for key in totals:
            totals[key] += parts[key].item()
    return {key: value / n_batches for key, value in totals.items()}


@torch.no_grad()
def evaluate(
    model: MyVAE, frames: torch.Tensor, idx: torch.Tensor, kl_weight: float, batch_size: int, compute: Compute
) -> dict[str, float]:
    """Loss parts over `idx` in eval mode (decoding mu), weighted by batch size."""
    model.eval()
    totals = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
    for batch in batch_indices(idx, batch_size):
        with compute.autocast():
            parts = model.loss(*model(compute.inputs(frames, batch)), kl_weight=kl_weight)
        for key in totals:
            totals[key] += parts[key].item() * len(batch)
    return {key: value / len(idx) for key, value in totals.items()}


def write_metrics(history: list[dict], out_dir: Path) -> None:
    """metrics.csv and loss_curves.png from the per-epoch records so far."""
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    epochs = [row["epoch"] for row in history]
    plot_curves(
        epochs,
        {
            "reconstruction MSE per pixel": {
                "train": [row["train_recon"] for row in history],
                "validation": [row["val_recon"] for row in history],
            },
            "KL (nats per frame)": {
                "train": [row["train_kl"] for row in history],
                "validation": [row["val_kl"] for row in history],
            },
        },
        out_dir / "loss_curves.png",
    )


def save_reconstructions(
    model: MyVAE, frames: torch.Tensor, val_idx: torch.Tensor, compute: Compute, path: Path
) -> None:
    """The first validation frames above their (eval-mode) reconstructions."""
    model.eval()
    x = compute.inputs(frames, val_idx[:_NUM_EVAL_IMAGES])
    with compute.autocast():
        save_comparison(x, model.reconstruct(x), path)


def train(cfg: SimpleNamespace, data: dict[str, np.ndarray], out_dir: Path, compute: Compute) -> list[dict]:
    """Train with Adam, score the validation split each epoch, keep the best checkpoint."""
    train_np, val_np = split_by_episode(data["episode"], cfg.val_fraction, cfg.seed)
    _require(
        len(train_np) >= cfg.batch_size,
        f"the training split has {len(train_np)} frames, fewer than BATCH_SIZE={cfg.batch_size}: "
        "raise N_FRAMES or lower BATCH_SIZE",
    )
    print(f"training on {len(train_np)} frames, validating on {len(val_np)} (held-out episodes) on {compute}")
    frames = torch.from_numpy(data["frames"])
    train_idx, val_idx = torch.from_numpy(train_np), torch.from_numpy(val_np)

    torch.manual_seed(cfg.seed)
    model = compute.prepare(MyVAE(latent_dim=cfg.latent_dim, variational=cfg.variational, img_size=cfg.img_size))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    shuffle = torch.Generator().manual_seed(cfg.seed)

    history: list[dict] = []
    best_val = math.inf
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        train_parts = train_epoch(
            model, optimizer, frames, train_idx, cfg, shuffle, compute, desc=f"epoch {epoch}/{cfg.epochs}"
        )
        val_parts = evaluate(model, frames, val_idx, cfg.kl_weight, cfg.batch_size, compute)
        seconds = time.perf_counter() - start
        history.append(
            {"epoch": epoch}
            | {f"train_{k}": v for k, v in train_parts.items()}
            | {f"val_{k}": v for k, v in val_parts.items()}
            | {"seconds": round(seconds, 2)}
        )
        improved = val_parts["loss"] < best_val
        best_val = min(best_val, val_parts["loss"])
        tqdm.write(
            f"epoch {epoch}/{cfg.epochs}: train loss {train_parts['loss']:.5f} "
            f"(recon {train_parts['recon']:.5f}, kl {train_parts['kl']:.2f}) | "
            f"val loss {val_parts['loss']:.5f} (recon {val_parts['recon']:.5f}, kl {val_parts['kl']:.2f}) | "
            f"{seconds:.1f}s{' *' if improved else ''}"
        )
        if improved:
            save_checkpoint(
                out_dir / "vae.pt", model, config=vars(cfg), epoch=epoch, best_val_loss=best_val, metrics=history
            )
        write_metrics(history, out_dir)
        save_reconstructions(model, frames, val_idx, compute, out_dir / "reconstructions.png")
    return history


def main(argv: Sequence[str] | None = None) -> None:
    cfg = cli.parse_config(__name__, argv)
    validate_config(cfg)
    out_dir = cli.prepare_out_dir(cfg.out_dir)
    compute = Compute.from_config(cfg)
    (out_dir / "config.json").write_text(json.dumps(vars(cfg), indent=2))
    start = time.perf_counter()
    seed_everything(cfg.seed)
    data = load_or_collect(cfg, out_dir)
    history = train(cfg, data, out_dir, compute)
    best = min(history, key=lambda row: row["val_loss"])
    elapsed = time.perf_counter() - start
    print(f"done in {elapsed:.0f}s; best validation loss {best['val_loss']:.5f} at epoch {best['epoch']}")
    for name in ("vae.pt", "metrics.csv", "loss_curves.png", "reconstructions.png", "config.json"):
        print(f"  {out_dir / name}")
    print(f"  {dataset_path(out_dir, cfg.env_id)}")
    print("next: python sample_vae.py")


if __name__ == "__main__":
    cli.run(main)
