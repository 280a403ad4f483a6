"""The sharded store: resumable collection, checked shards, and readers that serve every frame once."""

from __future__ import annotations

import multiprocessing
import signal
import threading

import numpy as np
import pytest
import torch
from conftest import StopAfter, read_store, same_dataset, train_config

from worldvae import collection, dataset, readers, store
from worldvae.cli import Stopped, UserError


def _cfg(**overrides):
    return train_config(**({"n_frames": 750, "shard_frames": 250, "img_size": 32} | overrides))


def test_a_stopped_collection_resumes_to_identical_shards(tmp_path, capsys) -> None:
    cfg = _cfg()
    whole, _ = collection.collect_frames(cfg)  # never stopped, in memory: the same chunks and seeds
    with pytest.raises(Stopped, match="keeps the 250 frames of every finished shard") as stopped:
        dataset.load_or_collect(cfg, tmp_path, StopAfter(0))  # stops after its first chunk, which ends shard 0
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    frame_store = dataset.open_store(cfg, tmp_path)
    assert frame_store.missing({0: 250, 1: 250, 2: 250}, quiet=True) == [1, 2]
    capsys.readouterr()
    dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))
    assert "250 of 750 frames are already in" in capsys.readouterr().out
    assert same_dataset(read_store(frame_store, 3), whole)


def test_shards_are_the_same_whatever_the_workers_or_processes(tmp_path) -> None:
    alone = dataset.open_store(_cfg(n_envs=1), tmp_path / "alone")
    dataset.load_or_collect(_cfg(n_envs=1), tmp_path / "alone", StopAfter(10**9))
    mine = [dataset.load_or_collect(_cfg(n_envs=2), tmp_path / "ranks", StopAfter(10**9), rank, 2)[1]
            for rank in (0, 1)]
    assert mine == [[0, 2], [1]], "each process collects and trains on its own shards"
    ranks = dataset.open_store(_cfg(), tmp_path / "ranks")
    assert ranks.missing({0: 250, 1: 250, 2: 250}) == [], "both processes entered their shards in one manifest"
    assert same_dataset(read_store(alone, 3), read_store(ranks, 3))
    episodes = read_store(alone, 3)["episode"]
    assert all(set(episodes[i * 250:(i + 1) * 250]).isdisjoint(episodes[(i + 1) * 250:]) for i in range(2)), \
        "an episode never crosses shards"


def test_a_corrupt_or_missing_shard_is_named_and_collected_again(tmp_path, capsys) -> None:
    cfg = _cfg()
    frame_store, _ = dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))
    original = read_store(frame_store, 3)
    damaged = bytearray(frame_store.path(1).read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    frame_store.path(1).write_bytes(bytes(damaged))
    frame_store.path(2).unlink()
    capsys.readouterr()
    dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))
    out = capsys.readouterr().out
    assert f"{frame_store.path(1)} does not match its sha256 in the manifest; collecting it again" in out
    assert f"{frame_store.path(2)} is missing; collecting it again" in out
    assert "collecting 500 frames" in out and same_dataset(read_store(frame_store, 3), original)


def test_a_store_is_reused_with_the_same_settings_and_grows_with_n_frames(tmp_path, capsys) -> None:
    frame_store, _ = dataset.load_or_collect(_cfg(), tmp_path, StopAfter(10**9))
    first = read_store(frame_store, 3)
    dataset.load_or_collect(_cfg(), tmp_path, StopAfter(10**9))
    assert "reusing 750 frames in 3 shards" in capsys.readouterr().out
    dataset.load_or_collect(_cfg(n_frames=1000), tmp_path, StopAfter(10**9))
    assert "750 of 1000 frames are already in" in capsys.readouterr().out
    assert same_dataset({k: v[:750] for k, v in read_store(frame_store, 4).items()}, first)
    dataset.load_or_collect(_cfg(seed=1), tmp_path, StopAfter(10**9))
    other = dataset.open_store(_cfg(seed=1), tmp_path)
    assert other.folder != frame_store.folder, "another seed collects into a store of its own"
    assert not same_dataset(read_store(other, 3), first)
    assert same_dataset({k: v[:750] for k, v in read_store(frame_store, 4).items()}, first), "the first is untouched"


# ---------------------------------------------------------------- the readers, on frames that carry their own id


