"""Each speed-up gives what the plain path gives: same shapes, near-equal numbers, same filters."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import train_config

from MyVAE import MyVAE
from worldvae import collection, compute as compute_module
from worldvae.compute import Compute, pick_autocast_dtype

SMALL = dict(latent_dim=4, hidden_dims=(8, 16, 16, 32, 32), img_size=32)


def _compute(precision: str = "auto", channels_last: bool = True, compile: str = "auto") -> Compute:
    return Compute.choose("cpu", precision, channels_last, compile)


def test_bf16_channels_last_matches_fp32_nchw() -> None:
    torch.manual_seed(0)
    model = MyVAE(**SMALL).eval()
    frames_u8 = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    idx = torch.arange(8)
    plain, fast = _compute(precision="fp32", channels_last=False), _compute(precision="bf16", channels_last=True)
    assert fast.autocast_dtype == torch.bfloat16 and plain.autocast_dtype is None
    x_plain, x_fast = plain.inputs(frames_u8[idx]), fast.inputs(frames_u8[idx])
    assert torch.equal(x_plain, x_fast) and x_fast.is_contiguous(memory_format=torch.channels_last)
    with plain.autocast():
        out_plain = model(x_plain)[0]
    fast_model = fast.prepare(model)
    with fast.autocast():
        out_fast = fast_model(x_fast)[0]
    assert out_fast.shape == out_plain.shape
    assert (out_fast.float() - out_plain).abs().max() < 0.02


def test_a_bf16_training_step_lowers_the_loss_like_fp32() -> None:
    frames_u8 = torch.full((16, 3, 32, 32), 255, dtype=torch.uint8)
    for i in range(16):
        frames_u8[i, :, 20:26, 2 * i : 2 * i + 5] = 0
    losses = {}
    for name, compute in {"fp32": _compute(precision="fp32", channels_last=False),
                          "bf16": _compute(precision="bf16", channels_last=True)}.items():
        torch.manual_seed(0)
        model = compute.prepare(MyVAE(**SMALL))
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        curve = []
        for _ in range(30):
            with compute.autocast():
                parts = model.loss(*model(compute.inputs(frames_u8)), kl_weight=1e-4)
            optimizer.zero_grad()
            parts["loss"].backward()
            optimizer.step()
            curve.append(parts["recon"].item())
        losses[name] = curve
    for curve in losses.values():
        assert curve[-1] < 0.3 * curve[0]
    assert losses["bf16"][-1] == pytest.approx(losses["fp32"][-1], rel=0.3)


@pytest.mark.slow
def test_auto_batch_size_is_small_on_a_cpu_and_large_on_cuda_and_is_recorded(capsys, tmp_path) -> None:
    from conftest import TINY, run_main

    import train_vae
    from worldvae.checkpoints import load_checkpoint
    from worldvae.compute import auto_batch_size

    assert auto_batch_size(torch.device("cpu")) == 8 and auto_batch_size(torch.device("cuda")) == 512
    tiny = [arg for arg in TINY if arg not in ("--batch_size", "16")]
    assert run_main(capsys, train_vae.main, *tiny, "--epochs", "1", "--out_dir", str(tmp_path)).returncode == 0
    assert load_checkpoint(tmp_path / "vae.pt")["config"]["batch_size"] == 8


def test_compile_auto_waits_for_a_run_long_enough_to_repay_it() -> None:
    from worldvae.compute import Compute

    cuda = torch.device("cuda")  # a device object needs no GPU; nothing runs on it here
    assert Compute.choose(cuda, "fp32", False, "auto", long_run=False).compile is False
    if shutil.which("g++"):
        assert Compute.choose(cuda, "fp32", False, "auto", long_run=True).compile is True
    assert Compute.choose(torch.device("cpu"), "fp32", False, "auto", long_run=True).compile is False


@pytest.mark.parametrize(("flags", "expected"), [
    ("fpu sse avx2", None),  # AMD EPYC Zen 3: no AVX-512 at all
    ("fpu avx2 avx512f avx512bw avx512vl", None),  # AVX-512 alone: oneDNN would emulate bf16, slower than fp32
    ("fpu avx2 avx512f avx512_bf16", torch.bfloat16),  # Zen 4, Cooper Lake
    ("fpu avx2 avx512f amx_tile amx_bf16", torch.bfloat16),  # Sapphire Rapids
    ("", None),  # no /proc/cpuinfo (macOS, Windows)
])
def test_auto_precision_takes_bf16_only_where_the_cpu_computes_it(monkeypatch, flags: str, expected) -> None:
    monkeypatch.setattr(compute_module, "_cpuinfo", lambda: f"processor\t: 0\nflags\t\t: {flags}\n" if flags else "")
    assert pick_autocast_dtype("auto", torch.device("cpu")) == expected
    assert pick_autocast_dtype("fp32", torch.device("cpu")) is None
    assert pick_autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16, "asked for by name, it is used"


def test_compile_falls_back_cleanly_without_a_compiler(monkeypatch, capsys) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert _compute(compile="on").compile is False
    assert "no C++ compiler found" in capsys.readouterr().out
    assert _compute(compile="auto").compile is False  # auto compiles on CUDA only


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("g++"), reason="torch.compile needs a C++ compiler")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch.compile itself
def test_compiled_training_forward_matches_eager_and_shares_weights(monkeypatch) -> None:
    import torch._inductor.config

    # Inductor's pool of compile workers costs more than it saves on a test's few kernels (12 s vs 5 s on 2 cores).
    monkeypatch.setattr(torch._inductor.config, "compile_threads", 1)
    torch.manual_seed(0)
    model = MyVAE(**(SMALL | {"hidden_dims": (8, 16)})).eval()  # two layers: fewer kernels (29 s vs 37 s cold)
    compute = _compute(compile="on", precision="fp32", channels_last=False)
    net = compute.for_training(model)
    x = torch.rand(4, 3, 32, 32)
    assert torch.allclose(net(x)[0], model(x)[0], atol=1e-5)
    assert set(model.state_dict()) == {k.removeprefix("_orig_mod.") for k in net.state_dict()}


def test_parallel_collection_obeys_both_filters_exactly() -> None:
    cfg = train_config(n_frames=600, img_size=32, n_envs=2, angle_range=(-0.05, 0.05), reset_after=7)
    data, stats = collection.collect_frames(cfg)
    assert len(data["frames"]) == 600 and stats.kept == 600 and stats.rejected_angle > 0
    assert np.abs(data["states"][:, 2]).max() <= 0.05
    _, per_episode = np.unique(data["episode"], return_counts=True)
    assert per_episode.max() <= 7 and data["step"].max() <= 6


_THREAD_PROBE = """
import json, os, sys
sys.path.insert(0, {repo!r})
import torch
from worldvae import cli, collection
import train_vae
from MyVAE import MyVAE

