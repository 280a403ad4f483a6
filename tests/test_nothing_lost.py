"""Nothing a user collected is lost: other settings, damaged manifests, refused jobs, kills, odd stores.

Each test fingerprints (names and sha256) what a user made before the fault, and again after.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY, StopAfter, assert_one_line, fingerprint, run_main, tiny, train_config

import compare_vae
import encode_vae
import evaluate_vae
import sample_vae
import train_vae
from tools import bench, make_docs
from worldvae import cli, collection, constants, dataset, distributed, envs, files, policies, readers, resume, store
from worldvae.checkpoints import load_checkpoint
from worldvae.cli import UserError
from worldvae.heldout import heldout_frames

ONE_SHARD = [*TINY, "--n_frames", "250", "--shard_frames", "250", "--epochs", "1", "--replace"]  # models aside


@pytest.fixture(scope="module")
def one_shard_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT_DIR of one finished ONE_SHARD run, trained once for the tests that begin with one."""
    out_dir = tmp_path_factory.mktemp("one_shard_run")
    train_vae.main([*ONE_SHARD, "--out_dir", str(out_dir)])
    return out_dir


def _first_run(one_shard_run: Path, out_dir: Path) -> None:
    """A copy of that run in `out_dir`, as if it had just run there."""
    shutil.copytree(one_shard_run, out_dir, dirs_exist_ok=True)


def _shards(out_dir) -> dict[str, str]:
    return {name: digest for name, digest in fingerprint(out_dir).items() if "/shard_" in name}


def _store_cfg(**overrides):
    return train_config(**({"n_frames": 750, "shard_frames": 250, "img_size": 32} | overrides))


@pytest.mark.parametrize("other", [["--img_size", "64"], ["--seed", "3"], ["--crop", "(0.3, 1.0, 0.0, 1.0)"],
                                   ["--reset_after", "12"],
                                   ["--policy", "balancer", "--n_frames", "1000", "--shard_frames", "1000"]],
                         ids=["img_size", "seed", "crop", "reset_after", "policy"])
def test_another_runs_settings_collect_beside_the_first_dataset_never_over_it(capsys, tmp_path, one_shard_run,
                                                                             other) -> None:
    _first_run(one_shard_run, tmp_path)
    before = _shards(tmp_path)
    result = run_main(capsys, train_vae.main, *ONE_SHARD, *other, "--out_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    after = _shards(tmp_path)
    assert {name: after[name] for name in before} == before, "the first run's shards are untouched"
    assert len(after) > len(before), "the second run's frames went into a store of their own"
    stores = sorted(tmp_path.glob("frames_CartPole-v1_*"))
    assert len(stores) == 2 and all(json.loads((s / "settings.json").read_text()) for s in stores)


def test_the_store_is_named_for_the_code_that_drew_its_frames(monkeypatch) -> None:
    """The policy, its parameters, the renderer and the collector's version are in the digest: a store
    made by other code is kept, and never reused."""
    base = dataset.dataset_dir("out", train_config())
    for change in ({"policy": "balancer"}, {"fast_render": False}):
        assert dataset.dataset_dir("out", train_config(**change)) != base, change
    car = train_config(env_id="CarRacing-v3")
    assert dataset.dataset_dir("out", car) != dataset.dataset_dir("out", train_config(env_id="CarRacing-v3",
                                                                                      fast_render=False))
    pendulum = train_config(env_id="Pendulum-v1")
    assert dataset.dataset_dir("out", pendulum) == dataset.dataset_dir("out", train_config(env_id="Pendulum-v1",
                                                                                           fast_render=False)), \
        "FAST_RENDER draws nothing else where it does not apply"
    monkeypatch.setattr(dataset, "COLLECTOR_VERSION", dataset.COLLECTOR_VERSION + 1)
    assert dataset.dataset_dir("out", train_config()) != base
    monkeypatch.undo()
    balancer = dataset.dataset_dir("out", train_config(policy="balancer"))
    monkeypatch.setattr(policies.Balancer, "TARGET_RANGE", 1.0)  # the same policy, driving otherwise
    assert dataset.dataset_dir("out", train_config(policy="balancer")) != balancer


@pytest.mark.parametrize("damage", [b"", b"{\"settings\": {", b"\x00junk\xff", b"[]", b"null",
                                    b"{\"settings\": {}, \"shards\": [1, 2]}", None],
                         ids=["empty", "truncated", "junk", "list", "null", "shards-as-list", "deleted"])
def test_a_damaged_manifest_costs_no_shard_that_still_proves_itself(tmp_path, capsys, damage) -> None:
    cfg = _store_cfg()
    frame_store, _ = dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))
    before = _shards(tmp_path)
    manifest = frame_store.folder / "manifest.json"
    if damage is None:
        manifest.unlink()
    else:
        manifest.write_bytes(damage)
    capsys.readouterr()
    dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))
    out = capsys.readouterr().out
    assert "rebuilt it from the shards, 3 of which carry these settings" in out, out
    assert "reusing 750 frames in 3 shards" in out and _shards(tmp_path) == before
    if damage is not None:
        assert (frame_store.folder / "manifest.json.damaged").read_bytes() == damage, "the damaged file is kept"


