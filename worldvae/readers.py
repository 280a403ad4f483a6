"""What training reads from a store: which frames of each shard validate, and the frames in batches.

Training reads the shards one of two ways (`open_frames` picks, and says which): a set
within the in-memory budget (IN_RAM_MB; by default a quarter of the free memory of the
device, or of RAM) is held whole, in RAM or on a GPU, and reshuffled
each epoch (`InMemory`); a larger one streams from disk (`Streamed`): shards in a seeded
order, each batch drawn at random from a buffer of `_SHUFFLE_FRAMES` frames, so RAM stays
bounded whatever N_FRAMES. Episodes never cross shards, so each shard splits into training
and validation episodes by itself, whichever process reads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from worldvae.cli import require
from worldvae.compute import available_memory, require_memory
from worldvae.store import ARRAYS, Store

SHOWN_FRAMES = 8  # held-out frames that reconstructions.png shows after every epoch
CPU = torch.device("cpu")
_MAX_IN_RAM_MB = 2**30  # a PiB: no machine holds more, and a size past it is no integer number of bytes
_SHUFFLE_FRAMES = 8192  # frames a streamed epoch mixes at once (two batches at least), so batches mix episodes


def split_by_episode(episodes: np.ndarray, val_fraction: float, seed: int | Sequence[int],
                     at_least_one: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices for training and validation. Whole episodes go to one side only, so near-duplicate
    neighbouring frames cannot leak into validation: episodes in a seeded order validate until they
    hold `val_fraction` of the frames, the last of them with the chance that makes that share exact on
    average (so many small sets of episodes, as shards are, validate what VAL_FRACTION says, not more).
    With `at_least_one`, at least one episode validates."""
    ids, counts = np.unique(episodes, return_counts=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    target, held = val_fraction * len(episodes), np.cumsum(counts[order])
    n_val = int(np.searchsorted(held, target, side="right"))  # the episodes that fit within the share
    short = target - (held[n_val - 1] if n_val else 0)
    if n_val < len(ids) and rng.random() < short / counts[order[n_val]]:
        n_val += 1
    is_val = np.isin(episodes, ids[order[:max(n_val, int(at_least_one))]])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def spread_frames(episodes: np.ndarray, steps: np.ndarray, n: int) -> np.ndarray:
    """Indices of up to n frames that differ, for a picture of what a model does across states:
    each from another episode (evenly spaced among them), each at another point of its episode
    (from its start towards its end). With fewer episodes than n, frames evenly spaced in time."""
    ids = np.unique(episodes)
    if len(ids) < n:
        order = np.lexsort((steps, episodes))
        return order[np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int)]
    chosen = ids[np.linspace(0, len(ids) - 1, n).round().astype(int)]
    picks = []
    for k, episode in enumerate(chosen):
        rows = np.flatnonzero(episodes == episode)
        rows = rows[np.argsort(steps[rows], kind="stable")]
        picks.append(rows[round(k / max(1, n - 1) * (len(rows) - 1))])
    return np.array(picks)


