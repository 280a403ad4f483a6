"""Collect filtered frames from a Gymnasium env, then train a (variational) autoencoder on them.

    python train_vae.py                       # CartPole-v1, the defaults below
    python train_vae.py --env_id Pendulum-v1  # any constant can be overridden like this
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import functools
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, astuple, dataclass, field
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
from MyVAE import (
    MyVAE,
    load_checkpoint,
    pick_autocast_dtype,
    pick_device,
    save_checkpoint,
)

# -----------------------------------------------------------------------------
# data
ENV_ID = "CartPole-v1"  # any classic-control id: CartPole-v1, Pendulum-v1, Acrobot-v1, MountainCar-v0, ...
N_FRAMES = 4_000  # frames to keep after filtering
RESET_AFTER = 20  # every episode is reset after its first RESET_AFTER observations
ANGLE_RANGE = (-0.3, 0.3)  # keep frames whose pole angle (rad) lies here; None keeps all
CROP = None  # (top, bottom, left, right) fractions of the frame to keep; None: the env's default
IMG_SIZE = 64  # frames are resized to IMG_SIZE x IMG_SIZE (a power of two, >= 32)
MAX_STEPS_PER_FRAME = 50  # give up when N_FRAMES * this many observations kept too few
N_ENVS = 0  # worker processes that collect in parallel; 0: one per CPU core, 1: no workers
FAST_RENDER = True  # CartPole: draw only the kept rows, straight to a small image (same picture, ~3x faster)
# model
LATENT_DIM = 10  # size of the latent code z
VARIATIONAL = True  # False: a plain autoencoder (no sampling, no KL term)
KL_WEIGHT = 2e-5  # beta: weight of the KL term (nats per frame) against the per-pixel MSE
# training
BATCH_SIZE = 32  # frames per optimizer step
EPOCHS = 3  # passes over the training split
LR = 2e-3  # Adam learning rate
VAL_FRACTION = 0.1  # share of the episodes held out for validation
# system
SEED = 0  # seeds the env, the actions, the split, the weights and the shuffling
OUT_DIR = "outputs"  # dataset, checkpoints, metrics and pictures go here
RESUME = False  # continue from OUT_DIR/last.pt: weights, optimizer, epoch, random states, metrics
DEVICE = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, mps
PRECISION = "auto"  # auto (bf16 autocast where the hardware has it), bf16, fp32
CHANNELS_LAST = True  # NHWC memory layout: faster convolutions on CPU and recent GPUs
COMPILE = "auto"  # torch.compile the training forward: auto (CUDA only; no gain measured on CPU), on, off
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
_LOSS_PARTS = ("loss", "recon", "kl")
_MAY_CHANGE_ON_RESUME = {"epochs", "resume", "device", "precision", "channels_last", "compile", "out_dir"}
_CHUNK_FRAMES = 250  # frames per collection chunk: the unit of seeding, parallel work and resumption


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


# ---------------------------------------------------------------- collection


def make_env(env_id: str, seed: int) -> gym.Env:
    """The env rendering off-screen, its action sampler seeded."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # rgb_array needs no window
    try:
        with warnings.catch_warnings():  # gymnasium only warns about a missing render mode; we refuse below
            warnings.filterwarnings("ignore", message=".*render_mode")
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


def _resize(image: Image.Image, box: tuple[float, float, float, float], img_size: int) -> np.ndarray:
    """Area-average (antialias) the `box` region of `image` to (3, img_size, img_size) uint8."""
    small = image.resize((img_size, img_size), Image.Resampling.BOX, box=box)
    return np.asarray(small.convert("RGB")).transpose(2, 0, 1)


def preprocess_frame(frame: np.ndarray, crop: Sequence[float], img_size: int) -> np.ndarray:
    """(H, W, 3) render -> cropped, area-averaged (antialiased) (3, img_size, img_size) uint8."""
    height, width = frame.shape[:2]
    top, bottom, left, right = crop
    return _resize(Image.fromarray(frame), (left * width, top * height, right * width, bottom * height), img_size)


