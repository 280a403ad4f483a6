"""Frames from Gymnasium envs: what each env needs, the filters, rendering, parallel collection.

Collection drives an env with random actions; each observation either becomes a
training frame or is dropped by two filters: (1) every episode is reset after its first
RESET_AFTER observations; (2) a frame is kept only if its pole angle lies in
ANGLE_RANGE. Frames are collected in seeded chunks, several at a time across processes,
so the dataset depends only on the settings and the seed, never on how many workers or
training processes ran. Chunks are gathered into the shards of the store (store.py).
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import astuple, dataclass
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
from PIL import Image

from worldvae import cli, compute, distributed, store
from worldvae.cli import UserError
from worldvae.progress import ProgressBar

_CHUNK_FRAMES = 250  # frames per collection chunk: the unit of seeding and parallel work; a shard holds several
_FULL_FRAME = (0.0, 1.0, 0.0, 1.0)
HELDOUT_LIMIT = 50_000  # at most, frames read to score on, or to fit a probe on: stable numbers, bounded RAM
_MAX_IMG_SIZE = 1024  # px: beyond any env's render, and a frame of it is already 3 MiB
_MAX_FRAMES = 2**31 // 2 - 1  # episode ids (int32) count from chunk * 250: their room
_SIZE_PROBE_FRAMES = 64  # frames compressed to estimate the store's size before collecting
_LOOK_AHEAD_TILES = 6  # CarRacing's policy steers toward the track this far ahead
_ORPHAN_CHECK_SECONDS = 0.5  # how often a collection worker checks that its parent still lives


@dataclass(frozen=True)
class EnvKnowledge:
    """What the code knows about an env family beyond what gymnasium tells."""

    angle: Callable[[np.ndarray], float] | None = None  # the pole angle (rad) an observation holds
    angle_range: tuple[float, float] | None = None  # the frames kept by default; None keeps every angle
    crop: tuple[float, float, float, float] = _FULL_FRAME  # (top, bottom, left, right) fractions kept
    state_names: tuple[str, ...] = ()  # what each observation entry means
    reset_after: int = 20  # RESET_AFTER's default: observations before every episode is reset
    skip_first: int = 0  # observations at each episode's start that are never kept (an intro animation)
    latent_dim: int = 10  # LATENT_DIM's default
    epochs: int = 2  # EPOCHS' default
    hidden_dims: tuple[int, ...] = (8, 16, 32, 64, 128)  # HIDDEN_DIMS' default
    policy: Callable[[gym.Env], np.ndarray | int] | None = None  # how actions are drawn; None: uniformly


_ENVS = {
    "CartPole": EnvKnowledge(
        angle=lambda obs: obs[2],  # pole angle from vertical
        angle_range=(-0.3, 0.3),  # the task's filter; CartPole ends an episode past 0.2095 anyway
        crop=(0.4, 1.0, 0.0, 1.0),  # the cart runs in the lower part of the frame; the top is empty sky
        state_names=("cart position", "cart velocity", "pole angle", "pole angular velocity"),
    ),
    "Pendulum": EnvKnowledge(
        angle=lambda obs: np.arctan2(obs[1], obs[0]),  # obs = [cos, sin, velocity]; 0 is upright
        # no default filter: random torques rarely lift the pendulum, so +-0.3 would keep ~4% of frames
        state_names=("cos(angle)", "sin(angle)", "angular velocity"),
    ),
    "Acrobot": EnvKnowledge(
        angle=lambda obs: np.arctan2(obs[1], obs[0]),  # first link; obs starts [cos, sin]; 0 hangs down
        # no default filter: +-0.3 would keep only the hanging-down frames
        state_names=("cos(link 1)", "sin(link 1)", "cos(link 2)", "sin(link 2)", "link 1 velocity", "link 2 velocity"),
    ),
    "MountainCar": EnvKnowledge(state_names=("position", "velocity")),
    # World Models' car: its 96x96 observation is the frame; the bottom 12 rows are a status bar
    "CarRacing": EnvKnowledge(
        crop=(0.0, 84 / 96, 0.0, 1.0),
        reset_after=300,  # the first 50 observations zoom in on the car: 20 would show nothing else
        skip_first=50,
        latent_dim=32,  # as World Models
        # measured on 2 cores (docs/carracing-atari.md): twice the channels and 3 epochs keep the road (IoU 0.96)
        # at a lower MSE than 4 epochs of the narrow model, in less time, collection included
        epochs=3,
        hidden_dims=(16, 32, 64, 128, 256),
        policy=lambda env: _drive(env),
    ),
    "ALE": EnvKnowledge(reset_after=_CHUNK_FRAMES),  # Atari: frameskip as the env defines it (v5: 4), no angle
}


def _drive(env: gym.Env) -> np.ndarray:
    """CarRacing's collection policy: it steers toward the track a few tiles ahead, plus mean-reverting
    random steering noise (the "brownian" policies World Models users drove with), slowly enough to
    stay near the road. Frames then look like driving: in 1,000 of them all showed road, against
    61% with uniform steering and gas, where the car leaves the track within seconds. The noise is
    kept on the env, so a chunk's frames depend on its seed alone."""
    car_racing, rng = env.unwrapped, env.action_space.np_random
    x, y = car_racing.car.hull.position
    heading = car_racing.car.hull.angle + np.pi / 2
    track = np.array([(tile[2], tile[3]) for tile in car_racing.track])
    nearest = int(np.argmin(((track - (x, y)) ** 2).sum(1)))
    ahead_x, ahead_y = track[(nearest + _LOOK_AHEAD_TILES) % len(track)]
    error = (np.arctan2(ahead_y - y, ahead_x - x) - heading + np.pi) % (2 * np.pi) - np.pi
    noise = 0.9 * getattr(car_racing, "_steering_noise", 0.0) + rng.normal(0.0, 0.25)
    car_racing._steering_noise = noise
    speed = float(np.linalg.norm(car_racing.car.hull.linearVelocity))
    return np.array([np.clip(-2.0 * error + noise, -1.0, 1.0), 0.3 if speed < 40 else 0.0, 0.0], dtype=np.float32)