def test_a_rebuilt_manifest_refuses_a_shard_of_other_settings_and_collects_it_again(tmp_path, capsys) -> None:
    cfg = _store_cfg()
    frame_store, _ = dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))
    foreign, _ = dataset.load_or_collect(_store_cfg(seed=5), tmp_path, StopAfter(10**9))
    (frame_store.folder / "manifest.json").write_text("garbage")
    frame_store.path(1).write_bytes(foreign.path(1).read_bytes())  # valid, but another seed's frames
    capsys.readouterr()
    with pytest.raises(UserError, match="shard_00001.npz is in the way of shard 1 and is none of this store's"):
        dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))  # a file none of ours vouches for: the user's
    out = capsys.readouterr().out
    assert "2 of which carry these settings" in out and "prove nothing" in out and "shard_00001.npz" in out
    assert frame_store.path(1).read_bytes() == foreign.path(1).read_bytes(), "the file in the way is untouched"
    frame_store.path(1).unlink()  # moved away, as the line asks: then it is collected again
    dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))
    assert "collecting 250 frames" in capsys.readouterr().out


def test_a_filter_that_drops_frames_leaves_only_real_transitions_and_marks_every_gap() -> None:
    narrow = train_config(n_frames=300, img_size=32, angle_range=(-0.03, 0.03), n_envs=1)
    data, stats = collection.collect_frames(narrow)
    assert stats.rejected_angle > 0
    successor = (data["episode"][1:] == data["episode"][:-1]) & (data["step"][1:] == data["step"][:-1] + 1)
    recorded = ~np.isnan(data["action"][:-1, 0])
    assert (successor[recorded]).all(), "an action is recorded only where the next stored frame is its outcome"
    assert (data["done"][:-1] == ~successor).all(), "done marks exactly the frames whose successor is not stored"
    assert data["done"][-1] and np.isnan(data["action"][data["done"]]).all()
    assert (~successor & (data["episode"][1:] == data["episode"][:-1])).any(), "gaps inside episodes were tested"


