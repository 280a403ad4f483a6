"""Nothing lost: resume, signals, divergence, failed writes and bad checkpoint files."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY, StopAfter, run_main, tiny, train_config

import sample_vae
import train_vae
from MyVAE import MyVAE
from worldvae import dataset, files
from worldvae.checkpoints import load_checkpoint, same_weights, save_checkpoint
from worldvae.cli import Stopped, UserError
from worldvae.compute import Compute

TIMINGS = ("seconds", "images_per_s")  # the only columns of metrics.csv that may differ between equal runs

# Long enough (about 25 batches an epoch) that a signal lands while training is under way.
SLOW = ["--n_frames", "500", "--img_size", "32", "--latent_dim", "4", "--batch_size", "16",
        "--hidden_dims", "8,16,16,32,32"]


def _weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out_dir / "last.pt")["model"]


def _losses(out_dir: Path) -> list[dict]:
    with open(out_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in TIMINGS} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path, capsys) -> None:
    """EPOCHS may grow on resume; at a constant learning rate the result is exactly a longer run."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    constant = [*TINY, "--cosine", "False", "--warmup", "0.0"]
    assert run_main(capsys, train_vae.main, *constant, "--epochs", "3", "--out_dir", str(straight)).returncode == 0
    assert run_main(capsys, train_vae.main, *constant, "--epochs", "1", "--out_dir", str(resumed)).returncode == 0
    result = run_main(capsys, train_vae.main, *constant, "--epochs", "3", "--resume", "--out_dir", str(resumed))
    assert result.returncode == 0, result.stderr
    assert "resuming at epoch 2, batch 0" in result.stdout
    assert "EPOCHS 1 -> 3: the learning-rate schedule is laid over 3 epochs from here on" in result.stdout
    assert same_weights(_weights(straight), _weights(resumed))
    assert _losses(straight) == _losses(resumed)
    assert len(_losses(resumed)) == 3


def _tiny_training(tmp_path: Path, in_ram_bytes: int = 2**30) -> tuple:
    return *tiny(tmp_path, in_ram_bytes), Compute.choose("cpu", "auto", True, "off")


@pytest.mark.slow
@pytest.mark.parametrize("in_ram_bytes", [2**30, 0], ids=["in-RAM", "streamed"])
def test_a_stop_mid_epoch_resumes_to_thesame_weights(tmp_path, in_ram_bytes: int) -> None:
    cfg, data, compute = _tiny_training(tmp_path, in_ram_bytes)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    straight.mkdir(), stopped.mkdir()
    train_vae.train(cfg, data, straight, compute, StopAfter(99))
    with pytest.raises(Stopped, match=r"in epoch 1 after 4/5 batches.*--resume") as stop:
        train_vae.train(cfg, data, stopped, compute, StopAfter(3))  # the request comes in step 4, which finishes
    assert stop.value.exit_code == 128 + signal.SIGTERM
    checkpoint = load_checkpoint(stopped / "last.pt")
    assert checkpoint["progress"]["epoch"] == 1 and checkpoint["progress"]["batch"] == 4
    train_vae.train(cfg, data, stopped, compute, StopAfter(99), checkpoint=checkpoint)
    assert same_weights(_weights(straight), _weights(stopped))
    assert _losses(straight) == _losses(stopped)