def env_family(env_id: str) -> str:
    """'CartPole-v1' -> 'CartPole', 'ALE/Pong-v5' -> 'ALE' (the part that decides crop, angle, ...)."""
    return "ALE" if env_id.startswith("ALE/") else env_id.split("/")[-1].split("-v")[0]


def knowledge(env_id: str) -> EnvKnowledge:
    """What we know of the env's family; an unknown family has no angle and keeps its full frame."""
    return _ENVS.get(env_family(env_id), EnvKnowledge())


def resolve_env_defaults(cfg: SimpleNamespace) -> SimpleNamespace:
    """Fill the constants left at None that mean "the env's own" (LATENT_DIM, EPOCHS, HIDDEN_DIMS), in place."""
    known = knowledge(cfg.env_id)
    for name in ("latent_dim", "epochs", "hidden_dims"):
        if getattr(cfg, name) is None:
            setattr(cfg, name, getattr(known, name))
    return cfg


def envs_with_an_angle() -> list[str]:
    return [family for family, known in _ENVS.items() if known.angle is not None]


def resolve_crop(env_id: str, crop: tuple[float, ...] | None) -> tuple[float, ...]:
    return crop if crop is not None else knowledge(env_id).crop


def resolve_reset_after(env_id: str, reset_after: int | None) -> int:
    return reset_after if reset_after is not None else knowledge(env_id).reset_after


def resolve_angle_range(env_id: str, angle_range: tuple[float, float] | str | None) -> tuple[float, float] | None:
    """ANGLE_RANGE as collection applies it: None takes the env's default, "all" keeps every angle."""
    if angle_range is None:
        return knowledge(env_id).angle_range
    return None if angle_range == "all" else angle_range


def state_names(env_id: str, n: int) -> list[str]:
    """A name for each of the n observation entries."""
    names = knowledge(env_id).state_names
    return [names[i] if i < len(names) else f"state {i}" for i in range(n)]