def test_a_stop_under_two_processes_keeps_each_ones_loss_sums_and_each_resumes_its_own(tmp_path,
                                                                                        monkeypatch) -> None:
    """last.pt holds every process's own sums, so after a resume each logs what it would have logged."""
    from MyVAE import MyVAE
    from worldvae.compute import Compute

    cfg, data = tiny(tmp_path, epochs=1)
    other = {"torch": torch.Generator().manual_seed(1).get_state(), "loss_sums": [9.0, 8.0, 7.0]}
    monkeypatch.setattr(distributed, "gather_to_all", lambda mine: [mine, other])  # as rank 0 of two would gather
    cpu = Compute.choose("cpu", "fp32", False, "off")
    with pytest.raises(cli.Stopped):
        train_vae.train(cfg, data, tmp_path, cpu, StopAfter(2))
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    mine = checkpoint["rng"]["per_rank"][0]["loss_sums"]
    assert checkpoint["progress"]["batch"] == 3 and mine[0] > 0
    assert mine == list(checkpoint["progress"]["loss_sums"].values()), "rank 0's own, as one process would have them"
    model = MyVAE(latent_dim=4, img_size=32, hidden_dims=(8, 16, 16, 32, 32))
    optimizer = torch.optim.Adam(model.parameters())
    on_zero, on_one = (resume.restore_training_state(checkpoint, model, optimizer, cpu,
                                                        distributed.Ranks(rank, 2, launched=True)) for rank in (0, 1))
    assert list(on_zero.loss_sums.values()) == mine and list(on_one.loss_sums.values()) == [9.0, 8.0, 7.0]
    progress = {("totals" if key == "loss_sums" else key): v for key, v in checkpoint["progress"].items()}
    per_rank = [{"torch": r["torch"], "totals": r["loss_sums"]} for r in checkpoint["rng"]["per_rank"]]
    older = checkpoint | {"progress": progress, "rng": {"per_rank": per_rank}}  # as last.pt was written before
    restored = resume.restore_training_state(older, model, optimizer, cpu, distributed.Ranks(1, 2, launched=True))
    assert list(restored.loss_sums.values()) == [9.0, 8.0, 7.0], "an older last.pt still resumes"


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        (train_vae, ["--img_size", str(2**40)], "IMG_SIZE=1099511627776 is above 1,024"),
        (train_vae, ["--n_frames", str(10**15)], "N_FRAMES=1000000000000000 is above"),
        (train_vae, ["--latent_dim", str(10**9)], "LATENT_DIM=1000000000 is above 4,096"),
        (train_vae, ["--hidden_dims", "(8, 16, 10000000000)"], "HIDDEN_DIMS must be a tuple of channel counts"),
        (train_vae, ["--hidden_dims", "wide"], "HIDDEN_DIMS must be a tuple of channel counts"),
        (train_vae, ["--shard_frames", str(250 * 10**7)], "lower SHARD_FRAMES"),
        (train_vae, ["--lr", "1e999"], "--lr expects finite numbers"),
        (train_vae, ["--epochs", str(10**9)], "EPOCHS=1000000000 is above"),
        (train_vae, ["--n_frames", str(10**8), "--in_ram_mb", "1e8"], "lower IN_RAM_MB"),
        (sample_vae, ["--n_samples", str(10**9)], "N_SAMPLES=1000000000 is above 10,000"),
        (evaluate_vae, ["--fresh", str(10**9)], "FRESH=1000000000 is above 50,000"),
        (evaluate_vae, ["--quality_samples", str(10**9)], "QUALITY_SAMPLES=1000000000 is above"),
        (bench, ["--heldout_frames", str(10**9)], "HELDOUT_FRAMES=1000000000 is above"),
        (train_vae, ["--in_ram_mb", "1e999"], "--in_ram_mb expects finite numbers"),
        (train_vae, ["--in_ram_mb", str(10**400)], "--in_ram_mb expects finite numbers"),  # no float holds it
        (train_vae, ["--shard_frames", str(250 * 10**300)], "SHARD_FRAMES=2500"),
        (train_vae, ["--n_envs", "-1"], "N_ENVS must be 0"),
        (compare_vae, ["--kl_weights", "(1e999,)"], "--kl_weights expects finite numbers"),
        (compare_vae, ["--n_frames", "-5"], "N_FRAMES must be at least 1"),
        (bench, ["--memory_frames", "(1000000000000,)"], "MEMORY_FRAMES must be a tuple of frame counts"),
        (bench, ["--quality_budgets", "(-1,)"], "QUALITY_BUDGETS must be shares"),
        (make_docs, ["--fresh", "-1"], "FRESH must lie in 50 .. 50000"),
    ],
)
def test_every_size_constant_is_refused_past_its_edge_in_one_line_before_work(capsys, tmp_path, script, args,
                                                                              message) -> None:
    result = run_main(capsys, script.main, *args, "--out_dir", str(tmp_path))
    assert_one_line(result, message)
    assert "collecting" not in result.stdout and not list(tmp_path.glob("frames_*"))


def test_a_run_refused_for_disk_space_writes_nothing(capsys, tmp_path, monkeypatch, one_shard_run) -> None:
    _first_run(one_shard_run, tmp_path)
    before = fingerprint(tmp_path)
    monkeypatch.setattr(dataset.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 1000})())
    assert_one_line(run_main(capsys, train_vae.main, *ONE_SHARD, "--seed", "4", "--out_dir", str(tmp_path)),
              "GiB on disk")
    assert fingerprint(tmp_path) == before and len(list(tmp_path.glob("frames_*"))) == 1, "config.json kept too"


def test_a_run_whose_validation_loss_is_not_finite_does_not_end_done(capsys, tmp_path, monkeypatch) -> None:
    real = train_vae.validation_loss
    monkeypatch.setattr(train_vae, "validation_loss", lambda *a, **k: real(*a, **k) | {"loss": float("inf")})
    result = run_main(capsys, train_vae.main, *ONE_SHARD, "--out_dir", str(tmp_path))
    assert_one_line(result, "training diverged: the validation loss is inf after epoch 1")
    assert "done in" not in result.stdout and "next:" not in result.stdout and not (tmp_path / "vae.pt").exists()