seen = {{}}
real_loss, real_chunk = MyVAE.loss, collection.collect_chunk

def loss(self, *args, **kwargs):
    seen.setdefault("torch_threads_in_training", torch.get_num_threads())
    return real_loss(self, *args, **kwargs)

def chunk(cfg, index, n, render=None):  # runs in a forked collection worker
    data, stats = real_chunk(cfg, index, n, render)
    data["reward"][:] = int(os.environ.get("OMP_NUM_THREADS", "0"))  # what the worker inherited, sent back
    return data, stats

MyVAE.loss, collection.collect_chunk = loss, chunk
cli.run(train_vae.main, sys.argv[1:])
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_threads_reach_torch_before_training_and_the_collection_workers_inherit_them(tmp_path) -> None:
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO, TINY

    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    args = [*TINY, "--n_frames", "500", "--shard_frames", "250", "--n_envs", "2", "--epochs", "1", "--threads", "1",
            "--out_dir", str(tmp_path)]
    result = subprocess.run([sys.executable, "-c", _THREAD_PROBE.format(repo=str(REPO)), *args], env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"torch_threads_in_training": 1}
    store_dir = next(tmp_path.glob("frames_*"))
    rewards = [np.load(shard)["reward"] for shard in sorted(store_dir.glob("shard_*.npz"))]
    finite = np.concatenate(rewards)[~np.isnan(np.concatenate(rewards))]
    assert len(finite) and (finite == 1).all(), "every collection worker ran with OMP_NUM_THREADS=1"
