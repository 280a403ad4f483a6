"""Frames no model trained on, to score a model on and to fit a probe on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from worldvae import readers, store
from worldvae.collection import collect_frames
from worldvae.dataset import complete_store

HELDOUT_LIMIT = 50_000  # at most, frames read to score on, or to fit a probe on: stable numbers, bounded RAM


@dataclass
class Heldout:
    """Frames to score a model on (`test`), frames to fit a probe on (`fit`), and what they are."""

    fit: dict[str, np.ndarray] | None  # None when not asked for
    test: dict[str, np.ndarray]
    description: str


def heldout_frames(config: dict, fresh: int = 0, beside: Path | None = None, fit: bool = True,
                   limit: int = HELDOUT_LIMIT) -> Heldout:
    """Frames no model trained on, for the run whose constants are `config`, at most `limit` of them.

    fresh == 0: the validation episodes of the run's own dataset, looked for `beside` its checkpoint
    first, then in its recorded OUT_DIR (the description names the store read). fresh > 0 (or when
    that dataset is gone): `fresh` (or N_FRAMES, at most `limit`) new frames collected with another
    seed, all of them scored. With `fit`, frames to fit a probe on too: the run's training split, or,
    without it, half of the fresh episodes, the other half then scored alone.
    """
    cfg = SimpleNamespace(**config)
    frame_store, problem = complete_store(cfg, beside)
    train = None
    if frame_store is not None:
        shards = range(len(store.shard_sizes(cfg.n_frames, cfg.shard_frames)))
        if fit:
            train = readers.read_part(frame_store, shards, cfg.val_fraction, cfg.seed, "train", limit)
        if not fresh:
            test = readers.read_part(frame_store, shards, cfg.val_fraction, cfg.seed, "val", limit)
            return Heldout(train, test, f"{len(test['frames'])} of the run's validation frames (whole episodes) in "
                                        f"{frame_store.folder}, the frames that chose this checkpoint as the best "
                                        "epoch: --fresh N scores frames that played no part")
    n_frames, seed = fresh or min(cfg.n_frames, limit), fresh_seed(cfg.seed)
    gone = "" if frame_store is not None or fresh else f"{problem}; "
    print(f"{gone}collecting {n_frames} fresh frames from {cfg.env_id} (seed {seed})")
    new = collect_frames(SimpleNamespace(**(vars(cfg) | {"n_frames": n_frames, "seed": seed})))[0]
    description = f"{gone}{n_frames} fresh frames, seed {seed}, none seen in training"
    if train is not None or not fit:
        return Heldout(train, new, description)
    fit_idx, test_idx = readers.split_by_episode(new["episode"], 0.5, seed)
    return Heldout(_select(new, fit_idx), _select(new, test_idx), description + f"; {len(test_idx)} of them scored, "
                   "the other half fits the probe")


def rendered_frames(config: dict, n_frames: int) -> dict[str, np.ndarray]:
    """`n_frames` new frames of the run's env and filters, from another seed, drawn by the env's own
    renderer (FAST_RENDER off): frames of a renderer this project did not write, none trained on."""
    seed = fresh_seed(config["seed"])
    print(f"collecting {n_frames} fresh frames from {config['env_id']} (seed {seed}), drawn by the env's own renderer")
    cfg = {"policy": None} | config | {"n_frames": n_frames, "seed": seed, "fast_render": False}
    return collect_frames(SimpleNamespace(**cfg))[0]


def fresh_seed(seed: int) -> int:
    """The seed of frames that a run with `seed` never trained on (chunk seeds derive from it)."""
    return seed + 1


def _select(data: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {key: values[idx] for key, values in data.items()}
