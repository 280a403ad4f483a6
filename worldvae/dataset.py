"""Planning a dataset: the constants checked, the settings that name its store, what to collect or reuse.

A dataset is OUT_DIR/frames_<env>_<digest of the collection settings>/ (store.py has its
format). Before a frame is collected every refusal comes here: bad constants, no room on
disk; then the plan names the shards this process must collect and those it reuses.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from worldvae import cli, compute, store
from worldvae.collection import COLLECTOR_VERSION, collect_chunk, collect_shards
from worldvae.envs import (
    CHUNK_FRAMES,
    envs_with_an_angle,
    knowledge,
    make_env,
)
from worldvae.policies import make_policy
from worldvae.rendering import draws_fast, frame_size

_MAX_IMG_SIZE = 1024  # px: beyond any env's render, and a frame of it is already 3 MiB
_MAX_FRAMES = 2**31 // 2 - 1  # episode ids (int32) count from chunk * 250: their room
_MAX_WORKERS = 1024  # collection processes: more than any machine has cores
_SIZE_PROBE_FRAMES = 64  # frames compressed to estimate the store's size before collecting


def validate_collection(cfg: SimpleNamespace, world: int = 1) -> None:
    """Reject collection constants that cannot work for `world` processes, with one line each, before
    any work starts."""
    env = make_env(cfg.env_id, 0)  # an unknown id first: the other checks depend on the env
    env.reset(seed=0)
    height, width = frame_size(env)
    env.close()
    cli.require(
        cfg.img_size >= 32 and cfg.img_size & (cfg.img_size - 1) == 0,
        f"IMG_SIZE must be a power of two >= 32, got {cfg.img_size}",
    )
    cli.require_at_most(cfg.img_size, _MAX_IMG_SIZE, "IMG_SIZE", f"frames are cut from {height}x{width} renders")
    cli.require(isinstance(cfg.shard_frames, int) and cfg.shard_frames >= CHUNK_FRAMES
                and cfg.shard_frames % CHUNK_FRAMES == 0,
                f"SHARD_FRAMES must be a multiple of {CHUNK_FRAMES} (a collection chunk), got {cfg.shard_frames!r}")
    cli.require_at_most(cfg.shard_frames, 10**12, "SHARD_FRAMES", "a shard is assembled in memory")
    compute.require_memory(2 * cfg.shard_frames * 3 * cfg.img_size**2, f"a shard of SHARD_FRAMES={cfg.shard_frames} "
                       f"frames of {cfg.img_size} px, assembled in memory (and read back whole),", "lower SHARD_FRAMES")
    cli.require(isinstance(cfg.n_envs, int) and cfg.n_envs >= 0,
                f"N_ENVS must be 0 (a worker per CPU this process may use), 1 (no workers) or more; got {cfg.n_envs!r}")
    cli.require_at_most(cfg.n_envs, _MAX_WORKERS, "N_ENVS", "each worker is a process of its own")
    for name in ("n_frames", "max_steps_per_frame"):
        cli.require(getattr(cfg, name) >= 1, f"{name.upper()} must be at least 1, got {getattr(cfg, name)}")
    cli.require_at_most(cfg.n_frames, _MAX_FRAMES, "N_FRAMES", "episode ids are 32-bit numbers")
    n_shards = len(store.shard_sizes(cfg.n_frames, cfg.shard_frames))
    cli.require(n_shards >= world, f"N_FRAMES={cfg.n_frames} makes {n_shards} shards of SHARD_FRAMES="
                f"{cfg.shard_frames}, fewer than the {world} processes: each needs a shard of its own")
    cli.require_at_most(cfg.max_steps_per_frame, 10**6, "MAX_STEPS_PER_FRAME", "a filter that keeps less than one "
                        "observation in a million cannot make a dataset")
    allowed = knowledge(cfg.env_id).policies
    cli.require(cfg.policy in allowed, f"POLICY={cfg.policy!r} does not drive {cfg.env_id}: "
                f"choose one of {', '.join(allowed)}, or None (the env's own, {knowledge(cfg.env_id).policy})")
    intro = knowledge(cfg.env_id).skip_first
    cli.require(isinstance(cfg.reset_after, int) and cfg.reset_after > intro,
                f"RESET_AFTER must be an integer above the {intro} intro observations {cfg.env_id} skips, or None; "
                f"got {cfg.reset_after!r}")
    cli.require(cfg.reset_after - intro <= CHUNK_FRAMES,
                f"RESET_AFTER={cfg.reset_after} would keep more than {CHUNK_FRAMES} frames of an episode, the most a "
                f"collection chunk holds (episodes are cut there): at most {CHUNK_FRAMES + intro} for {cfg.env_id}")
    if cfg.angle_range != "all":
        cli.require(
            isinstance(cfg.angle_range, tuple)
            and len(cfg.angle_range) == 2
            and cfg.angle_range[0] < cfg.angle_range[1],
            f"ANGLE_RANGE must be (low, high) with low < high, None (the env's default) or \"all\"; "
            f"got {cfg.angle_range!r}",
        )
        cli.require(
            knowledge(cfg.env_id).angle is not None,
            f"{cfg.env_id} has no pole angle to filter on: leave ANGLE_RANGE at None or \"all\" "
            f"(envs with an angle: {', '.join(envs_with_an_angle())})",
        )
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


def collection_settings(cfg: SimpleNamespace) -> dict:
    """Everything that decides a shard's contents: a store's shards are reused only if these match.
    N_FRAMES is not among them: a larger N_FRAMES reuses the shards a smaller one collected."""
    return {
        "env_id": cfg.env_id,
        "reset_after": cfg.reset_after,
        "angle_range": None if cfg.angle_range == "all" else list(cfg.angle_range),
        "crop": list(cfg.crop),
        "img_size": cfg.img_size,
        "seed": cfg.seed,
        "shard_frames": cfg.shard_frames,
        # what decides how a frame looks besides the filters: the policy that drove, and the code that drew it
        "policy": cfg.policy,
        "policy_params": make_policy(cfg.policy).params(),
        "fast_render": draws_fast(cfg.env_id, cfg.fast_render),
        "collector_version": COLLECTOR_VERSION,
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
    intact = set(frame_store.recoverable(sizes)) if frame_store.folder.is_dir() else set()  # reads only
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


def complete_store(cfg: SimpleNamespace, beside: Path | None = None) -> tuple[store.Store | None, str]:
    """The run's dataset if every shard of it is there and intact (read only: a read-only store is
    fine); else None and what is wrong with it, in words. It is looked for `beside` a checkpoint
    first (a copied or moved run reads its own), then in the OUT_DIR the run recorded."""
    folders = list(dict.fromkeys(Path(folder) for folder in (beside, cfg.out_dir) if folder is not None))
    first_problem = ""
    for folder in folders:  # the first complete one is read; the others are never hashed
        frame_store, problem = _complete(cfg, folder)
        if frame_store is not None:
            return frame_store, ""
        first_problem = first_problem or problem
    return None, first_problem


def _complete(cfg: SimpleNamespace, out_dir: Path) -> tuple[store.Store | None, str]:
    frame_store = open_store(cfg, out_dir)
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