@pytest.mark.slow
def test_non_finite_loss_names_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    cfg, data, compute = _tiny_training(tmp_path)
    calls = {"n": 0}
    real_loss = MyVAE.loss

    def loss_that_turns_nan(self, *args, **kwargs):
        parts = real_loss(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 7:  # epoch 1: 5 training batches, 1 validation batch; epoch 2 goes bad at step 2
            parts["loss"] = parts["loss"] * float("nan")
        return parts

    monkeypatch.setattr(MyVAE, "loss", loss_that_turns_nan)
    with pytest.raises(UserError, match=r"loss is nan at epoch 2, step 2.*last.pt keeps the last good epoch.*lower LR"):
        train_vae.train(cfg, data, tmp_path, compute, StopAfter(99))
    good = load_checkpoint(tmp_path / "last.pt")
    assert good["progress"]["epoch"] == 2 and good["progress"]["batch"] == 0
    assert all(torch.isfinite(t).all() for t in good["model"].values() if t.is_floating_point())


def test_absurd_learning_rate_fails_with_a_clear_message(capsys, tmp_path) -> None:
    result = run_main(capsys, train_vae.main, *TINY, "--lr", "10", "--out_dir", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "training diverged: loss is nan at epoch 1" in result.stderr and "lower LR" in result.stderr


def test_a_failed_checkpoint_write_leaves_the_previous_file_intact(tmp_path, monkeypatch) -> None:
    path = tmp_path / "vae.pt"
    save_checkpoint(path, MyVAE(img_size=32, latent_dim=4))
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")  # the half-written file is already on disk by now

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(UserError, match="cannot write .*vae.pt \\(No space left on device\\).*previous file is intact"):
        save_checkpoint(path, MyVAE(img_size=32, latent_dim=4))
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_written_files_are_as_readable_as_any_other_file(tmp_path) -> None:
    files.atomic_write(tmp_path / "metrics.csv", lambda f: f.write(b"epoch\n1\n"))
    assert (tmp_path / "metrics.csv").stat().st_mode & 0o777 == 0o666 & ~files._UMASK


def _interrupt(args: list[str], ready, signum: int) -> str:
    """Start train_vae.py, send `signum` once `ready(line)` holds for a line it printed (re-asked
    each line, so it may wait for a file too), and return its stderr after checking the exit code."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "train_vae.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for line in process.stdout:
        if ready(line):
            break
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert f"stopped by {signal.Signals(signum).name}" in stderr and "Traceback" not in stderr
    return stderr


@pytest.mark.slow
def test_sigint_during_training_saves_a_checkpoint_and_exits_130(capsys, tmp_path) -> None:
    stderr = _interrupt([*SLOW, "--epochs", "30", "--out_dir", str(tmp_path)],
                        lambda line: line.startswith("training on"), signal.SIGINT)
    assert "run the same command with --resume" in stderr
    progress = load_checkpoint(tmp_path / "last.pt")["progress"]
    result = run_main(capsys, train_vae.main, *SLOW, "--epochs", str(progress["epoch"]), "--resume",
                      "--out_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"resuming at epoch {progress['epoch']}, batch {progress['batch']}" in result.stdout


@pytest.mark.slow
def test_sigterm_during_collection_saves_the_frames_so_far_and_exits_143(tmp_path) -> None:
    args = [*SLOW, "--n_frames", "8000", "--shard_frames", "500", "--n_envs", "1", "--out_dir", str(tmp_path)]
    cfg = train_config(n_frames=8000, shard_frames=500, img_size=32, latent_dim=4, batch_size=16)
    frame_store = dataset.open_store(cfg, tmp_path)

    def a_shard_is_in(_line: str) -> bool:  # the state the test claims: a finished shard, in the manifest
        return frame_store.folder.is_dir() and len(frame_store.intact({i: 500 for i in range(16)})) > 0

    stderr = _interrupt(args, lambda line: line.startswith("collecting") and _wait_for(a_shard_is_in),
                        signal.SIGTERM)
    assert "run the same command again to continue" in stderr
    kept = len(frame_store.intact({index: 500 for index in range(16)}))
    assert 0 < kept < 16, "some shards, not all, were kept"
    assert f"keeps the {kept * 500} frames of every finished shard" in stderr


def _wait_for(condition, limit: float = 120) -> bool:
    """Poll `condition` until it holds (a state on disk), failing after `limit` seconds of a stalled run."""
    deadline = time.monotonic() + limit
    while not condition(""):
        assert time.monotonic() < deadline, "the state never came"
        time.sleep(0.05)
    return True


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_made_with_other_constants(capsys, tmp_path) -> None:
    assert run_main(capsys, train_vae.main, *TINY, "--epochs", "1", "--out_dir", str(tmp_path)).returncode == 0
    result = run_main(capsys, train_vae.main, *TINY, "--latent_dim", "6", "--img_size", "64", "--resume",
                      "--out_dir", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "IMG_SIZE 32 -> 64" in result.stderr and "LATENT_DIM 4 -> 6" in result.stderr


def test_resume_without_a_last_checkpoint_says_so(capsys, tmp_path) -> None:
    result = run_main(capsys, train_vae.main, *TINY, "--resume", "--out_dir", str(tmp_path))
    assert result.returncode == 1 and "nothing to resume" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "content",
    [b"", np.random.default_rng(0).integers(0, 256, 1024, dtype=np.uint8).tobytes(),
     b"\x80\x02cos\nsystem\n(S'true'\ntR."],
    ids=["empty", "random-bytes", "code-running-pickle"],
)
def test_sampling_refuses_files_that_are_not_checkpoints(capsys, tmp_path, content: bytes) -> None:
    path = tmp_path / "vae.pt"
    path.write_bytes(content)
    result = run_main(capsys, sample_vae.main, "--checkpoint", str(path), "--out_dir", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "is not a readable checkpoint" in result.stderr
    assert not (tmp_path / "samples.png").exists()
