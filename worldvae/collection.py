"""Collection: driving an env with its policy, keeping the observations that pass the filters.

Each observation either becomes a training frame or is dropped by two filters: (1) every
episode is reset after its first RESET_AFTER observations; (2) a frame is kept only if its
pole angle lies in ANGLE_RANGE. Frames are collected in seeded chunks of CHUNK_FRAMES,
several at a time across worker processes, so the frames depend only on the settings and
the seed, never on how many workers or training processes ran.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import astuple, dataclass
from types import SimpleNamespace

import gymnasium as gym
import numpy as np

from worldvae import cli, compute, distributed, store
from worldvae.cli import UserError
from worldvae.envs import (
    CHUNK_FRAMES,
    knowledge,
    make_env,
    observes_images,
    passes_angle_filter,
)
from worldvae.policies import make_policy
from worldvae.progress import ProgressBar
from worldvae.rendering import Renderer, frame_renderer

# the version of the code that decides what a frame looks like (policies, filters, renderers): bump it when that
# code changes, so a store made by other code is kept and never reused (dataset.collection_settings). 3: the
# fast CartPole renderer draws env.render()'s picture exactly (2's moved the track line by a row)
COLLECTOR_VERSION = 3
_ORPHAN_CHECK_SECONDS = 0.5  # how often a collection worker checks that its parent still lives


@dataclass
class CollectionStats:
    """What the filters did: every observation is either kept or rejected by the angle."""

    observations: int = 0
    episodes: int = 0
    ended_by_env: int = 0
    kept: int = 0
    rejected_angle: int = 0
    skipped_intro: int = 0

    def __iadd__(self, other: CollectionStats) -> CollectionStats:
        """Add `other`'s counts to these, in place (a total that the caller holds)."""
        for name, value in zip(self.__dataclass_fields__, astuple(other), strict=True):
            setattr(self, name, getattr(self, name) + value)
        return self

    def summary(self, cfg: SimpleNamespace) -> str:
        """What the filters did, in words, for the constants `cfg`."""
        kept = f"kept {self.kept} ({self.kept / max(1, self.observations):.0%})"
        why = (f"rejected {self.rejected_angle} whose pole angle lay outside ANGLE_RANGE={cfg.angle_range}"
               if cfg.angle_range != "all" else "no angle filter, so none rejected")
        intro = f"; skipped {self.skipped_intro} of the episodes' intros" if self.skipped_intro else ""
        return (f"{self.observations} observations in {self.episodes} episodes ({self.ended_by_env} ended by the env, "
                f"the rest reset after {cfg.reset_after}): {kept}; {why}{intro}")


def chunk_seed(seed: int, chunk: int) -> int:
    """An independent seed for each chunk, so chunks can run in any order or process."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


def collect_chunk(
    cfg: SimpleNamespace, index: int, n_frames: int, render: Renderer | None = None
) -> tuple[dict[str, np.ndarray], CollectionStats]:
    """Drive the env with its POLICY until `n_frames` observations pass the filters; render only those.

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
    if None in (cfg.reset_after, cfg.angle_range, cfg.crop, cfg.policy):
        raise ValueError("collection needs the env's own values resolved first: envs.resolve_env_defaults")
    reset_after, angle_range = cfg.reset_after, cfg.angle_range
    env = make_env(cfg.env_id, seed)
    render = render or frame_renderer(env, cfg.crop, cfg.img_size, cfg.fast_render)
    policy = make_policy(cfg.policy)
    data = empty_arrays(env, n_frames, cfg.img_size)
    stats = CollectionStats()

    obs = None  # None: the next observation starts a new episode
    pending = None  # (row, action, reward) of the last kept frame: a transition, if its successor is kept too
    while stats.kept < n_frames and stats.observations < n_frames * cfg.max_steps_per_frame:
        if obs is None:
            obs, _ = env.reset(seed=seed if stats.episodes == 0 else None)
            policy.start(env)
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
    chunks = [(index, min(CHUNK_FRAMES, cfg.n_frames - start))
              for index, start in enumerate(range(0, cfg.n_frames, CHUNK_FRAMES))]
    total = CollectionStats()
    return _joined([chunk for _, chunk in _collected(cfg, chunks, total)]), total


def collect_shards(cfg: SimpleNamespace, frame_store: store.Store, sizes: dict[int, int],
                   stop: cli.StopRequests | None = None) -> CollectionStats:
    """Collect the shards `sizes` names (index -> frames) into the store, each written as it completes.

    Shard i is made of chunks i * SHARD_FRAMES / 250 onwards, each with its own seed, so a
    shard is the same whichever process collects it, with however many workers, and a stop
    loses only the shard in progress: a stop request ends the work after the chunk in hand.
    """
    per_shard = cfg.shard_frames // CHUNK_FRAMES
    chunks = [(shard * per_shard + j, min(CHUNK_FRAMES, size - j * CHUNK_FRAMES))
              for shard, size in sizes.items() for j in range(-(-size // CHUNK_FRAMES))]
    total, pieces = CollectionStats(), []
    for index, chunk in _collected(cfg, chunks, total):
        pieces.append(chunk)
        shard = index // per_shard
        if sum(len(piece["frames"]) for piece in pieces) == sizes[shard]:
            frame_store.write(shard, _joined(pieces))
            pieces = []
        if stop is not None and stop.signum:
            break
    return total


def _joined(pieces: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([piece[key] for piece in pieces]) for key in store.ARRAYS}


def _collected(cfg: SimpleNamespace, chunks: list[tuple[int, int]],
               total: CollectionStats) -> Iterator[tuple[int, dict]]:
    """Each chunk (index, frames) collected, in order, as (index, arrays), with a progress bar; what
    the filters did is added to `total`; episode ids are made unique across chunks."""
    with _chunk_runner(cfg, len(chunks)) as run, ProgressBar(sum(n for _, n in chunks), "collecting", "frame") as bar:
        for (chunk, stats), (index, size) in zip(run(chunks), chunks, strict=False):
            if stats.kept < size:
                raise UserError(
                    f"the filters kept only {stats.kept} of {size} frames in a chunk of N_FRAMES={cfg.n_frames}: "
                    f"{stats.summary(cfg)}; "
                    "widen ANGLE_RANGE (or set it to \"all\"), "
                    "or raise MAX_STEPS_PER_FRAME"
                )
            total += stats
            # a chunk holds at most CHUNK_FRAMES frames, so fewer episodes: ids from index * that are its own
            chunk["episode"] = (index * CHUNK_FRAMES + np.unique(chunk["episode"], return_inverse=True)[1]).astype(
                np.int32)
            bar.update(size)
            yield index, chunk


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
    """CPU cores for this process's workers: all it may use, or under torchrun its share of them."""
    return max(1, compute.usable_cpus() // distributed.Ranks.from_env().local_world)


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