# ---------------------------------------------------------------- kill -9 mid-write

_KILL_DURING = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from worldvae import cli
import train_vae

real_fsync = os.fsync

def fsync_then_die(fd):
    real_fsync(fd)
    if {marker!r} in os.readlink(f"/proc/self/fd/{{fd}}"):  # the temporary file of that write, complete
        os.kill(os.getpid(), signal.SIGKILL)                  # kill -9: nothing runs after this

os.fsync = fsync_then_die
cli.run(train_vae.main, sys.argv[1:])
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="finds the file being written through /proc")
@pytest.mark.parametrize("marker", [".last.pt.", ".shard_00001.npz."], ids=["last.pt", "a shard"])
def test_kill_9_mid_write_leaves_litter_that_the_next_run_removes(capsys, tmp_path, marker) -> None:
    args = [*TINY, "--n_frames", "500", "--shard_frames", "250", "--epochs", "1", "--n_envs", "1",
            "--out_dir", str(tmp_path)]
    killed = subprocess.run([sys.executable, "-c", _KILL_DURING.format(repo=str(REPO), marker=marker), *args],
                            capture_output=True, text=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    litter = [p for p in tmp_path.rglob(".*.tmp")]
    assert len(litter) == 1 and marker in litter[0].name, "the half-done write is where the kill left it"
    before = _shards(tmp_path)
    result = run_main(capsys, train_vae.main, *args, "--replace")  # the killed run's model is replaced, as asked
    assert result.returncode == 0, result.stderr
    assert "removed 1 half-written files that a killed run left" in result.stdout
    assert not list(tmp_path.rglob(".*.tmp"))
    assert {name: _shards(tmp_path)[name] for name in before} == before, "every finished shard was reused"


def test_a_live_writers_temporary_file_is_never_removed(tmp_path) -> None:
    mine = tmp_path / f".vae.pt.{files._HOST}-{os.getpid()}.abc123.tmp"
    mine.write_bytes(b"being written")
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".vae.pt.{files._HOST}-{int(done.stdout)}.xyz789.tmp"
    dead.write_bytes(b"left by a killed run")
    elsewhere = tmp_path / f".vae.pt.another_machine-{int(done.stdout)}.def456.tmp"  # an OUT_DIR shared by machines
    elsewhere.write_bytes(b"being written on another machine, whose PIDs mean nothing here")
    assert files.remove_litter(tmp_path) == [dead.name] and mine.exists() and not dead.exists()
    assert elsewhere.exists(), "another machine's file is never judged by this machine's PIDs"


# ---------------------------------------------------------------- damaged or unusual stores


def test_a_folder_where_the_lock_file_belongs_is_one_line(capsys, tmp_path) -> None:
    (tmp_path / ".lock").mkdir()
    assert_one_line(run_main(capsys, train_vae.main, *ONE_SHARD, "--out_dir", str(tmp_path)), "lock file")


def test_a_file_where_the_store_folder_belongs_is_one_line_and_stays(capsys, tmp_path) -> None:
    cfg = envs.resolve_env_defaults(constants.parse_config("train_vae", [*ONE_SHARD, "--out_dir", str(tmp_path)]))
    blocker = dataset.dataset_dir(tmp_path, cfg)
    blocker.write_text("a user's file")
    assert_one_line(run_main(capsys, train_vae.main, *ONE_SHARD, "--out_dir", str(tmp_path)), "is not a folder")
    assert blocker.read_text() == "a user's file"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_a_fifo_in_a_shards_place_is_named_and_never_read(tmp_path, capsys) -> None:
    cfg = _store_cfg()
    frame_store, _ = dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))
    frame_store.path(2).unlink()
    os.mkfifo(frame_store.path(2))  # reading it would wait forever
    with pytest.raises(cli.UserError, match="shard_00002.npz is not a regular file"):
        dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))
    assert frame_store.path(2).exists(), "left where it is"
    cfg.out_dir = str(tmp_path)
    assert dataset.complete_store(cfg)[0] is None, "a reader names it incomplete, without reading the FIFO"


def test_a_shard_swapped_for_another_image_size_during_training_is_one_line(tmp_path) -> None:
    cfg = _store_cfg()
    frame_store, shards = dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))
    streamed = readers.Streamed(frame_store, shards, 0.1, 0)
    other, _ = dataset.load_or_collect(_store_cfg(img_size=64), tmp_path, StopAfter(10**9))
    frame_store.path(1).write_bytes(other.path(1).read_bytes())
    with pytest.raises(cli.UserError, match=r"shard_00001.npz holds frames of shape \(3, 64, 64\)"):
        list(streamed.batches(8, torch.Generator()))