def render_cartpole(env: gym.Env, crop: Sequence[float], img_size: int) -> np.ndarray:
    """CartPole's own drawing (gymnasium's CartPoleEnv.render), cut down to what we keep.

    It draws only the rows the crop keeps, reads the surface without a copy and resizes
    once; the picture matches env.render() followed by preprocess_frame to within a
    fraction of a grey level (tests/test_collect.py checks it), about 3x faster.
    """
    import pygame
    from pygame import gfxdraw

    cart_pole = env.unwrapped
    width, height = cart_pole.screen_width, cart_pole.screen_height
    top, bottom, left, right = crop
    # gymnasium draws with y up and flips the surface at the end; these are the unflipped rows we keep
    row_lo, row_hi = round(height * (1 - bottom)), round(height * (1 - top))
    surface = pygame.Surface((width, row_hi - row_lo))
    surface.fill((255, 255, 255))

    x, _, theta, _ = cart_pole.state
    scale = width / (cart_pole.x_threshold * 2)
    pole_width, pole_length, cart_width, cart_height = 10.0, scale * 2 * cart_pole.length, 50.0, 30.0
    cart_x, cart_y, axle = x * scale + width / 2.0, 100 - row_lo, cart_height / 4.0
    half_w, half_h = cart_width / 2, cart_height / 2
    corners = [(-half_w, -half_h), (-half_w, half_h), (half_w, half_h), (half_w, -half_h)]
    cart = [(cart_x + dx, cart_y + dy) for dx, dy in corners]
    gfxdraw.aapolygon(surface, cart, (0, 0, 0))
    gfxdraw.filled_polygon(surface, cart, (0, 0, 0))
    half_w, tip = pole_width / 2, pole_length - pole_width / 2
    pole = []
    for corner in [(-half_w, -half_w), (-half_w, tip), (half_w, tip), (half_w, -half_w)]:
        dx, dy = pygame.math.Vector2(corner).rotate_rad(-theta)
        pole.append((cart_x + dx, cart_y + axle + dy))
    gfxdraw.aapolygon(surface, pole, (202, 152, 101))
    gfxdraw.filled_polygon(surface, pole, (202, 152, 101))
    axle_at, radius = (int(cart_x), int(cart_y + axle)), int(pole_width / 2)
    gfxdraw.aacircle(surface, *axle_at, radius, (129, 132, 203))
    gfxdraw.filled_circle(surface, *axle_at, radius, (129, 132, 203))
    gfxdraw.hline(surface, 0, width, int(cart_y), (0, 0, 0))

    # a 32-bit surface is B, G, R, X in memory: Pillow reads it in place
    image = Image.frombuffer("RGBX", surface.get_size(), surface.get_buffer(), "raw", "BGRX", surface.get_pitch(), 1)
    frame = _resize(image, (left * width, 0, right * width, row_hi - row_lo), img_size)
    return np.ascontiguousarray(frame[:, ::-1])  # the flip gymnasium does, on the small image


def frame_renderer(env_id: str, crop: Sequence[float], img_size: int, fast: bool) -> Callable[[gym.Env], np.ndarray]:
    """The function that turns an env's current state into a training frame."""
    if fast and env_family(env_id) == "CartPole":
        return lambda env: render_cartpole(env, crop, img_size)
    return lambda env: preprocess_frame(env.render(), crop, img_size)


