"""Hostile inputs and faults: each family is refused in one line before work starts, or survived without loss."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, TINY, assert_one_line, run_main

import compare_vae
import evaluate_vae
import sample_vae
import train_vae
from MyVAE import MyVAE
from tools import bench
from worldvae import cli, constants, dataset, envs, files
from worldvae.checkpoints import save_checkpoint


@pytest.mark.parametrize("seed", ["-1", str(2**64 + 5)])
@pytest.mark.parametrize("script", [train_vae, sample_vae, evaluate_vae, compare_vae, bench])
def test_seeds_no_generator_can_take_are_refused_by_every_script(capsys, tmp_path, script, seed: str) -> None:
    assert_one_line(run_main(capsys, script.main, "--seed", seed, "--out_dir", str(tmp_path)), "SEED must lie in")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env_id", "FrozenLake-v1", "--angle_range", "None"], "neither a vector of numbers"),
        (["--crop", "(0.5, 0.5001, 0.0, 1.0)"], "keeps no whole pixel row or column"),
        (["--shard_frames", "300"], "SHARD_FRAMES must be a multiple of 250"),
        (["--n_frames", "600", "--shard_frames", "250"], "fewer than the 4 processes"),
        (["--device", "meta"], "DEVICE must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
        (["--device", "cuda:7"], "is not available here"),
        (["--lr", "1e30"], "LR must lie in 1e-09 .. 10"),
    ],
)
def test_values_that_cannot_work_are_one_line(capsys, tmp_path, monkeypatch, args: list[str], message: str) -> None:
    if "fewer than the 4 processes" in message:  # as torchrun --nproc_per_node=4 would start it
        for name, value in {"RANK": "0", "WORLD_SIZE": "4", "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"}.items():
            monkeypatch.setenv(name, value)
    if args[:2] == ["--device", "cuda:7"] and __import__("torch").cuda.device_count() > 7:
        pytest.skip("this machine has an eighth GPU")
    assert_one_line(run_main(capsys, train_vae.main, *TINY, *args, "--out_dir", str(tmp_path)), message)


def test_a_dataset_too_big_for_the_free_disk_is_refused_before_collecting(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(dataset.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 1000})())
    result = run_main(capsys, train_vae.main, *TINY, "--out_dir", str(tmp_path))
    assert_one_line(result, "96 frames to collect, written in shards of SHARD_FRAMES=4000, need about")
    assert "collecting" not in result.stdout


@pytest.mark.slow
def test_a_second_run_in_the_same_out_dir_names_the_first(capsys, tmp_path) -> None:
    with files.lock_out_dir(tmp_path):
        assert_one_line(run_main(capsys, train_vae.main, *TINY, "--out_dir", str(tmp_path)),
                  f"is in use by PID {os.getpid()}")
    assert run_main(capsys, train_vae.main, *TINY, "--epochs", "1", "--out_dir", str(tmp_path)).returncode == 0


def test_fresh_too_small_to_score_is_refused(capsys, tmp_path) -> None:
    assert_one_line(run_main(capsys, evaluate_vae.main, "--fresh", "10", "--out_dir", str(tmp_path)),
              "FRESH must be 0 or at least 50")


def test_a_folder_where_a_shard_goes_is_one_line(capsys, tmp_path) -> None:
    cfg = envs.resolve_env_defaults(constants.parse_config("train_vae", [*TINY, "--out_dir", str(tmp_path)]))
    (dataset.dataset_dir(tmp_path, cfg) / "shard_00000.npz").mkdir(parents=True)
    assert_one_line(run_main(capsys, train_vae.main, *TINY, "--out_dir", str(tmp_path)), "is not a regular file")


@pytest.mark.slow
def test_resume_takes_speed_knobs_and_says_when_a_run_is_finished(capsys, tmp_path) -> None:
    assert run_main(capsys, train_vae.main, *TINY, "--epochs", "1", "--out_dir", str(tmp_path)).returncode == 0
    assert_one_line(run_main(capsys, train_vae.main, *TINY, "--resume", "--fast_render", "False", "--out_dir",
                             str(tmp_path)), "FAST_RENDER True -> False")  # it draws other frames: another store
    result = run_main(capsys, train_vae.main, *TINY, "--resume", "--n_envs", "1", "--threads", "2",
                      "--out_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert_one_line(run_main(capsys, train_vae.main, *TINY, "--resume", "--out_dir", str(tmp_path)),
              "has finished 2 of EPOCHS=2: nothing to resume")


def test_evaluate_says_truthfully_what_it_scored_when_the_dataset_is_gone(tmp_path, tiny_run) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("vae.pt",):
        (run / name).write_bytes((tiny_run / name).read_bytes())
    checkpoint = __import__("worldvae.checkpoints", fromlist=["checkpoints"]).load_checkpoint(run / "vae.pt")
    checkpoint["config"]["out_dir"] = str(run)  # this copy has no dataset beside it
    __import__("torch").save(checkpoint, run / "vae.pt")
    metrics = evaluate_vae.evaluate(run / "vae.pt", tmp_path, plausibility_frames=200)
    assert "dataset is gone" in metrics["data"] and "validation" not in metrics["data"]


def test_compare_never_suggests_a_flag_it_rejects(capsys, tmp_path, monkeypatch) -> None:
    def stopped(argv, check_only=False):
        if check_only:
            return
        raise cli.Stopped("stopped by SIGINT ...; to continue, run the same command with --resume", signal.SIGINT)

    monkeypatch.setattr(train_vae, "main", stopped)
    result = run_main(capsys, compare_vae.main, "--out_dir", str(tmp_path))
    assert result.returncode == 130 and "--resume" not in result.stderr and "compare_vae.py" in result.stderr


def test_a_bare_checkpoint_cannot_be_evaluated_and_says_which_part_is_missing(capsys, tmp_path) -> None:
    save_checkpoint(tmp_path / "bare.pt", MyVAE(img_size=32, latent_dim=4))
    assert_one_line(run_main(capsys, evaluate_vae.main, "--checkpoint", str(tmp_path / "bare.pt"), "--out_dir",
                       str(tmp_path)), "has no `config`")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_workers_exit_by_themselves_when_the_trainer_is_killed(tmp_path) -> None:
    process = subprocess.Popen(
        [sys.executable, str(REPO / "train_vae.py"), "--n_frames", "200000", "--n_envs", "2", "--img_size", "32",
         "--out_dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if line.startswith("collecting"):
            break
    deadline = time.time() + 30
    while len(workers := _children(process.pid)) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert len(workers) >= 2, "the collection workers did not start"
    process.kill()  # kill -9: no handler runs, nothing tells the workers
    process.wait()
    deadline = time.time() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists() and "Z" not in
             Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "orphaned workers kept running"


@pytest.mark.slow
def test_a_file_size_limit_is_one_line_and_leaves_no_temporary_files(tmp_path) -> None:
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    result = subprocess.run([sys.executable, str(REPO / "train_vae.py"), *TINY, "--out_dir", str(tmp_path)],
                            capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert_one_line(result, "cannot write")
    assert "File too large" in result.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


class _Wrote(Exception):
    """A script reached its first write: every check before it had passed."""


def _numeric_knobs() -> list[tuple[object, str, object]]:
    """(script, NAME, default) of every constant that takes a number or numbers, in every script and tool."""
    import encode_vae
    from examples import ppo_on_codes
    from tools import activities, bench_ppo, first_hour, homework, make_docs

    scripts = (train_vae, sample_vae, evaluate_vae, encode_vae, compare_vae, bench, first_hour, homework, make_docs,
               activities, ppo_on_codes, bench_ppo)
    return [(script, name, knob.value) for script in scripts for name, knob in constants.knobs(script).items()
            if not isinstance(knob.value, (bool, str)) and name not in ("OUT_DIR", "OUT", "POLICY")]


def _bad_values(default: object) -> dict[str, str]:
    """The value a careless user gives, huge, tiny, negative, NaN and infinite, written for `default`'s shape."""
    values = {"huge": "1e308", "tiny": "1e-308", "negative": "-1", "nan": "nan", "infinite": "inf"}
    if isinstance(default, int):
        values["huge"] = str(10**30)
    if isinstance(default, tuple):
        return {kind: f"({', '.join([value] * len(default))})" for kind, value in values.items()}
    return values