@pytest.mark.slow
def test_readers_of_a_store_never_write_to_it(capsys, tmp_path, monkeypatch, one_shard_run) -> None:
    _first_run(one_shard_run, tmp_path)
    before = fingerprint(next(tmp_path.glob("frames_*")))

    def no_writes(*_args, **_kwargs):
        raise AssertionError("a reader wrote to the store")

    for name in ("prepare", "write", "missing", "_locked"):
        monkeypatch.setattr(store.Store, name, no_writes)
    assert run_main(capsys, encode_vae.main, "--checkpoint", str(tmp_path / "vae.pt")).returncode == 0
    assert run_main(capsys, evaluate_vae.main, "--checkpoint", str(tmp_path / "vae.pt"),
                    "--quality_samples", "8", "--control_episodes", "0").returncode == 0
    assert fingerprint(next(tmp_path.glob("frames_*"))) == before
    assert (tmp_path / "codes.npz").is_file() and (tmp_path / "eval" / "metrics.json").is_file(), \
        "without --out_dir, what a checkpoint's readers write goes beside the checkpoint"


def test_shards_too_small_for_an_episode_name_shard_frames(tmp_path) -> None:
    cfg = train_config(n_frames=500, shard_frames=250, img_size=32, reset_after=260, angle_range="all",
                       out_dir=str(tmp_path), n_envs=1, latent_dim=4, batch_size=8, hidden_dims=(8, 16, 16, 32, 32))
    frame_store = store.Store(tmp_path / "one_episode_each", {"img_size": 32})
    frame_store.prepare()
    for index in range(2):  # one long episode per shard, as CarRacing's 250 kept frames are
        frame_store.write(index, {"frames": np.zeros((250, 3, 32, 32), np.uint8),
                                  "states": np.zeros((250, 0), np.float32), "episode": np.full(250, index, np.int32),
                                  "step": np.arange(250, dtype=np.int32), "action": np.zeros((250, 1), np.float32),
                                  "reward": np.zeros(250, np.float32), "done": np.arange(250) == 249})
    source = readers.open_frames(frame_store, [0], 0.1, 0, 2**30)  # shard 0 gives its one episode to validation
    from worldvae.compute import Compute

    with pytest.raises(cli.UserError, match="raise SHARD_FRAMES"):
        train_vae.train(cfg, source, tmp_path, Compute.choose("cpu", "fp32", False, "off"), StopAfter(10**9))


# ---------------------------------------------------------------- processes started by hand


@pytest.mark.parametrize(("env", "message"), [
    ({"RANK": "zero", "WORLD_SIZE": "2"}, "RANK='zero': torchrun sets RANK and WORLD_SIZE to whole numbers"),
    ({"RANK": "3", "WORLD_SIZE": "2", "MASTER_ADDR": "localhost", "MASTER_PORT": "1"}, "RANK=3 lies outside"),
    ({"RANK": "0", "WORLD_SIZE": "2"}, "MASTER_ADDR and MASTER_PORT not set"),
    ({"WORLD_SIZE": "2"}, "RANK=None"),
])
def test_rank_variables_set_by_hand_are_checked_in_one_line(capsys, tmp_path, monkeypatch, env, message) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert_one_line(run_main(capsys, train_vae.main, *ONE_SHARD, "--out_dir", str(tmp_path)), message)