@dataclass
class CollectionStats:
    """What the filters did: every observation is either kept or rejected by the angle."""

    observations: int = 0
    episodes: int = 0
    ended_by_env: int = 0
    kept: int = 0
    rejected_angle: int = 0

    def __add__(self, other: CollectionStats) -> CollectionStats:
        return CollectionStats(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def summary(self, reset_after: int, angle_range: tuple[float, float] | None) -> str:
        return (
            f"{self.observations} observations in {self.episodes} episodes ({self.ended_by_env} ended by the env, "
            f"the rest reset after {reset_after}): kept {self.kept}, rejected by ANGLE_RANGE={angle_range}: "
            f"{self.rejected_angle}"
        )


def pole_angle(env_id: str, obs: np.ndarray) -> float | None:
    """The pole angle (rad) an observation holds, or None for an env without one."""
    angle_of = _ANGLE_OF_STATE.get(env_family(env_id))
    return None if angle_of is None else float(angle_of(obs))


def passes_angle_filter(env_id: str, angle_range: tuple[float, float] | None, obs: np.ndarray) -> bool:
    """Filter (2): no range given, or the pole angle of `obs` lies in it."""
    return angle_range is None or angle_range[0] <= pole_angle(env_id, obs) <= angle_range[1]


def chunk_seed(seed: int, chunk: int) -> int:
    """An independent seed for each chunk, so chunks can run in any order or process."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


def collect_chunk(cfg: SimpleNamespace, index: int, n_frames: int) -> tuple[dict[str, np.ndarray], CollectionStats]:
    """Run random actions until `n_frames` observations pass the filters; render only those.

    Filters: (1) each episode is reset after its first `reset_after` observations, so
    no episode contributes more than that; (2) an observation is kept only if its pole
    angle lies in `angle_range`. A rejected observation is never rendered nor stored.
    Chunk `index` has its own seed; it stops early, with fewer frames, after
    n_frames * MAX_STEPS_PER_FRAME observations.
    """
    seed, angle_range, reset_after = chunk_seed(cfg.seed, index), cfg.angle_range, cfg.reset_after
    env = make_env(cfg.env_id, seed)
    render = frame_renderer(cfg.env_id, resolve_crop(cfg.env_id, cfg.crop), cfg.img_size, cfg.fast_render)
    frames = np.empty((n_frames, 3, cfg.img_size, cfg.img_size), dtype=np.uint8)
    states = np.empty((n_frames, env.observation_space.shape[0]), dtype=np.float32)
    episodes = np.empty(n_frames, dtype=np.int32)
    steps = np.empty(n_frames, dtype=np.int32)
    stats = CollectionStats()

    obs = None  # None: the next observation starts a new episode
    while stats.kept < n_frames and stats.observations < n_frames * cfg.max_steps_per_frame:
        if obs is None:
            obs, _ = env.reset(seed=seed if stats.episodes == 0 else None)
            step, done = 0, False
            stats.episodes += 1
        stats.observations += 1
        if passes_angle_filter(cfg.env_id, angle_range, obs):
            i = stats.kept
            frames[i] = render(env)
            states[i], episodes[i], steps[i] = obs, stats.episodes - 1, step
            stats.kept += 1
        else:
            stats.rejected_angle += 1
        step += 1
        if done or step >= reset_after:
            stats.ended_by_env += done
            obs = None
        else:
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    env.close()
    data = {"frames": frames, "states": states, "episode": episodes, "step": steps}
    return {key: value[: stats.kept] for key, value in data.items()}, stats


def collect_frames(
    cfg: SimpleNamespace, done: dict[str, np.ndarray] | None = None, stop: cli.StopRequests | None = None
) -> tuple[dict[str, np.ndarray], CollectionStats]:
    """N_FRAMES filtered frames, collected in chunks of fixed size and seed, N_ENVS at a time.

    Each chunk is reproducible on its own, so the dataset does not depend on N_ENVS,
    and a collection that was stopped continues from the chunks in `done` to the same
    frames as one that never stopped. A stop request ends it early with fewer frames.
    """
    n_done = 0 if done is None else len(done["frames"])
    pending = [
        (index, start, min(_CHUNK_FRAMES, cfg.n_frames - start))
        for index, start in enumerate(range(0, cfg.n_frames, _CHUNK_FRAMES))
        if start >= n_done
    ]
    data = _empty_dataset(cfg, n_done, done)
    total = CollectionStats()
    next_episode = int(data["episode"][:n_done].max()) + 1 if n_done else 0
    with (
        _chunk_runner(cfg, len(pending)) as run,
        tqdm(total=cfg.n_frames, initial=n_done, desc="collecting", unit="frame", leave=False, disable=None) as bar,
    ):
        for (chunk, stats), (_, start, size) in zip(run(pending), pending, strict=False):
            total += stats
            if stats.kept < size:
                raise UserError(
                    f"the filters kept only {stats.kept} of {size} frames in a chunk of N_FRAMES={cfg.n_frames}: "
                    f"{stats.summary(cfg.reset_after, cfg.angle_range)}; widen ANGLE_RANGE (or set it to None), "
                    "or raise MAX_STEPS_PER_FRAME"
                )
            chunk["episode"] += next_episode  # episode ids continue across chunks, so they stay unique
            next_episode = int(chunk["episode"].max()) + 1
            for key, values in chunk.items():
                data[key][start : start + size] = values
            n_done = start + size
            bar.update(size)
            if stop is not None and stop.signum:
                break
    if n_done == 0:
        raise cli.Stopped(f"stopped by {stop.name} before the first {_CHUNK_FRAMES} frames: nothing saved", stop.signum)
    return {key: values[:n_done] for key, values in data.items()}, total


def _empty_dataset(cfg: SimpleNamespace, n_done: int, done: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Arrays for all N_FRAMES, allocated once (no copies of the whole set), holding `done` first."""
    with contextlib.closing(gym.make(cfg.env_id)) as env:
        obs_dim = env.observation_space.shape[0]
    data = {
        "frames": np.empty((cfg.n_frames, 3, cfg.img_size, cfg.img_size), dtype=np.uint8),
        "states": np.empty((cfg.n_frames, obs_dim), dtype=np.float32),
        "episode": np.empty(cfg.n_frames, dtype=np.int32),
        "step": np.empty(cfg.n_frames, dtype=np.int32),
    }
    for key, values in (done or {}).items():
        data[key][:n_done] = values
    return data


@contextlib.contextmanager
def _chunk_runner(cfg: SimpleNamespace, n_chunks: int) -> Iterator[Callable]:
    """Yields run(pending) -> iterator of chunk results, in order: in this process, or in
    N_ENVS worker processes (0: one per CPU core) when there is more than one chunk.

    Leaving early (a stop, an error) cancels the chunks not yet started and waits for the
    running ones: workers are never killed mid-write, which could hang the pipe back.
    """
    n_workers = min(cfg.n_envs or os.cpu_count() or 1, n_chunks)
    if n_workers <= 1:
        yield lambda pending: (collect_chunk(cfg, index, size) for index, _, size in pending)
        return
    # fork where there is one: workers start at once; they only render and never touch torch
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    pool = ProcessPoolExecutor(n_workers, mp_context=context, initializer=_ignore_signals)
    try:
        yield lambda pending: pool.map(
            functools.partial(collect_chunk, cfg), [index for index, _, _ in pending], [size for *_, size in pending]
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ignore_signals() -> None:
    """Ctrl-C reaches every process in the group, but only the parent decides how to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


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
        digest.update(np.ascontiguousarray(data[key]))  # hashed in place: no bytes copy of the frames
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


def load_or_collect(cfg: SimpleNamespace, out_dir: Path, stop: cli.StopRequests) -> dict[str, np.ndarray]:
    """The cached dataset if it matches the constants; else collect it (continuing a stopped one)."""
    settings = collection_settings(cfg)
    path = dataset_path(out_dir, cfg.env_id)
    data = load_dataset(path, settings)
    if data is not None and len(data["frames"]) == cfg.n_frames:
        print(f"reusing {cfg.n_frames} frames from {path}")
        return data
    if data is not None:
        print(f"continuing the collection stopped at {len(data['frames'])} frames in {path}")
    print(f"collecting {cfg.n_frames} frames from {cfg.env_id}")
    start = time.perf_counter()
    data, stats = collect_frames(cfg, done=data, stop=stop)
    save_dataset(path, data, settings)
    if len(data["frames"]) < cfg.n_frames:
        raise cli.Stopped(
            f"stopped by {stop.name}: saved {len(data['frames'])} of {cfg.n_frames} frames to {path}; "
            "run the same command again to continue",
            stop.signum,
        )
    seconds = time.perf_counter() - start
    print(f"collected {cfg.env_id}: {stats.summary(cfg.reset_after, cfg.angle_range)}")
    print(f"collection took {seconds:.1f}s ({stats.kept / seconds:.0f} frames/s); saved to {path}")
    return data


def dataset_for(config: dict, fresh: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The frames a checkpoint's `config` trained on, with its (train, validation) indices.

    With `fresh` > 0, or when that dataset is gone, `fresh` (or N_FRAMES) new frames are
    collected from another seed instead, so none of them was seen in training.
    """
    cfg = cli.defaults(sys.modules[__name__], **config)
    data = None if fresh else load_dataset(dataset_path(cfg.out_dir, cfg.env_id), collection_settings(cfg))
    if data is None:
        cfg.n_frames, cfg.seed = fresh or cfg.n_frames, cfg.seed + 1
        print(f"collecting {cfg.n_frames} fresh frames from {cfg.env_id} (seed {cfg.seed})")
        data = collect_frames(cfg)[0]
    train_idx, val_idx = split_by_episode(data["episode"], cfg.val_fraction, cfg.seed)
    return data, train_idx, val_idx


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
    """Where and how batches run: device, autocast dtype, memory layout, torch.compile."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def from_config(cls, cfg: SimpleNamespace) -> Compute:
        device = pick_device(cfg.device)
        _require(cfg.compile in ("auto", "on", "off"), f"COMPILE must be 'auto', 'on' or 'off', got {cfg.compile!r}")
        compile_ = cfg.compile == "on" or (cfg.compile == "auto" and device.type == "cuda")
        if compile_ and not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("clang++")):
            print("COMPILE: no C++ compiler found, so the model runs without torch.compile")
            compile_ = False
        return cls(device, pick_autocast_dtype(cfg.precision, device), cfg.channels_last, compile_)

    def inputs(self, frames: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """uint8 frames at `idx` -> float batch in [0, 1] on the device; only a batch is ever float."""
        x = frames[idx].to(self.device, non_blocking=True).float().div_(255)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    def prepare(self, model: MyVAE) -> MyVAE:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def for_training(self, model: MyVAE) -> MyVAE:
        """The module to train through: compiled or not, it shares `model`'s weights, and
        `model` itself (no `_orig_mod.` prefixes) is what checkpoints save."""
        return torch.compile(model) if self.compile else model

    def __str__(self) -> str:
        dtype = str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else "fp32"
        layout = ", channels_last" if self.channels_last else ""
        return f"{self.device}, {dtype}{layout}{', compiled' if self.compile else ''}"


def batch_indices(idx: torch.Tensor, batch_size: int, drop_last: bool = False) -> list[torch.Tensor]:
    """Consecutive batches of `idx`; drop_last leaves out a short final batch."""
    stop = len(idx) - len(idx) % batch_size if drop_last else len(idx)
    return [idx[start : start + batch_size] for start in range(0, stop, batch_size)]


@dataclass
class Progress:
    """Where training stands; last.pt carries it so that a run resumes exactly.

    `shuffle_state` is the shuffling generator's state at the start of epoch `epoch`,
    of which `batch` batches are done, their loss parts summed in `totals`.
    """

    shuffle_state: torch.Tensor
    epoch: int = 1
    batch: int = 0
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_LOSS_PARTS, 0.0))
    history: list[dict] = field(default_factory=list)
    best_val_loss: float = math.inf


def train_epoch(
    model: MyVAE,
    optimizer: torch.optim.Optimizer,
    frames: torch.Tensor,
    batches: list[torch.Tensor],
    progress: Progress,
    cfg: SimpleNamespace,
    compute: Compute,
    stop: cli.StopRequests,
) -> bool:
    """Train on the epoch's batches from `progress.batch` on; False if a stop was requested.

    Raises FloatingPointError on a non-finite loss, before it can reach the weights.
    """
    model.train()
    desc = f"epoch {progress.epoch}/{cfg.epochs}"
    remaining = batches[progress.batch :]
    for idx in tqdm(remaining, desc, len(batches), initial=progress.batch, unit="batch", leave=False, disable=None):
        if stop.signum:
            return False
        with compute.autocast():
            parts = model.loss(*model(compute.inputs(frames, idx)), kl_weight=cfg.kl_weight)
        if not torch.isfinite(parts["loss"]):
            value, step = parts["loss"].item(), progress.batch + 1
            raise FloatingPointError(f"loss is {value} at epoch {progress.epoch}, step {step}")
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        optimizer.step()
        for key in _LOSS_PARTS:
            progress.totals[key] += parts[key].item()
        progress.batch += 1
    return True


@torch.no_grad()
def evaluate(
    model: MyVAE, frames: torch.Tensor, idx: torch.Tensor, kl_weight: float, batch_size: int, compute: Compute
) -> dict[str, float]:
    """Loss parts over `idx` in eval mode (decoding mu), weighted by batch size."""
    model.eval()
    totals = dict.fromkeys(_LOSS_PARTS, 0.0)
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
    def curves(part: str) -> dict[str, list[float]]:
        train, val = f"train_{part}", f"val_{part}"
        return {"train": [row[train] for row in history], "validation": [row[val] for row in history]}

    panels = {"reconstruction MSE per pixel": curves("recon")}
    if any(row["train_kl"] > 0 for row in history):  # an autoencoder has no KL term to plot
        panels["KL (nats per frame)"] = curves("kl")
    plot_curves([row["epoch"] for row in history], panels, out_dir / "loss_curves.png")


def save_reconstructions(
    model: MyVAE, frames: torch.Tensor, val_idx: torch.Tensor, compute: Compute, path: Path
) -> None:
    """The first validation frames above their (eval-mode) reconstructions."""
    model.eval()
    x = compute.inputs(frames, val_idx[:_NUM_EVAL_IMAGES])
    with compute.autocast():
        save_comparison(x, model.reconstruct(x), path)


def save_training_state(
    path: Path, model: MyVAE, optimizer: torch.optim.Optimizer, progress: Progress, cfg: SimpleNamespace
) -> None:
    """Everything a resumed run needs: weights, optimizer, progress and random states."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    save_checkpoint(path, model, config=vars(cfg), optimizer=optimizer.state_dict(), progress=asdict(progress), rng=rng)


def check_resumable(checkpoint: dict, cfg: SimpleNamespace, path: Path) -> None:
    """A run resumes only with the constants that made it (EPOCHS may grow; device and speed knobs may change)."""
    _require("progress" in checkpoint, f"{path} is not a training checkpoint (last.pt holds one)")
    saved = checkpoint["config"]
    changed = [
        f"{name.upper()} {saved.get(name)!r} -> {value!r}"
        for name, value in vars(cfg).items()
        if name not in _MAY_CHANGE_ON_RESUME and saved.get(name) != value
    ]
    _require(
        not changed,
        f"{path} was made with other constants ({'; '.join(changed)}): "
        "use the same ones, or start over without --resume",
    )


def restore_training_state(checkpoint: dict, model: MyVAE, optimizer: torch.optim.Optimizer) -> Progress:
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if "cuda" in checkpoint["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    return Progress(**checkpoint["progress"])


def train(
    cfg: SimpleNamespace,
    data: dict[str, np.ndarray],
    out_dir: Path,
    compute: Compute,
    stop: cli.StopRequests,
    resume: dict | None = None,
) -> list[dict]:
    """Train with Adam, score the validation split each epoch, keep the last and the best checkpoint."""
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
    shuffle = torch.Generator()
    progress = Progress(shuffle.manual_seed(cfg.seed).get_state())
    if resume is not None:
        progress = restore_training_state(resume, model, optimizer)
        print(f"resuming at epoch {progress.epoch}, batch {progress.batch}")
    last_path, best_path = out_dir / "last.pt", out_dir / "vae.pt"
    net = compute.for_training(model)

    while progress.epoch <= cfg.epochs:
        start = time.perf_counter()
        shuffle.set_state(progress.shuffle_state)
        # drop_last: a final batch of one frame would break BatchNorm
        batches = batch_indices(train_idx[torch.randperm(len(train_idx), generator=shuffle)], cfg.batch_size, True)
        try:
            finished = train_epoch(net, optimizer, frames, batches, progress, cfg, compute, stop)
        except FloatingPointError as error:
            kept = f"{last_path} keeps the last good epoch" if last_path.exists() else "no epoch finished"
            raise UserError(f"training diverged: {error}; {kept}; try a lower LR than {cfg.lr}") from None
        if not finished:
            save_training_state(last_path, model, optimizer, progress, cfg)
            raise cli.Stopped(
                f"stopped by {stop.name} in epoch {progress.epoch} after {progress.batch}/{len(batches)} batches; "
                f"saved {last_path}; to continue, run the same command with --resume",
                stop.signum,
            )
        train_parts = {key: value / len(batches) for key, value in progress.totals.items()}
        val_parts = evaluate(model, frames, val_idx, cfg.kl_weight, cfg.batch_size, compute)
        seconds = time.perf_counter() - start
        progress.history.append(
            {"epoch": progress.epoch}
            | {f"train_{k}": v for k, v in train_parts.items()}
            | {f"val_{k}": v for k, v in val_parts.items()}
            | {"seconds": round(seconds, 2)}
        )
        improved = val_parts["loss"] < progress.best_val_loss
        tqdm.write(
            f"epoch {progress.epoch}/{cfg.epochs}: train loss {train_parts['loss']:.5f} "
            f"(recon {train_parts['recon']:.5f}, kl {train_parts['kl']:.2f}) | "
            f"val loss {val_parts['loss']:.5f} (recon {val_parts['recon']:.5f}, kl {val_parts['kl']:.2f}) | "
            f"{seconds:.1f}s{' *' if improved else ''}"
        )
        progress.best_val_loss = min(progress.best_val_loss, val_parts["loss"])
        progress = Progress(
            shuffle.get_state(), progress.epoch + 1, history=progress.history, best_val_loss=progress.best_val_loss
        )
        save_training_state(last_path, model, optimizer, progress, cfg)
        if improved:
            save_checkpoint(best_path, model, config=vars(cfg), epoch=progress.epoch - 1, metrics=progress.history)
        write_metrics(progress.history, out_dir)
        save_reconstructions(model, frames, val_idx, compute, out_dir / "reconstructions.png")
    return progress.history


def main(argv: Sequence[str] | None = None) -> None:
    cfg = cli.parse_config(__name__, argv)
    validate_config(cfg)
    out_dir = cli.prepare_out_dir(cfg.out_dir)
    compute = Compute.from_config(cfg)
    resume = None
    if cfg.resume:
        last_path = out_dir / "last.pt"
        _require(last_path.exists(), f"nothing to resume: no {last_path}; run without --resume to start")
        resume = load_checkpoint(last_path)
        check_resumable(resume, cfg, last_path)
    (out_dir / "config.json").write_text(json.dumps(vars(cfg), indent=2))
    start = time.perf_counter()
    with cli.StopRequests() as stop:
        data = load_or_collect(cfg, out_dir, stop)
        history = train(cfg, data, out_dir, compute, stop, resume)
    best = min(history, key=lambda row: row["val_loss"])
    elapsed = time.perf_counter() - start
    print(f"done in {elapsed:.0f}s; best validation loss {best['val_loss']:.5f} at epoch {best['epoch']}")
    for name in ("vae.pt", "last.pt", "metrics.csv", "loss_curves.png", "reconstructions.png", "config.json"):
        print(f"  {out_dir / name}")
    print(f"  {dataset_path(out_dir, cfg.env_id)}")
    print("next: python sample_vae.py")


if __name__ == "__main__":
    cli.run(main)