@pytest.mark.parametrize(("script", "name", "default"), _numeric_knobs(),
                         ids=lambda v: v.__name__ if hasattr(v, "__name__") else str(v)[:12])
def test_every_number_a_user_can_give_is_checked_before_anything_is_written(capsys, tmp_path, monkeypatch, tiny_run,
                                                                            script, name, default) -> None:
    """Huge, negative, NaN and infinite values of every numeric constant are one clear line and a non-zero exit,
    before the script's first write (a tiny one may also pass as valid); OUT_DIR is left as it was."""
    def wrote(*_args, **_kwargs):
        raise _Wrote

    for writer in ("prepare_out_dir", "atomic_write", "lock_out_dir"):
        monkeypatch.setattr(files, writer, wrote)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "mine.txt").write_text("a user's file")
    needs = ["--checkpoint", str(tiny_run / "vae.pt")] if "CHECKPOINT" in constants.knobs(script) else []
    knobs = constants.knobs(script)
    where = next((["--" + name.lower(), str(out_dir / leaf)] for name, leaf in
                  (("OUT_DIR", ""), ("OUT", "codes.npz"), ("REPORT", "report.json")) if name in knobs), [])
    for kind, value in _bad_values(default).items():
        try:
            result = run_main(capsys, script.main, *needs, *where, f"--{name.lower()}", value)
        except _Wrote:
            assert kind == "tiny", f"{name}={value} ({kind}) reached a write"
            continue
        assert result.returncode not in (0, None), f"{name}={value} ({kind}) passed"
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert name in result.stderr or f"--{name.lower()}" in result.stderr, result.stderr
    assert [p.name for p in out_dir.iterdir()] == ["mine.txt"]