def _numbered_store(tmp_path, sizes: list[int], episode_length: int = 5) -> store.Store:
    """A store whose frame i shows i in its first two pixels, episodes of `episode_length` frames."""
    numbered = store.Store(tmp_path / "numbered", {"img_size": 2})
    numbered.prepare()
    first = 0
    for index, n in enumerate(sizes):
        ids = np.arange(first, first + n)
        pixels = np.zeros((n, 3, 2, 2), dtype=np.uint8)
        pixels[:, 0, 0, 0], pixels[:, 0, 0, 1] = ids % 256, ids // 256
        numbered.write(index, {"frames": pixels, "states": np.zeros((n, 0), np.float32),
                               "episode": (ids // episode_length).astype(np.int32), "step": ids % episode_length,
                               "action": np.zeros((n, 1), np.float32), "reward": np.zeros(n, np.float32),
                               "done": ids % episode_length == episode_length - 1})
        first += n
    return numbered


def _ids(batch: torch.Tensor) -> list[int]:
    return (batch[:, 0, 0, 0].long() + 256 * batch[:, 0, 0, 1].long()).tolist()


def _expected(numbered: store.Store, shards: list[int], side: int) -> list[int]:
    ids = []
    for index in shards:
        data = numbered.read(index)
        ids += _ids(torch.from_numpy(data["frames"][readers.split_shard(data["episode"], index, 0.2, 7)[side]]))
    return sorted(ids)


def test_the_streamed_reader_yields_every_training_frame_once_per_epoch_mixed_across_shards(tmp_path) -> None:
    numbered = _numbered_store(tmp_path, [40, 40, 40, 17])
    streamed = readers.Streamed(numbered, [0, 1, 2, 3], 0.2, seed=7, buffer_frames=30)
    shuffle = torch.Generator().manual_seed(0)
    epochs = [[_ids(batch) for batch in streamed.batches(8, shuffle)] for _ in range(2)]
    for batches in epochs:
        seen = [i for batch in batches for i in batch]
        assert sorted(seen) == _expected(numbered, [0, 1, 2, 3], 0) and len(seen) == streamed.n_train
        assert all(len(batch) == 8 for batch in batches[:-1]), "only the last batch may be short"
    assert epochs[0] != epochs[1], "each epoch in another order"
    shard_of = {i: s for s, ids in enumerate([range(0, 40), range(40, 80), range(80, 120), range(120, 137)])
                for i in ids}
    assert sum(len({shard_of[i] for i in batch}) > 1 for batch in epochs[0]) >= len(epochs[0]) // 3, \
        "batches mix frames of several shards"
    validated = sorted(i for batch in streamed.validation(8) for i in _ids(batch))
    assert validated == _expected(numbered, [0, 1, 2, 3], 1)
    assert set(validated).isdisjoint(seen)


def test_by_default_a_cpu_run_holds_what_fits_in_a_quarter_of_the_ram_and_streams_the_rest(monkeypatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(readers, "available_memory", lambda: 8 * 2**30)
    assert readers.in_memory_budget(None, cpu) == 2 * 2**30, "a quarter of the available RAM"
    assert readers.in_memory_budget(0, cpu) == 0 and readers.in_memory_budget(3, cpu) == 3 * 2**20, "IN_RAM_MB rules"
    monkeypatch.setattr(readers, "gpu_room", lambda device: 5 * 2**20)
    assert readers.in_memory_budget(None, torch.device("cuda")) == 5 * 2**20, "on CUDA, the GPU's own room"


def test_in_ram_and_streamed_serve_the_same_frames_and_say_which(tmp_path, capsys) -> None:
    numbered = _numbered_store(tmp_path, [40, 40, 17])
    in_ram = readers.open_frames(numbered, [0, 2], 0.2, 7, in_ram_bytes=10**6)
    assert "holding 57 frames" in capsys.readouterr().out and isinstance(in_ram, readers.InMemory)
    streamed = readers.open_frames(numbered, [0, 2], 0.2, 7, in_ram_bytes=0)
    assert "streaming 57 frames" in capsys.readouterr().out and isinstance(streamed, readers.Streamed)
    for source in (in_ram, streamed):
        trained = sorted(i for batch in source.batches(4, torch.Generator()) for i in _ids(batch))
        assert trained == _expected(numbered, [0, 2], 0), type(source).__name__
        assert sorted(i for batch in source.validation(4) for i in _ids(batch)) == _expected(numbered, [0, 2], 1)
    assert torch.equal(in_ram.shown, streamed.shown), "the same frames in reconstructions.png"


def test_the_frames_shown_each_epoch_come_from_different_episodes(tmp_path) -> None:
    numbered = _numbered_store(tmp_path, [400, 400], episode_length=5)
    for source in (readers.open_frames(numbered, [0, 1], 0.2, 7, 10**6),
                   readers.open_frames(numbered, [0, 1], 0.2, 7, 0)):
        ids = _ids(source.shown)
        assert len(ids) == readers.SHOWN_FRAMES and len({i // 5 for i in ids}) == len(ids), "one frame per episode"
        assert set(ids) <= set(_expected(numbered, [0], 1)), "all of them held out"


def test_a_shard_damaged_during_training_is_named_in_one_line(tmp_path) -> None:
    numbered = _numbered_store(tmp_path, [40, 40])
    streamed = readers.Streamed(numbered, [0, 1], 0.2, seed=7)
    numbered.path(1).write_bytes(b"not a shard")
    with pytest.raises(UserError, match=r"shard_00001.npz cannot be read"):
        list(streamed.batches(8, torch.Generator()))


def test_each_process_gets_its_own_shards_and_together_all() -> None:
    for n_shards, world in [(6, 2), (7, 3), (3, 3)]:
        parts = [store.shards_of_rank(n_shards, rank, world) for rank in range(world)]
        assert sorted(sum(parts, [])) == list(range(n_shards)) and all(parts)
    assert store.shard_sizes(9_000, 4000) == [4000, 4000, 1000]


def test_a_streamed_epoch_ends_for_any_batch_size_and_its_last_frames_leave_shuffled(tmp_path) -> None:
    """A batch as large as the shuffle buffer (or larger) once looped forever; and the frames left in
    the buffer when the shards run out are drawn in random order too."""
    numbered = _numbered_store(tmp_path, [40, 40, 17])
    done: dict = {}

    def epoch() -> None:
        streamed = readers.Streamed(numbered, [0, 1, 2], 0.2, 7, buffer_frames=16)
        done["ids"] = [_ids(batch) for batch in streamed.batches(32, torch.Generator().manual_seed(0))]

    reader = threading.Thread(target=epoch, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "the epoch never ended"
    assert sorted(i for batch in done["ids"] for i in batch) == _expected(numbered, [0, 1, 2], 0)
    whole = readers.Streamed(numbered, [0], 0.2, 7)  # a batch larger than the split: all of it is what is left
    order = [i for batch in whole.batches(10**6, torch.Generator().manual_seed(0)) for i in _ids(batch)]
    assert sorted(order) == _expected(numbered, [0], 0) and order != sorted(order), \
        "the buffer's last frames are shuffled, not left in shard order"


def test_processes_that_write_shards_into_one_store_at_once_lose_no_manifest_entry(tmp_path) -> None:
    """Ranks of one torchrun job enter their shards in one manifest, each under its file lock."""
    shared = _numbered_store(tmp_path, [])
    start = multiprocessing.get_context("fork").Barrier(2)

    def write(rank: int) -> None:
        frame_store = store.Store(shared.folder, shared.settings)  # each process its own, as each rank has
        start.wait()
        for index in range(rank, 12, 2):
            frame_store.write(index, {key: np.zeros((3, *shape), dtype) for key, (shape, dtype) in _SHAPES.items()})

    writers = [multiprocessing.get_context("fork").Process(target=write, args=(rank,)) for rank in (0, 1)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
    assert [process.exitcode for process in writers] == [0, 0]
    assert sorted(int(i) for i in shared.read_manifest()) == list(range(12))
    assert shared.intact({i: 3 for i in range(12)}) == list(range(12))


_SHAPES = {"frames": ((3, 2, 2), np.uint8), "states": ((0,), np.float32), "episode": ((), np.int32),
           "step": ((), np.int32), "action": ((1,), np.float32), "reward": ((), np.float32), "done": ((), bool)}


def test_a_new_store_collects_without_a_word_of_damage(tmp_path, capsys) -> None:
    frame_store, _ = dataset.load_or_collect(train_config(n_frames=500, shard_frames=250, img_size=32), tmp_path,
                                             StopAfter(10**9))
    out = capsys.readouterr().out
    assert "rebuilt" not in out and "damaged" not in out, out
    assert sorted(frame_store.read_manifest()) == ["0", "1"]
