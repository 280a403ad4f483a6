"""torchrun with two CPU processes (gloo) on a tiny dataset: one model, written once, stopped and resumed together."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY, fingerprint

from worldvae import files
from worldvae.checkpoints import load_checkpoint, same_weights

pytestmark = pytest.mark.slow
FOUR_SHARDS = [*TINY, "--n_frames", "1000", "--shard_frames", "250", "--batch_size", "50"]  # few steps: each is checked


def _torchrun(out_dir: Path, probe: Path, *args: str) -> list[str]:
    probe.mkdir(exist_ok=True)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(REPO / "tests" / "ddp_probe.py"), *FOUR_SHARDS, *args, "--out_dir", str(out_dir)]


def _env(probe: Path) -> dict:
    return {**os.environ, "PROBE_DIR": str(probe), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _our_traceback(stderr: str) -> list[str]:
    """Traceback lines in the repo's own code (torchrun's report of a failed child has its own, in site-packages)."""
    return re.findall(rf'File "{re.escape(str(REPO))}/(?!\.venv/)[^"]*"', stderr)


def _losses(out_dir: Path) -> list[dict]:
    with open(out_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in csv.DictReader(f)]


def _records(probe: Path) -> list[dict]:
    return [json.loads((probe / f"rank_{rank}.json").read_text()) for rank in (0, 1)]


def test_two_processes_train_one_model_write_once_stop_together_and_resume(tmp_path) -> None:
    out, probe = tmp_path / "run", tmp_path / "probe"
    constant = ["--cosine", "False", "--warmup", "0.0"]  # one LR throughout: a resume is exactly a longer run
    run = subprocess.Popen(_torchrun(out, probe, *constant, "--epochs", "40"), env=_env(probe), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (out / "last.pt").exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    run.send_signal(signal.SIGINT)  # what Ctrl-C does: the terminal signals torchrun, which signals each process
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode != 0 and stderr.count("stopped by SIGINT") == 2, stderr[-3000:]
    assert stdout.count("(2 processes, each on its own shards)") == 1, "one log, from rank 0"
    n_train, n_val = map(int, re.search(r"training on (\d+) frames, validating on (\d+)", stdout).groups())
    assert n_train + n_val == 1000, "the counts are summed over both processes' shards"

    zero, one = _records(probe)
    assert zero["checked_steps"] == one["checked_steps"] > 0, "identical weights on both after every step"
    assert zero["checked_buffers"] == one["checked_buffers"] >= zero["checked_steps"], \
        "and identical BatchNorm statistics at every training forward (DDP hands out rank 0's)"
    assert zero["noise_differs"] is one["noise_differs"] is True, "each process draws its own noise"
    shards = [sorted(Path(p).name for p in record["writes"] if "shard_" in p) for record in (zero, one)]
    assert shards == [["shard_00000.npz", "shard_00002.npz"], ["shard_00001.npz", "shard_00003.npz"]]
    assert all(Path(p).parent.name.startswith("frames_CartPole-v1_") for p in one["writes"]), \
        "rank 1 writes only in the store: its shards, the manifest (and settings.json if it came first)"
    assert {"vae.pt", "metrics.csv", "config.json", "reconstructions.png"} <= {Path(p).name for p in zero["writes"]}
    assert zero["writes"][-1].endswith("last.pt"), "rank 0 saved last.pt when it stopped"
    stopped_at = load_checkpoint(out / "last.pt")
    assert 1 <= stopped_at["progress"]["epoch"] - 1 < 40 and stopped_at["config"]["world_size"] == 2
    states = [rank["torch"] for rank in stopped_at["rng"]["per_rank"]]
    assert len(states) == 2 and not torch.equal(*states), "last.pt keeps each process's own random state"

    epoch, batch = stopped_at["progress"]["epoch"], stopped_at["progress"]["batch"]
    result = subprocess.run(_torchrun(out, probe, *constant, "--epochs", str(epoch), "--resume"),  # to its epoch's end
                            env=_env(probe), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming at epoch {epoch}, batch {batch}" in result.stdout
    assert load_checkpoint(out / "last.pt")["progress"]["epoch"] == epoch + 1
    zero, one = _records(probe)
    assert zero["checked_steps"] == one["checked_steps"] > 0 and not any(p.endswith(".pt") for p in one["writes"])
    straight = tmp_path / "straight"  # the same job never stopped: it must log and learn exactly the same
    first_store = next(out.glob("frames_*"))
    shutil.copytree(first_store, straight / first_store.name)  # on the same frames, without collecting them again
    result = subprocess.run(_torchrun(straight, tmp_path / "probe_straight", *constant, "--epochs", str(epoch)),
                            env=_env(tmp_path / "probe_straight"), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _losses(out) == _losses(straight), "after a resume both processes' sums give what a straight run logs"
    assert same_weights(*(load_checkpoint(run / "last.pt")["model"] for run in (out, straight)))


def test_a_second_job_is_refused_on_every_process_before_any_touches_the_store(tmp_path, tiny_run) -> None:
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)  # a first job's model, checkpoints and store
    before = fingerprint(out)
    with files.lock_out_dir(out):  # the first job, still running
        second = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
             str(REPO / "train_vae.py"), *FOUR_SHARDS, "--seed", "9", "--img_size", "64", "--out_dir", str(out),
             "--replace"],  # past the refusal to replace, to the lock
            capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert second.returncode != 0 and second.stderr.count(f"is in use by PID {os.getpid()}") == 2, second.stderr[-2000:]
    assert not _our_traceback(second.stderr), "each process one line; only torchrun's own report follows"
    assert fingerprint(out) == before, "names and sha256 of every file, shards included, unchanged"
    assert len(list(out.glob("frames_*"))) == 1, "no store was made for the refused job's settings"


def test_a_failure_on_rank_0_while_the_others_wait_ends_every_process_in_one_line(tmp_path) -> None:
    out, probe = tmp_path / "run", tmp_path / "probe"
    result = subprocess.run(_torchrun(out, probe, "--resume"), env=_env(probe) | {"PROBE_FAIL_RESUME_ON_RANK_0": "1"},
                            capture_output=True, text=True, timeout=240)
    line = "error: process 0 failed (RuntimeError: injected on rank 0)"
    assert result.returncode != 0 and result.stderr.count(line) == 2, result.stderr[-2000:]
    assert not _our_traceback(result.stderr), "no traceback from any process"