def validate_collection(cfg: SimpleNamespace) -> None:
    """Reject collection constants that cannot work, with one line each, before any work starts."""
    env = make_env(cfg.env_id, 0)  # an unknown id first: the other checks depend on the env
    env.reset(seed=0)
    height, width = frame_size(env)
    env.close()
    cli.require(
        cfg.img_size >= 32 and cfg.img_size & (cfg.img_size - 1) == 0,
        f"IMG_SIZE must be a power of two >= 32, got {cfg.img_size}",
    )
    cli.require_at_most(cfg.img_size, _MAX_IMG_SIZE, "IMG_SIZE", f"frames are cut from {height}x{width} renders")
    cli.require(isinstance(cfg.shard_frames, int) and cfg.shard_frames >= _CHUNK_FRAMES
                and cfg.shard_frames % _CHUNK_FRAMES == 0,
                f"SHARD_FRAMES must be a multiple of {_CHUNK_FRAMES} (a collection chunk), got {cfg.shard_frames!r}")
    compute.require_memory(2 * cfg.shard_frames * 3 * cfg.img_size**2, f"a shard of SHARD_FRAMES={cfg.shard_frames} "
                       f"frames of {cfg.img_size} px, assembled in memory (and read back whole),", "lower SHARD_FRAMES")
    for name in ("n_frames", "max_steps_per_frame"):
        cli.require(getattr(cfg, name) >= 1, f"{name.upper()} must be at least 1, got {getattr(cfg, name)}")
    cli.require_at_most(cfg.n_frames, _MAX_FRAMES, "N_FRAMES", "episode ids are 32-bit numbers")
    cli.require_at_most(cfg.max_steps_per_frame, 10**6, "MAX_STEPS_PER_FRAME", "a filter that keeps less than one "
                        "observation in a million cannot make a dataset")
    intro = knowledge(cfg.env_id).skip_first
    cli.require(cfg.reset_after is None or (isinstance(cfg.reset_after, int) and cfg.reset_after > intro),
                f"RESET_AFTER must be an integer above the {intro} intro observations {cfg.env_id} skips, or None; "
                f"got {cfg.reset_after!r}")
    cli.require(resolve_reset_after(cfg.env_id, cfg.reset_after) - intro <= _CHUNK_FRAMES,
                f"RESET_AFTER={cfg.reset_after} would keep more than {_CHUNK_FRAMES} frames of an episode, the most a "
                f"collection chunk holds (episodes are cut there): at most {_CHUNK_FRAMES + intro} for {cfg.env_id}")
    if cfg.angle_range not in (None, "all"):
        cli.require(
            isinstance(cfg.angle_range, tuple)
            and len(cfg.angle_range) == 2
            and cfg.angle_range[0] < cfg.angle_range[1],
            f"ANGLE_RANGE must be (low, high) with low < high, None (the env's default) or \"all\"; "
            f"got {cfg.angle_range!r}",
        )
        cli.require(
            knowledge(cfg.env_id).angle is not None,
            f"{cfg.env_id} has no pole angle to filter on: leave ANGLE_RANGE at None "
            f"(envs with an angle: {', '.join(envs_with_an_angle())})",
        )
    if cfg.crop is not None:
        ok = isinstance(cfg.crop, tuple) and len(cfg.crop) == 4
        top, bottom, left, right = cfg.crop if ok else (0, 0, 0, 0)
        cli.require(
            0 <= top < bottom <= 1 and 0 <= left < right <= 1,
            f"CROP must be (top, bottom, left, right) fractions with 0 <= top < bottom <= 1 and "
            f"0 <= left < right <= 1; got {cfg.crop}",
        )
        cli.require(
            round((bottom - top) * height) >= 1 and round((right - left) * width) >= 1,
            f"CROP={cfg.crop} keeps no whole pixel row or column of {cfg.env_id}'s {height}x{width} frames",
        )


def check_room(cfg: SimpleNamespace, out_dir: Path, n_frames: int) -> None:
    """Refuse, before collecting, `n_frames` frames whose compressed shards cannot fit on OUT_DIR's
    disk: their size is estimated by compressing a few of the env's frames as a shard is."""
    probe = SimpleNamespace(**(vars(cfg) | {"angle_range": "all"}))  # any frames of the env compress alike
    sample = collect_chunk(probe, 0, _SIZE_PROBE_FRAMES)[0]["frames"]
    ratio = len(zlib.compress(sample.tobytes(), 6)) / max(1, sample.nbytes)  # 6: np.savez_compressed's level
    shard = cfg.shard_frames * sample[0].nbytes * ratio  # the temporary file of the shard being written
    needed = n_frames * sample[0].nbytes * ratio + shard
    existing = next(folder for folder in (Path(out_dir), *Path(out_dir).resolve().parents) if folder.exists())
    free = shutil.disk_usage(existing).free
    culprit = "SHARD_FRAMES" if shard > needed / 2 else "N_FRAMES"  # the temporary shard, or the frames themselves
    cli.require(needed < free, f"{n_frames} frames to collect, written in shards of SHARD_FRAMES={cfg.shard_frames}, "
                f"need about {needed / 2**30:.2f} GiB on disk, and {out_dir} has {free / 2**30:.2f} GiB free: lower "
                f"{culprit} or choose another OUT_DIR")