def split_shard(episodes: np.ndarray, index: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shard `index`'s own split (its frame indices): the same whichever process or how many read it.
    Shard 0 always validates an episode, so every run has a validation set, and pictures to show."""
    return split_by_episode(episodes, val_fraction, [seed, index], at_least_one=index == 0)


def read_part(store: Store, shards: Sequence[int], val_fraction: float, seed: int, part: str,
              limit: int | None = None) -> dict[str, np.ndarray]:
    """The training ("train") or validation ("val") frames of `shards`, in shard order, with all
    their arrays; only the first `limit` frames when given (read no further than needed)."""
    pieces, n = [], 0
    for index in shards:
        data = store.read(index)
        chosen = split_shard(data["episode"], index, val_fraction, seed)[part == "val"]
        pieces.append({key: values[chosen] for key, values in data.items()})
        n += len(chosen)
        if limit is not None and n >= limit:
            break
    return {key: np.concatenate([p[key] for p in pieces])[:limit] for key in ARRAYS}


class InMemory:
    """The frames of some shards held in RAM (or on a GPU), a full shuffle each epoch."""

    kind = "in_memory"

    def __init__(self, frames_u8: torch.Tensor, train_idx: torch.Tensor, val_idx: torch.Tensor,
                 shown: torch.Tensor) -> None:
        self.frames_u8, self.train_idx, self.val_idx, self.shown = frames_u8, train_idx, val_idx, shown
        self.n_train, self.n_val = len(train_idx), len(val_idx)

    def batches(self, batch_size: int, shuffle: torch.Generator) -> Iterator[torch.Tensor]:
        """Every training frame once, in batches of `batch_size` (the last may be short).

        One seed is drawn from `shuffle` per epoch, whatever the number of frames: under torchrun
        every process's generator then stays in step with rank 0's, whose state last.pt keeps."""
        epoch = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=shuffle)))
        order = self.train_idx[torch.randperm(self.n_train, generator=epoch).to(self.train_idx.device)]
        for idx in order.split(batch_size):
            yield self.frames_u8[idx]

    def validation(self, batch_size: int) -> Iterator[torch.Tensor]:
        for idx in self.val_idx.split(batch_size):
            yield self.frames_u8[idx]


class Streamed:
    """The frames of some shards, read from disk a shard at a time (the next one read ahead)."""

    kind = "streamed"

    def __init__(self, store: Store, shards: Sequence[int], val_fraction: float, seed: int,
                 buffer_frames: int = _SHUFFLE_FRAMES) -> None:
        self.store, self.shards, self.buffer_frames = store, list(shards), buffer_frames
        self.split = {}  # shard -> (training, validation) frame indices, from its episodes alone
        for index in self.shards:
            self.split[index] = split_shard(store.read(index, ["episode"])["episode"], index, val_fraction, seed)
        self.n_train = sum(len(train) for train, _ in self.split.values())
        self.n_val = sum(len(val) for _, val in self.split.values())
        self.shown = shown_frames(store, self.shards[0], self.split[self.shards[0]][1])

    def _part(self, index: int, side: int) -> np.ndarray:
        return self.store.read(index, ["frames"])["frames"][self.split[index][side]]

    def _read_ahead(self, shards: Sequence[int], side: int) -> Iterator[np.ndarray]:
        """The training (side 0) or validation (1) frames of each shard in turn, the next one read meanwhile."""
        with ThreadPoolExecutor(1) as reader:
            ahead = reader.submit(self._part, shards[0], side) if shards else None
            for position in range(len(shards)):
                frames_u8 = ahead.result()
                if position + 1 < len(shards):
                    ahead = reader.submit(self._part, shards[position + 1], side)
                yield frames_u8

    def batches(self, batch_size: int, shuffle: torch.Generator) -> Iterator[torch.Tensor]:
        """Every training frame once, in batches of `batch_size` (the last may be short).

        Shards come in a seeded order and fill a buffer; each batch is drawn from the whole
        buffer at random, and the frames that remain when the shards run out leave shuffled.
        """
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=shuffle)))
        order = [self.shards[i] for i in rng.permutation(len(self.shards))]
        buffer, n = None, 0
        for frames_u8 in self._read_ahead(order, 0):
            if buffer is None:  # room for two batches at least, so a full buffer always has one to give
                size = min(max(self.buffer_frames, 2 * batch_size), self.n_train)
                buffer = np.empty((size, *frames_u8.shape[1:]), dtype=np.uint8)
            start = 0
            while start < len(frames_u8):
                take = min(len(buffer) - n, len(frames_u8) - start)
                buffer[n : n + take] = frames_u8[start : start + take]
                n, start = n + take, start + take
                if n == len(buffer) and n >= batch_size:
                    yield torch.from_numpy(_draw(buffer, n, batch_size, rng))
                    n -= batch_size
        rest = rng.permutation(n)
        for first in range(0, n, batch_size):
            yield torch.from_numpy(buffer[rest[first : first + batch_size]])

    def validation(self, batch_size: int) -> Iterator[torch.Tensor]:
        for frames_u8 in self._read_ahead(self.shards, 1):
            yield from torch.from_numpy(frames_u8).split(batch_size)


def shown_frames(store: Store, index: int, val_idx: np.ndarray) -> torch.Tensor:
    """The validation frames that reconstructions.png shows every epoch: SHOWN_FRAMES of shard
    `index`'s, from different episodes and different points in them, so they show different states."""
    data = store.read(index, ["frames", "episode", "step"])
    return torch.from_numpy(data["frames"][val_idx[spread_frames(data["episode"][val_idx], data["step"][val_idx],
                                                                   SHOWN_FRAMES)]])


def _draw(buffer: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` frames from buffer[:n] at random, as a copy; the last `size` slots' other frames
    move into the holes, so buffer[:n - size] holds the rest."""
    picked = rng.choice(n, size, replace=False)
    drawn = buffer[picked]
    holes = picked[picked < n - size]
    movers = np.setdiff1d(np.arange(n - size, n), picked, assume_unique=True)
    buffer[holes] = buffer[movers]
    return drawn


def gpu_room(device: torch.device) -> int:
    """Bytes of uint8 frames that may live on `device`: a quarter of a GPU's free memory; 0 off CUDA."""
    return torch.cuda.mem_get_info(device)[0] // 4 if device.type == "cuda" else 0


def in_memory_budget(in_ram_mb: float | None, device: torch.device) -> int:
    """Bytes of frames to hold in memory rather than stream: IN_RAM_MB, or by default what may live on
    the training device: on CUDA a quarter of its free memory (batches are then indexed there, with
    no copy per step), elsewhere a quarter of the available RAM (held frames train a little faster
    than streamed ones; larger sets stream, so RAM stays flat whatever N_FRAMES)."""
    if in_ram_mb is not None:
        return int(in_ram_mb * 2**20)
    return gpu_room(device) if device.type == "cuda" else available_memory() // 4


def require_batch_fits(n_train: int, batch_size: int) -> None:
    """A training split (of one process) that holds at least one batch."""
    require(n_train >= batch_size, f"the training split ({n_train} frames) is smaller than BATCH_SIZE={batch_size}: "
            "raise N_FRAMES or lower BATCH_SIZE")


def validate_in_ram_mb(in_ram_mb: float | None, frame_bytes: int) -> None:
    """IN_RAM_MB is None or a size in MiB that this machine can hold (of the `frame_bytes` there are)."""
    require(in_ram_mb is None or (isinstance(in_ram_mb, (int, float)) and 0 <= in_ram_mb <= _MAX_IN_RAM_MB),
            f"IN_RAM_MB must be None or a size in MiB from 0 to {_MAX_IN_RAM_MB:,} (a PiB), got {in_ram_mb!r}")
    if in_ram_mb is not None:  # frames up to this budget are held whole
        require_memory(min(in_ram_mb * 2**20, frame_bytes), f"holding IN_RAM_MB={in_ram_mb} of frames",
                       "lower IN_RAM_MB (or set it to 0 to stream from disk)")


def open_frames(store: Store, shards: Sequence[int], val_fraction: float, seed: int, in_ram_bytes: int,
                device: torch.device = CPU, reader: str | None = None) -> InMemory | Streamed:
    """What training on `device` reads from `shards`: held in memory when their frames fit in
    `in_ram_bytes` (on the device itself when they fit in its room, filled there shard by shard,
    never assembled in RAM first; else in RAM), else streamed. A resumed run passes the `reader` it
    started with: the order of its batches depends on it. Says which, and why."""
    n_frames = store.frame_count(shards)
    side = store.settings["img_size"]
    total = n_frames * 3 * side**2  # bytes of uint8 frames
    if reader == Streamed.kind or (reader is None and total > in_ram_bytes):
        source = Streamed(store, shards, val_fraction, seed)
        why = ("as when the run started" if reader else f"more than the {in_ram_bytes / 2**20:.0f} MiB held in "
               "memory: IN_RAM_MB" if in_ram_bytes else "IN_RAM_MB=0")
        print(f"streaming {n_frames} frames ({total / 2**20:.0f} MiB, {why}) from {len(shards)} shards in "
              f"{store.folder}, through a shuffle buffer of at least {min(_SHUFFLE_FRAMES, source.n_train)} frames")
        return source
    device = device if device.type != "cpu" and total <= gpu_room(device) else CPU
    if device == CPU:  # a resume that held them on a GPU may come here: RAM must hold them
        require_memory(total, f"holding the {n_frames} frames in RAM", "lower IN_RAM_MB to stream them, or resume "
                       "on the GPU the run started on")
    frames_u8 = torch.empty((n_frames, 3, side, side), dtype=torch.uint8, device=device)
    train, val, offset = [], [], 0
    for index in shards:  # one shard at a time in RAM, whatever holds the whole
        data = store.read(index, ["frames", "episode"])
        train_idx, val_idx = split_shard(data["episode"], index, val_fraction, seed)
        frames_u8[offset : offset + len(data["frames"])] = torch.from_numpy(data["frames"]).to(device)
        train.append(train_idx + offset)
        val.append(val_idx + offset)
        offset += len(data["frames"])
    shown = shown_frames(store, shards[0], val[0])  # the first shard's offset is 0: its own indices
    why = ("as when the run started" if reader
           else f"within the {in_ram_bytes / 2**20:.0f} MiB held in memory: IN_RAM_MB")
    print(f"holding {n_frames} frames ({total / 2**20:.0f} MiB, {why}) in "
          f"{'RAM' if device.type == 'cpu' else device}")
    return InMemory(frames_u8, *(torch.from_numpy(np.concatenate(i)).to(device) for i in (train, val)), shown)

