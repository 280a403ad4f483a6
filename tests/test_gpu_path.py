"""The CUDA and multi-process paths, checked where a CPU can see them: faked device properties,
counted host syncs, per-rank random states, and frames placed shard by shard."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY, StopAfter, run_main, tiny, train_config

import train_vae
from MyVAE import MyVAE
from worldvae import cli, dataset, distributed, readers, resume
from worldvae.compute import Compute, pick_autocast_dtype, pick_device

CPU = Compute.choose("cpu", "fp32", False, "off")


def test_a_process_touches_only_its_own_gpu_and_makes_it_current_first(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", str(device))))
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, device=None, **k: calls.append(("empty", str(device)))
                        or real_empty(*a, **k))
    assert pick_device("cuda", local_index=3) == torch.device("cuda", 3)
    assert calls == [("set_device", "cuda:3"), ("empty", "cuda:3")], "no context opens on cuda:0 first"


@pytest.mark.parametrize(("capability", "expected"), [((7, 0), None), ((7, 5), None), ((8, 0), torch.bfloat16),
                                                      ((9, 0), torch.bfloat16)], ids=["V100", "T4", "A100", "H100"])
def test_auto_precision_takes_bf16_only_where_the_gpu_computes_it_natively(monkeypatch, capability, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what torch says even on a V100
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert pick_autocast_dtype("auto", torch.device("cuda")) == expected
    assert pick_autocast_dtype("bf16", torch.device("cuda")) == torch.bfloat16, "asked for by name, it is used"


def test_compile_auto_never_compiles_ddp_with_syncbatchnorm() -> None:
    cuda = torch.device("cuda")
    assert Compute.choose(cuda, "fp32", False, "auto", long_run=True, processes=2).compile is False
    assert Compute.choose(cuda, "fp32", False, "off", long_run=True, processes=1).compile is False


_HOST_READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")  # a tensor read on the host


def _counting(monkeypatch) -> dict:
    """Counts optimizer steps, agreements across processes, and every host read of a tensor outside
    the agreement and the optimizer (Adam reads its own step count, a CPU tensor: not ours); `between`
    holds, for each step, the host reads since the previous step of the same epoch."""
    counts = {"agreements": 0, "reads": 0, "optimizer_steps": 0, "quiet": 0, "between": [], "last": None}
    real_any, real_step, real_validation = distributed.any_over_ranks, torch.optim.Adam.step, train_vae.validation_loss

    def quietly(function):
        def wrapped(*args, **kwargs):
            counts["quiet"] += 1
            try:
                return function(*args, **kwargs)
            finally:
                counts["quiet"] -= 1
        return wrapped

    def any_over_ranks(flags):
        counts["agreements"] += 1
        return quietly(real_any)(flags)

    def step(self, *args, **kwargs):
        result = quietly(real_step)(self, *args, **kwargs)
        counts["optimizer_steps"] += 1
        if counts["last"] is not None:
            counts["between"].append(counts["reads"] - counts["last"])
        counts["last"] = counts["reads"]
        return result

    def validation(*args, **kwargs):
        counts["last"] = None  # an epoch ends: its bookkeeping reads the sums, once
        return real_validation(*args, **kwargs)

    for name in _HOST_READS:
        real = getattr(torch.Tensor, name)

        def read(self, *args, real=real, **kwargs):
            counts["reads"] += not counts["quiet"]
            return real(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, read)
    monkeypatch.setattr(distributed, "any_over_ranks", any_over_ranks)
    monkeypatch.setattr(torch.optim.Adam, "step", step)
    monkeypatch.setattr(train_vae, "validation_loss", validation)
    return counts


def test_a_training_step_waits_on_the_device_once_and_reads_no_loss(tmp_path, monkeypatch) -> None:
    cfg, source = tiny(tmp_path)
    counts = _counting(monkeypatch)
    train_vae.train(cfg, source, tmp_path, CPU, StopAfter(10**9))
    steps = 2 * (source.n_train // 16)
    assert counts["optimizer_steps"] == steps
    assert counts["agreements"] == steps, "one collective per step: stop and non-finite agreed together"
    assert len(counts["between"]) == steps - 2 and set(counts["between"]) == {0}, \
        "no .item(), .tolist(), float(), bool() or .cpu() in a step: the losses are summed on the device"


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_a_non_finite_loss_stops_before_the_optimizer_step(tmp_path, monkeypatch, bad: str) -> None:
    cfg, source = tiny(tmp_path, epochs=1)
    counts = _counting(monkeypatch)
    calls = {"n": 0}
    real_loss = MyVAE.loss

    def third_loss_is_bad(self, *args, **kwargs):
        parts = real_loss(self, *args, **kwargs)
        calls["n"] += 1
        return parts | {"loss": parts["loss"] * float(bad)} if calls["n"] == 3 else parts

    monkeypatch.setattr(MyVAE, "loss", third_loss_is_bad)
    with pytest.raises(cli.UserError, match=f"loss is {bad} at epoch 1, step 3"):
        train_vae.train(cfg, source, tmp_path, CPU, StopAfter(10**9))
    assert counts["optimizer_steps"] == 2, "the NaN step never reached the weights"


def test_an_epoch_that_yields_fewer_batches_than_it_announced_says_so(tmp_path, monkeypatch) -> None:
    cfg, source = tiny(tmp_path)
    real = source.batches
    monkeypatch.setattr(source, "batches", lambda size, shuffle: (batch for batch in list(real(size, shuffle))[:2]))
    with pytest.raises(RuntimeError, match="epoch 1 yielded 2 of its 5 batches"):
        train_vae.train(cfg, source, tmp_path, CPU, StopAfter(10**9))


def test_each_process_restores_its_own_random_state_and_a_mismatch_is_refused(tmp_path) -> None:
    cfg, source = tiny(tmp_path, epochs=1)
    train_vae.train(cfg, source, tmp_path, CPU, StopAfter(10**9))
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    mine, theirs = checkpoint["rng"]["per_rank"][0], {"torch": torch.Generator().manual_seed(5).get_state()}
    checkpoint["rng"]["per_rank"] = [mine, theirs]
    model = MyVAE(latent_dim=4, img_size=32, hidden_dims=(8, 16, 16, 32, 32))
    optimizer = torch.optim.Adam(model.parameters())
    resume.restore_training_state(checkpoint, model, optimizer, CPU, distributed.Ranks(1, 2, launched=True))
    assert torch.equal(torch.get_rng_state(), theirs["torch"]), "rank 1 continues its own stream"
    with pytest.raises(cli.UserError, match="random states of 2 processes, not 3"):
        resume.restore_training_state(checkpoint, model, optimizer, CPU, distributed.Ranks(1, 3, launched=True))


def test_a_run_started_on_one_device_resumes_with_its_batch_on_another(capsys, tmp_path, monkeypatch) -> None:
    no_batch = [arg for arg in TINY if arg not in ("--batch_size", "16")]
    assert run_main(capsys, train_vae.main, *no_batch, "--epochs", "1", "--out_dir", str(tmp_path)).returncode == 0
    assert torch.load(tmp_path / "last.pt", weights_only=True)["config"]["batch_size"] == 8  # picked for the CPU
    monkeypatch.setattr(train_vae, "auto_batch_size", lambda device: 512)  # as a GPU would pick
    result = run_main(capsys, train_vae.main, *no_batch, "--epochs", "2", "--resume", "--out_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert torch.load(tmp_path / "last.pt", weights_only=True)["config"]["batch_size"] == 8, "the run's own batch"


def test_frames_held_on_a_device_are_moved_there_shard_by_shard(tmp_path, monkeypatch) -> None:
    cfg = train_config(n_frames=750, shard_frames=250, img_size=32, n_envs=1)
    frame_store, shards = dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))
    largest = {"bytes": 0}
    real = torch.from_numpy
    monkeypatch.setattr(torch, "from_numpy", lambda array: largest.update(bytes=max(largest["bytes"], array.nbytes))
                        or real(array))
    monkeypatch.setattr(readers, "gpu_room", lambda device: 2**30)  # a device with room for them all
    held = readers.open_frames(frame_store, shards, 0.1, 0, 2**30, torch.device("meta"))
    assert held.frames_u8.device.type == "meta" and len(held.frames_u8) == 750
    assert largest["bytes"] <= 250 * 3 * 32 * 32, "never more than one shard of frames in host memory at once"


def test_a_resume_reads_the_frames_as_the_run_started(tmp_path, capsys) -> None:
    cfg = train_config(n_frames=250, shard_frames=250, img_size=32, n_envs=1)
    frame_store, shards = dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))
    assert isinstance(readers.open_frames(frame_store, shards, 0.1, 0, 2**30, reader="streamed"), readers.Streamed)
    assert isinstance(readers.open_frames(frame_store, shards, 0.1, 0, 0, reader="in_memory"), readers.InMemory)
    assert "as when the run started" in capsys.readouterr().out
    assert np.array_equal(readers.open_frames(frame_store, shards, 0.1, 0, 0).shown, readers.open_frames(
        frame_store, shards, 0.1, 0, 2**30).shown)