@pytest.mark.slow
def test_a_process_whose_peers_never_come_says_whom_it_waits_for_and_gives_up(tmp_path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "VAE_PEER_TIMEOUT": "1"}
    result = subprocess.run([sys.executable, str(REPO / "train_vae.py"), *TINY, "--n_frames", "500",
                             "--shard_frames", "250", "--out_dir", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert f"waiting for the 2 processes of this job at 127.0.0.1:{port} (at most 1 s)" in result.stdout
    assert_one_line(result, "process 0 of 2 could not join the others")


# ---------------------------------------------------------------- part four: no model replaced, no refusal late


def test_a_second_run_never_replaces_a_trained_model_unless_asked(capsys, tmp_path, tiny_run) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = fingerprint(run)
    result = run_main(capsys, train_vae.main, *TINY, "--variational", "False", "--out_dir", str(run))
    assert_one_line(result, "holds an earlier run (vae.pt and last.pt): give another --out_dir to keep both")
    assert "--replace" in result.stderr and fingerprint(run) == before, "refused before it wrote anything"
    assert run_main(capsys, train_vae.main, *TINY, "--variational", "False", "--replace",
                    "--out_dir", str(run)).returncode == 0, "asked for, it replaces"
    assert load_checkpoint(run / "vae.pt")["model_args"]["variational"] is False


def test_a_symlink_where_the_lock_belongs_is_never_followed(capsys, tmp_path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("a user's file")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").symlink_to(precious)
    assert_one_line(run_main(capsys, train_vae.main, *TINY, "--out_dir", str(tmp_path / "run")),
                    "is a symbolic link where a lock file belongs")
    assert precious.read_text() == "a user's file"


@pytest.mark.parametrize("option", [["--out_dir", ""], ["--out_dir", "None"]], ids=["empty", "None"])
def test_an_out_dir_that_names_no_folder_is_refused(capsys, tmp_path, monkeypatch, option) -> None:
    monkeypatch.chdir(tmp_path)
    assert_one_line(run_main(capsys, train_vae.main, *TINY, *option), "--out_dir expects a non-empty string")
    assert not list(tmp_path.iterdir()), "nothing written to the current folder"


def test_a_constant_whose_comment_documents_none_takes_it_from_the_command_line() -> None:
    assert constants.parse_config("train_vae", ["--threads", "None"]).threads is None
    with pytest.raises(UserError, match="--seed expects an integer"):
        constants.parse_config("train_vae", ["--seed", "None"])


def test_a_refused_reader_writes_nothing_and_an_edited_config_is_one_line(capsys, tmp_path, tiny_run) -> None:
    (tmp_path / "vae.pt").write_bytes((tiny_run / "vae.pt").read_bytes()[:1000])  # truncated
    assert_one_line(run_main(capsys, evaluate_vae.main, "--checkpoint", str(tmp_path / "vae.pt")),
                    "is not a readable checkpoint")
    assert not (tmp_path / "eval").exists(), "no empty eval/ beside it"
    checkpoint = load_checkpoint(tiny_run / "vae.pt")
    checkpoint["config"]["img_size"] = 64  # the model is 32 px
    torch.save(checkpoint, tmp_path / "edited.pt")
    assert_one_line(run_main(capsys, evaluate_vae.main, "--checkpoint", str(tmp_path / "edited.pt")),
                    "its config does not describe its model (IMG_SIZE 64 against the model's 32)")


def test_readers_look_for_the_store_beside_the_checkpoint_first(capsys, tmp_path, tiny_run) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(tiny_run, moved)  # its recorded OUT_DIR still names the original
    config = load_checkpoint(moved / "vae.pt")["config"] | {"out_dir": str(tmp_path / "gone")}
    held = heldout_frames(config, beside=moved)
    assert str(moved) in held.description and "validation frames" in held.description, held.description
    few = heldout_frames(config, beside=moved, fit=False, limit=10)
    assert few.fit is None and len(few.test["frames"]) <= 10, "a reader that draws 10 frames reads no more"


def test_metrics_json_is_valid_json_when_a_mean_is_over_nothing(tmp_path) -> None:
    text = json.dumps(files.json_safe({"road_iou": float("nan"), "kl": [1.0, float("inf")]}), allow_nan=False)
    assert json.loads(text) == {"road_iou": None, "kl": [1.0, None]}


def test_a_failed_first_write_says_nothing_was_written_not_that_a_previous_file_is_intact(tmp_path) -> None:
    def full_disk(_file):
        raise OSError(28, "No space left on device")

    with pytest.raises(UserError, match="No space left on device\\); nothing was written$"):
        files.atomic_write(tmp_path / "new.json", full_disk)
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(UserError, match="the previous file is intact$"):
        files.atomic_write(tmp_path / "old.json", full_disk)


def test_a_stray_shard_name_and_a_damaged_manifest_cost_nothing_that_the_rebuild_keeps(tmp_path, monkeypatch) -> None:
    cfg = _store_cfg()
    frame_store, _ = dataset.load_or_collect(cfg, tmp_path, StopAfter(10**9))
    (frame_store.folder / "shard_foo.npz").write_bytes(b"a user's file, named like a shard")
    (frame_store.folder / "manifest.json").write_text("garbage")
    monkeypatch.setattr(dataset.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 1000})())
    plan = dataset.plan_collection(cfg, tmp_path)  # every shard proves itself: no room is needed, none refused
    assert plan.todo == [] and (frame_store.folder / "shard_foo.npz").read_bytes().startswith(b"a user's")