# ---------------------------------------------------------------- rendering


def make_env(env_id: str, seed: int) -> gym.Env:
    """The env rendering off-screen, its action sampler seeded."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # rgb_array needs no window
    if env_id.startswith("ALE/"):
        try:
            import ale_py
        except ImportError:
            raise UserError(f"ENV_ID={env_id!r} needs ale-py: pip install -r requirements-envs.txt") from None
        gym.register_envs(ale_py)
    try:
        with warnings.catch_warnings():  # gymnasium only warns about a missing render mode; we refuse below
            warnings.filterwarnings("ignore", message=".*render_mode")
            env = gym.make(env_id, render_mode="rgb_array")
    except gym.error.DependencyNotInstalled as error:
        raise UserError(f"ENV_ID={env_id!r} needs a package that is not installed ({cli.reason(error)}): "
                        "pip install -r requirements-envs.txt") from None
    except gym.error.Error as error:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UserError(f"ENV_ID={env_id!r} cannot be made ({error}){hint}") from None
    if "rgb_array" not in env.metadata.get("render_modes", []):
        env.close()
        raise UserError(f"ENV_ID={env_id!r} cannot render rgb_array frames; pick a classic-control env")
    space = env.observation_space
    if not (isinstance(space, gym.spaces.Box) and (len(space.shape) == 1 or observes_images(env))):
        env.close()
        raise UserError(f"ENV_ID={env_id!r} observes {space}: neither a vector of numbers (stored beside each "
                        "frame) nor an RGB image (the frame itself); pick a classic-control, CarRacing or ALE env")
    if not isinstance(env.action_space, (gym.spaces.Box, gym.spaces.Discrete)):
        env.close()
        raise UserError(f"ENV_ID={env_id!r} acts in {env.action_space}, which the dataset cannot record")
    env.action_space.seed(seed)
    return env


def observes_images(env: gym.Env) -> bool:
    """An env whose observation is an (H, W, 3) image: that image is the frame, and there is no state vector."""
    shape = env.observation_space.shape or ()
    return len(shape) == 3 and shape[2] == 3


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


Renderer = Callable[[gym.Env, np.ndarray], np.ndarray]  # (env, its observation) -> a training frame


def frame_renderer(env: gym.Env, crop: Sequence[float], img_size: int, fast: bool) -> Renderer:
    """The function that turns an env's current state into a training frame: its image observation
    where it has one, else its rgb_array render (CartPole's drawn straight to the kept rows when fast)."""
    if observes_images(env):
        return lambda _env, obs: preprocess_frame(obs, crop, img_size)
    if fast and env_family(env.spec.id) == "CartPole":
        return lambda env, _obs: render_cartpole(env, crop, img_size)
    return lambda env, _obs: preprocess_frame(env.render(), crop, img_size)


def frame_size(env: gym.Env) -> tuple[int, int]:
    """(height, width) of the picture a frame is cut from, for an env after reset()."""
    return env.observation_space.shape[:2] if observes_images(env) else env.render().shape[:2]


# ---------------------------------------------------------------- collection


@dataclass
class CollectionStats:
    """What the filters did: every observation is either kept or rejected by the angle."""

    observations: int = 0
    episodes: int = 0
    ended_by_env: int = 0
    kept: int = 0
    rejected_angle: int = 0
    skipped_intro: int = 0

    def __add__(self, other: CollectionStats) -> CollectionStats:
        return CollectionStats(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def summary(self, cfg: SimpleNamespace) -> str:
        """What the filters did, in words, for the constants `cfg`."""
        reset_after = resolve_reset_after(cfg.env_id, cfg.reset_after)
        angle_range = resolve_angle_range(cfg.env_id, cfg.angle_range)
        kept = f"kept {self.kept} ({self.kept / max(1, self.observations):.0%})"
        why = (f"rejected {self.rejected_angle} whose pole angle lay outside ANGLE_RANGE={angle_range}"
               if angle_range is not None else "no angle filter, so none rejected")
        intro = f"; skipped {self.skipped_intro} of the episodes' intros" if self.skipped_intro else ""
        return (f"{self.observations} observations in {self.episodes} episodes ({self.ended_by_env} ended by the env, "
                f"the rest reset after {reset_after}): {kept}; {why}{intro}")


def pole_angle(env_id: str, obs: np.ndarray) -> float | None:
    """The pole angle (rad) an observation holds, or None for an env without one."""
    angle_of = knowledge(env_id).angle
    return None if angle_of is None else float(angle_of(obs))


def passes_angle_filter(env_id: str, angle_range: tuple[float, float] | None, obs: np.ndarray) -> bool:
    """Filter (2): no range given, or the pole angle of `obs` lies in it."""
    return angle_range is None or angle_range[0] <= pole_angle(env_id, obs) <= angle_range[1]


def chunk_seed(seed: int, chunk: int) -> int:
    """An independent seed for each chunk, so chunks can run in any order or process."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


def collect_chunk(
    cfg: SimpleNamespace, index: int, n_frames: int, render: Renderer | None = None
) -> tuple[dict[str, np.ndarray], CollectionStats]:
    """Run random actions until `n_frames` observations pass the filters; render only those.

    Filters: (1) each episode is reset after its first RESET_AFTER observations, so
    no episode contributes more than that (an env's intro, like CarRacing's zoom, is
    skipped); (2) an observation is kept only if its pole angle lies in ANGLE_RANGE. A
    rejected observation is never rendered nor stored. A kept frame records the action
    taken from it and the reward that followed only when the next observation was kept too,
    so every recorded transition is real; `done` marks where the stored sequence ends: the
    env ended the episode, it was reset, the chunk's budget ended, or the angle filter
    dropped what followed (a gap: `step` then jumps). There action and reward are NaN.
    Chunk `index` has its own seed; it stops early, with fewer frames, after
    n_frames * MAX_STEPS_PER_FRAME observations. `render` replaces the env's frame renderer.
    """
    seed, known = chunk_seed(cfg.seed, index), knowledge(cfg.env_id)
    reset_after, angle_range = resolve_reset_after(cfg.env_id, cfg.reset_after), resolve_angle_range(
        cfg.env_id, cfg.angle_range)
    env = make_env(cfg.env_id, seed)
    render = render or frame_renderer(env, resolve_crop(cfg.env_id, cfg.crop), cfg.img_size, cfg.fast_render)
    policy = known.policy or (lambda env: env.action_space.sample())
    data = empty_arrays(env, n_frames, cfg.img_size)
    stats = CollectionStats()

    obs = None  # None: the next observation starts a new episode
    pending = None  # (row, action, reward) of the last kept frame: a transition, if its successor is kept too
    while stats.kept < n_frames and stats.observations < n_frames * cfg.max_steps_per_frame:
        if obs is None:
            obs, _ = env.reset(seed=seed if stats.episodes == 0 else None)
            step, done = 0, False
            stats.episodes += 1
        stats.observations += 1
        last = done or step + 1 >= reset_after  # no action is taken from this observation
        kept = step >= known.skip_first and passes_angle_filter(cfg.env_id, angle_range, obs)
        if kept:
            if pending is not None:  # its successor is this very frame: the transition is real
                row, action, reward = pending
                data["action"][row], data["reward"][row], data["done"][row] = action, reward, False
            i = stats.kept
            data["frames"][i] = render(env, obs)
            data["states"][i] = obs if data["states"].shape[1] else ()
            data["episode"][i], data["step"][i] = stats.episodes - 1, step
            data["done"][i], data["action"][i], data["reward"][i] = True, np.nan, np.nan  # until a successor is kept
            stats.kept += 1
        elif step < known.skip_first:
            stats.skipped_intro += 1
        else:
            stats.rejected_angle += 1
        pending = None  # a rejected successor leaves the last kept frame done, its action unrecorded: a marked gap
        step += 1
        if last:
            stats.ended_by_env += done
            obs = None
        else:
            action = policy(env)
            obs, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            if kept:
                pending = (i, action, reward)
    env.close()
    return {key: value[: stats.kept] for key, value in data.items()}, stats


def empty_arrays(env: gym.Env, n: int, img_size: int) -> dict[str, np.ndarray]:
    """The dataset's arrays for n frames of `env`: what each holds is documented in the README."""
    image_obs = observes_images(env)
    space = env.action_space
    return {
        "frames": np.empty((n, 3, img_size, img_size), dtype=np.uint8),
        "states": np.empty((n, 0 if image_obs else env.observation_space.shape[0]), dtype=np.float32),
        "episode": np.empty(n, dtype=np.int32),
        "step": np.empty(n, dtype=np.int32),
        "action": np.empty((n, 1 if isinstance(space, gym.spaces.Discrete) else space.shape[0]), dtype=np.float32),
        "reward": np.empty(n, dtype=np.float32),
        "done": np.empty(n, dtype=bool),
    }


def collect_frames(cfg: SimpleNamespace) -> tuple[dict[str, np.ndarray], CollectionStats]:
    """N_FRAMES filtered frames in memory (fresh frames to score on, a benchmark), collected as the
    store's shards are: the same seeded chunks, N_ENVS at a time."""
    chunks = [(index, min(_CHUNK_FRAMES, cfg.n_frames - start))
              for index, start in enumerate(range(0, cfg.n_frames, _CHUNK_FRAMES))]
    pieces, total = [], CollectionStats()
    with ProgressBar(cfg.n_frames, "collecting", "frame") as bar:
        for _, chunk, stats in _collected(cfg, chunks):
            pieces.append(chunk)
            total += stats
            bar.update(len(chunk["frames"]))
    return {key: np.concatenate([piece[key] for piece in pieces]) for key in store.ARRAYS}, total


def collect_shards(cfg: SimpleNamespace, frame_store: store.Store, sizes: dict[int, int],
                   stop: cli.StopRequests | None = None) -> CollectionStats:
    """Collect the shards `sizes` names (index -> frames) into the store, each written as it completes.

    Shard i is made of chunks i * SHARD_FRAMES / 250 onwards, each with its own seed, so a
    shard is the same whichever process collects it, with however many workers, and a stop
    loses only the shard in progress: a stop request ends the work after the chunk in hand.
    """
    per_shard = cfg.shard_frames // _CHUNK_FRAMES
    chunks = [(shard * per_shard + j, min(_CHUNK_FRAMES, size - j * _CHUNK_FRAMES))
              for shard, size in sizes.items() for j in range(-(-size // _CHUNK_FRAMES))]
    total, pieces = CollectionStats(), []
    with ProgressBar(sum(sizes.values()), "collecting", "frame") as bar:
        for index, chunk, stats in _collected(cfg, chunks):
            total += stats
            pieces.append(chunk)
            bar.update(len(chunk["frames"]))
            shard = index // per_shard
            if sum(len(piece["frames"]) for piece in pieces) == sizes[shard]:
                frame_store.write(shard, {key: np.concatenate([p[key] for p in pieces]) for key in store.ARRAYS})
                pieces = []
            if stop is not None and stop.signum:
                break
    return total


def _collected(cfg: SimpleNamespace, chunks: list[tuple[int, int]]) -> Iterator[tuple[int, dict, CollectionStats]]:
    """Each chunk (index, frames) collected, in order, as (index, arrays, stats); episode ids made
    unique across chunks."""
    with _chunk_runner(cfg, len(chunks)) as run:
        for (chunk, stats), (index, size) in zip(run(chunks), chunks, strict=False):
            if stats.kept < size:
                raise UserError(
                    f"the filters kept only {stats.kept} of {size} frames in a chunk of N_FRAMES={cfg.n_frames}: "
                    f"{stats.summary(cfg)}; "
                    "widen ANGLE_RANGE (or set it to \"all\"), "
                    "or raise MAX_STEPS_PER_FRAME"
                )
            # a chunk holds at most _CHUNK_FRAMES frames, so fewer episodes: ids from index * that are its own
            chunk["episode"] = (index * _CHUNK_FRAMES + np.unique(chunk["episode"], return_inverse=True)[1]).astype(
                np.int32)
            yield index, chunk, stats


@contextlib.contextmanager
def _chunk_runner(cfg: SimpleNamespace, n_chunks: int) -> Iterator[Callable]:
    """Yields run(chunks) -> iterator of chunk results, in order: in this process, or in N_ENVS
    worker processes (0: one per CPU core this process has) when there is more than one chunk.

    Only a few chunks per worker are in flight, so finished chunks never pile up in RAM.
    Leaving early (a stop, an error) cancels the chunks not yet started and waits for the
    running ones: workers are never killed mid-write, which could hang the pipe back.
    """
    n_workers = min(cfg.n_envs or _cores_per_process(), n_chunks)
    if n_workers <= 1:
        yield lambda chunks: (collect_chunk(cfg, index, size) for index, size in chunks)
        return
    # fork where there is one: workers start at once; they only render and never touch torch
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    pool = ProcessPoolExecutor(n_workers, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),))

    def run(chunks: list[tuple[int, int]]) -> Iterator[tuple[dict, CollectionStats]]:
        in_flight: collections.deque = collections.deque()
        for index, size in chunks:
            in_flight.append(pool.submit(collect_chunk, cfg, index, size))
            if len(in_flight) > 2 * n_workers:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()

    try:
        yield run
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _cores_per_process() -> int:
    """CPU cores for this process's workers: all of them, or under torchrun its share of the machine's."""
    return max(1, (os.cpu_count() or 1) // distributed.Ranks.from_env().local_world)


def _start_worker(parent: int) -> None:
    """Ctrl-C reaches every process in the group, but only the parent decides how to stop; and a
    worker whose parent died (kill -9, the OOM killer) exits by itself instead of waiting forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_ORPHAN_CHECK_SECONDS)
    os._exit(1)  # no cleanup to run: the parent that would read our results is gone


# ---------------------------------------------------------------- the dataset


def collection_settings(cfg: SimpleNamespace) -> dict:
    """Everything that decides a shard's contents: a store's shards are reused only if these match.
    N_FRAMES is not among them: a larger N_FRAMES reuses the shards a smaller one collected."""
    return {
        "env_id": cfg.env_id,
        "reset_after": resolve_reset_after(cfg.env_id, cfg.reset_after),
        "angle_range": list(angle_range) if (angle_range := resolve_angle_range(cfg.env_id, cfg.angle_range)) else None,
        "crop": list(resolve_crop(cfg.env_id, cfg.crop)),
        "img_size": cfg.img_size,
        "seed": cfg.seed,
        "shard_frames": cfg.shard_frames,
    }


def dataset_dir(out_dir: str | Path, cfg: SimpleNamespace) -> Path:
    """OUT_DIR/frames_<env>_<digest>: one folder per set of collection settings, so a run with other
    settings collects beside an earlier run's frames, never over them (settings.json inside says which)."""
    settings = collection_settings(cfg)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return Path(out_dir) / f"frames_{cfg.env_id.replace('/', '_')}_{digest}"


def open_store(cfg: SimpleNamespace, out_dir: str | Path) -> store.Store:
    return store.Store(dataset_dir(out_dir, cfg), collection_settings(cfg))


@dataclass
class Plan:
    """What a process will collect before training: its shards (index -> frames) and those still to do."""

    store: store.Store
    sizes: dict[int, int]
    todo: list[int]

    @property
    def frames_to_collect(self) -> int:
        return sum(self.sizes[index] for index in self.todo)


def plan_collection(cfg: SimpleNamespace, out_dir: Path, rank: int = 0, world: int = 1) -> Plan:
    """The store and what process `rank` of `world` must collect into it, checked against the free
    disk: every refusal comes here, before a frame is collected. It writes nothing but the store's
    folder, settings.json, and a manifest mended from the shards when the old one was damaged."""
    frame_store = open_store(cfg, out_dir)
    all_sizes = store.shard_sizes(cfg.n_frames, cfg.shard_frames)
    sizes = {index: all_sizes[index] for index in store.shards_of_rank(len(all_sizes), rank, world)}
    intact = set(frame_store.intact(sizes)) if frame_store.folder.is_dir() else set()  # reads only
    if len(intact) < len(sizes):
        check_room(cfg, out_dir, sum(n for index, n in sizes.items() if index not in intact))
    frame_store.prepare()
    return Plan(frame_store, sizes, frame_store.missing(sizes))


def collect_planned(cfg: SimpleNamespace, plan: Plan, stop: cli.StopRequests, rank: int = 0,
                    world: int = 1) -> list[int]:
    """Collect what the plan says is missing; the shards this process trains on."""
    frame_store, n_mine, n_todo = plan.store, sum(plan.sizes.values()), plan.frames_to_collect
    whose = f"process {rank} of {world}: " if world > 1 else ""
    if not plan.todo:
        print(f"{whose}reusing {n_mine} frames in {len(plan.sizes)} shards of {frame_store.folder}")
        return list(plan.sizes)
    if n_todo < n_mine:
        print(f"{whose}{n_mine - n_todo} of {n_mine} frames are already in {frame_store.folder}; collecting the rest")
    print(f"{whose}collecting {n_todo} frames from {cfg.env_id} into {len(plan.todo)} shards of {cfg.shard_frames}")
    start = time.perf_counter()
    stats = collect_shards(cfg, frame_store, {index: plan.sizes[index] for index in plan.todo}, stop)
    if stats.kept < n_todo:
        entries = frame_store.read_manifest()
        kept = sum(entry["frames"] for entry in entries.values())
        raise cli.Stopped(f"stopped by {stop.name}: {frame_store.folder} keeps the {kept} frames of every finished "
                          "shard; run the same command again to continue the collection", stop.signum)
    seconds = time.perf_counter() - start
    print(f"collected {cfg.env_id}: {stats.summary(cfg)}")
    print(f"collection took {seconds:.1f}s ({stats.kept / seconds:.0f} frames/s); "
          f"{frame_store.folder} holds {store.folder_bytes(frame_store.folder) / 2**20:.1f} MiB")
    return list(plan.sizes)


def load_or_collect(cfg: SimpleNamespace, out_dir: Path, stop: cli.StopRequests, rank: int = 0,
                    world: int = 1) -> tuple[store.Store, list[int]]:
    """The store and the shards of it that process `rank` of `world` trains on: reused where they
    match the constants and are intact, collected (by this process, before training) where not."""
    plan = plan_collection(cfg, out_dir, rank, world)
    return plan.store, collect_planned(cfg, plan, stop, rank, world)


def complete_store(cfg: SimpleNamespace) -> tuple[store.Store | None, str]:
    """The run's dataset if every shard of it is there and intact (read only: a read-only store is
    fine); else None and what is wrong with it, in words."""
    frame_store = open_store(cfg, cfg.out_dir)
    if not frame_store.folder.is_dir():
        return None, f"the run's dataset is gone ({frame_store.folder})"
    sizes = dict(enumerate(store.shard_sizes(cfg.n_frames, cfg.shard_frames)))
    try:
        frame_store.read_manifest()
    except store.ManifestProblem as problem:
        return None, f"the run's dataset is damaged ({problem})"
    intact = frame_store.intact(sizes)
    if len(intact) < len(sizes):
        return None, (f"the run's dataset {frame_store.folder} is incomplete or damaged ({len(sizes) - len(intact)} "
                      f"of {len(sizes)} shards missing or changed)")
    return frame_store, ""


@dataclass
class Heldout:
    """Frames to score a model on (`test`), frames to fit a probe on (`fit`), and what they are."""

    fit: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    description: str


def heldout_frames(config: dict, fresh: int = 0) -> Heldout:
    """Frames no model trained on, for the run whose constants are `config`.

    fresh == 0: the validation episodes of the run's own dataset. fresh > 0 (or when that
    dataset is gone): `fresh` (or N_FRAMES, at most 50,000) new frames collected with another
    seed, all of them scored. The probe fits on the run's training split, or, without it, on half of
    the fresh episodes, and is then scored on the other half only.
    """
    cfg = SimpleNamespace(**config)
    frame_store, problem = complete_store(cfg)
    fit = None
    if frame_store is not None:
        shards = range(len(store.shard_sizes(cfg.n_frames, cfg.shard_frames)))
        fit = frame_store.read_parts(shards, cfg.val_fraction, cfg.seed, "train", HELDOUT_LIMIT)
        if not fresh:
            test = frame_store.read_parts(shards, cfg.val_fraction, cfg.seed, "val", HELDOUT_LIMIT)
            return Heldout(fit, test, f"{len(test['frames'])} of the run's validation frames (whole episodes)")
    n_frames, seed = fresh or min(cfg.n_frames, HELDOUT_LIMIT), fresh_seed(cfg.seed)
    gone = "" if frame_store is not None or fresh else f"{problem}; "
    print(f"{gone}collecting {n_frames} fresh frames from {cfg.env_id} (seed {seed})")
    new = collect_frames(SimpleNamespace(**(config | {"n_frames": n_frames, "seed": seed})))[0]
    description = f"{gone}{n_frames} fresh frames, seed {seed}, none seen in training"
    if fit is not None:
        return Heldout(fit, new, description)
    fit_idx, test_idx = store.split_by_episode(new["episode"], 0.5, seed)
    return Heldout(_select(new, fit_idx), _select(new, test_idx), description + f"; {len(test_idx)} of them scored, "
                   "the other half fits the probe")


def fresh_seed(seed: int) -> int:
    """The seed of frames that a run with `seed` never trained on (chunk seeds derive from it)."""
    return seed + 1


def _select(data: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {key: values[idx] for key, values in data.items()}
