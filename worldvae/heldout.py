"""Frames no model trained on, to score a model on and to fit a probe on."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from worldvae import readers, store
from worldvae.collection import collect_frames
from worldvae.dataset import complete_store

HELDOUT_LIMIT = 50_000  # at most, frames read to score on, or to fit a probe on: stable numbers, bounded RAM


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
        fit = readers.read_part(frame_store, shards, cfg.val_fraction, cfg.seed, "train", HELDOUT_LIMIT)
        if not fresh:
            test = readers.read_part(frame_store, shards, cfg.val_fraction, cfg.seed, "val", HELDOUT_LIMIT)
            return Heldout(fit, test, f"{len(test['frames'])} of the run's validation frames (whole episodes)")
    n_frames, seed = fresh or min(cfg.n_frames, HELDOUT_LIMIT), fresh_seed(cfg.seed)
    gone = "" if frame_store is not None or fresh else f"{problem}; "
    print(f"{gone}collecting {n_frames} fresh frames from {cfg.env_id} (seed {seed})")
    new = collect_frames(SimpleNamespace(**(config | {"n_frames": n_frames, "seed": seed})))[0]
    description = f"{gone}{n_frames} fresh frames, seed {seed}, none seen in training"
    if fit is not None:
        return Heldout(fit, new, description)
    fit_idx, test_idx = readers.split_by_episode(new["episode"], 0.5, seed)
    return Heldout(_select(new, fit_idx), _select(new, test_idx), description + f"; {len(test_idx)} of them scored, "
                   "the other half fits the probe")


def fresh_seed(seed: int) -> int:
    """The seed of frames that a run with `seed` never trained on (chunk seeds derive from it)."""
    return seed + 1


def _select(data: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {key: values[idx] for key, values in data.items()}
