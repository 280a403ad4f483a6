"""train_vae.py and sample_vae.py end to end, as a user runs them."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TINY, assert_grid, assert_one_line, run_main, run_script, train_config
from PIL import Image

import encode_vae
import evaluate_vae
import sample_vae
import train_vae
from MyVAE import MyVAE
from worldvae import envs
from worldvae.checkpoints import load_checkpoint, save_checkpoint


def _png(path) -> np.ndarray:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.slow
def test_training_writes_every_promised_output(tiny_run) -> None:
    store_dir = next(tiny_run.glob("frames_CartPole-v1_*"))  # named for the env and a digest of the settings
    for name in ("vae.pt", "metrics.csv", "loss_curves.png", "reconstructions.png", "config.json",
                 f"{store_dir.name}/manifest.json", f"{store_dir.name}/settings.json",
                 f"{store_dir.name}/shard_00000.npz"):
        assert (tiny_run / name).is_file(), name
    with open(tiny_run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert {"train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl"} <= set(rows[0])
    assert all(float(row["val_recon"]) > 0 for row in rows)
    assert_grid(tiny_run / "reconstructions.png", 2, 8, 32)  # 8 held-out frames above their reconstructions
    checkpoint = load_checkpoint(tiny_run / "vae.pt")
    assert checkpoint["model_args"]["img_size"] == 32 and checkpoint["model_args"]["latent_dim"] == 4
    assert checkpoint["config"]["n_frames"] == 96
    with np.load(store_dir / "shard_00000.npz") as data:
        assert data["frames"].shape == (96, 3, 32, 32) and data["frames"].dtype == np.uint8
        assert data["states"].shape == (96, 4) and data["states"].dtype == np.float32


@pytest.mark.slow
def test_sampling_writes_a_grid_and_one_png_per_sample(capsys, tiny_run, tmp_path) -> None:
    result = run_script("sample_vae.py", "--checkpoint", str(tiny_run / "vae.pt"), "--n_samples", "5",
                        "--out_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    singles = sorted((tmp_path / "samples").glob("sample_*.png"))
    assert len(singles) == 5
    assert all(_png(path).shape == (32, 32, 3) for path in singles)
    assert_grid(tmp_path / "samples.png", 1, 5, 32)
    again, other = tmp_path / "again", tmp_path / "other"  # in this process: what a seed fixes needs no new one
    run_main(capsys, sample_vae.main, "--checkpoint", str(tiny_run / "vae.pt"), "--n_samples", "5",
             "--out_dir", str(again))
    assert np.array_equal(_png(again / "samples.png"), _png(tmp_path / "samples.png")), "same seed, same samples"
    for seed in ("0", "1"):  # N(0, I)'s codes spread far enough for a tiny model's frames to differ
        run_main(capsys, sample_vae.main, "--checkpoint", str(tiny_run / "vae.pt"), "--n_samples", "5", "--seed", seed,
                 "--prior", "normal", "--out_dir", str(other / seed))
    assert not np.array_equal(_png(other / "0" / "samples.png"), _png(other / "1" / "samples.png")), "another seed"


@pytest.mark.slow
def test_same_seed_gives_the_same_losses(tiny_run, tmp_path) -> None:
    result = run_script("train_vae.py", *TINY, "--out_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "metrics.csv").read_text().split("seconds")[1].count(",") > 0
    def losses(path):
        with open(path / "metrics.csv") as f:
            return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in csv.DictReader(f)]
    assert losses(tmp_path) == losses(tiny_run)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env_id", "CartPol-v1"], "did you mean CartPole-v1"),
        (["--angle_range", "(2.0, 3.0)", "--n_frames", "20", "--batch_size", "4", "--max_steps_per_frame", "5",
          "--n_envs", "1"], "kept only 0 of"),
        (["--batch_size", "-3"], "BATCH_SIZE must be an integer of at least 2"),
        (["--epochs", "ten"], "EPOCHS must be an integer of at least 1, or None (the env's), got 'ten'"),
        (["--bogus", "1"], "unrecognized arguments: --bogus"),
        (["--n_frame", "100"], "unrecognized arguments: --n_frame"),
        (["--hidden_dims", "(8, 16, 16, 32, 32, 64)", "--img_size", "32"], "HIDDEN_DIMS must be"),
        (["--warmup", "1.5"], "WARMUP must lie in"),
    ],
)
def test_training_bad_inputs_fail_with_one_clear_line(capsys, tmp_path, args: list[str], message: str) -> None:
    assert_one_line(run_main(capsys, train_vae.main, *args, "--out_dir", str(tmp_path)), message)


def test_out_dir_that_cannot_be_written_fails_before_work(capsys, tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert_one_line(run_main(capsys, train_vae.main, "--out_dir", str(blocker / "out")), "cannot be written")


def test_sampling_without_a_checkpoint_says_to_train_first(capsys, tmp_path) -> None:
    result = run_main(capsys, sample_vae.main, "--checkpoint", str(tmp_path / "missing.pt"), "--out_dir", str(tmp_path))
    assert_one_line(result, "train one first with `python train_vae.py`")


def test_sampling_from_a_mismatched_checkpoint_fails_cleanly(capsys, tmp_path) -> None:
    path = tmp_path / "vae.pt"
    save_checkpoint(path, MyVAE(img_size=32, latent_dim=4))
    checkpoint = load_checkpoint(path)
    checkpoint["model_args"]["img_size"] = 64
    torch.save(checkpoint, path)
    result = run_main(capsys, sample_vae.main, "--checkpoint", str(path), "--out_dir", str(tmp_path))
    assert_one_line(result, "does not match")


def test_sampling_zero_images_is_refused(capsys, tiny_run, tmp_path) -> None:
    result = run_main(capsys, sample_vae.main, "--checkpoint", str(tiny_run / "vae.pt"), "--n_samples", "0",
                      "--out_dir", str(tmp_path))
    assert_one_line(result, "N_SAMPLES must be at least 1")


def test_interactive_without_a_display_says_so(capsys, tiny_run) -> None:
    result = run_main(capsys, sample_vae.main, "--checkpoint", str(tiny_run / "vae.pt"), "--interactive")
    assert_one_line(result, "--interactive needs a display")


def test_a_checkpoint_without_its_config_is_named_by_the_scripts_that_need_it(capsys, tmp_path) -> None:
    path = tmp_path / "bare.pt"
    save_checkpoint(path, MyVAE(img_size=32, latent_dim=4))  # weights only: no `config`
    result = run_main(capsys, sample_vae.main, "--checkpoint", str(path), "--out_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr  # random samples need only the weights
    result = run_main(capsys, sample_vae.main, "--checkpoint", str(path), "--traverse", "--out_dir", str(tmp_path))
    assert_one_line(result, "has no `config`")


@pytest.mark.slow
def test_the_next_hint_run_as_printed_overwrites_nothing_and_no_lock_is_left(capsys, tmp_path, monkeypatch) -> None:
    import shlex

    from conftest import fingerprint

    monkeypatch.chdir(tmp_path)  # as a user in a fresh clone: OUT_DIR's default "outputs" is relative
    first = run_main(capsys, train_vae.main, *TINY, "--epochs", "1")
    assert first.returncode == 0 and "next: python sample_vae.py\n" in first.stdout
    assert run_main(capsys, sample_vae.main).returncode == 0, "the default run's own hint"
    before = fingerprint(tmp_path / "outputs")
    second = run_main(capsys, train_vae.main, *TINY, "--epochs", "1", "--out_dir", "outputs/pendulum")
    hint = next(line for line in second.stdout.splitlines() if line.startswith("next: "))
    command = shlex.split(hint.removeprefix("next: "))
    assert command[:2] == ["python", "sample_vae.py"]
    sampled = run_main(capsys, sample_vae.main, *command[2:])
    after = fingerprint(tmp_path / "outputs")
    for script, main in (("evaluate_vae.py", evaluate_vae.main), ("encode_vae.py", encode_vae.main)):  # and on
        command = shlex.split(next(line for line in sampled.stdout.splitlines() if line.startswith("next: "))[6:],
                              comments=True)  # as a shell reads it
        assert command[:2] == ["python", script] and "outputs/pendulum/vae.pt" in command, command
        assert script != "evaluate_vae.py" or command[command.index("--fresh") + 1] == "2000", "the README's table"
        quick = ["--fresh", "100", "--control_episodes", "0"] if script == "evaluate_vae.py" else []  # CI's sizes
        sampled = run_main(capsys, main, *command[2:], *quick)
        assert sampled.returncode == 0, sampled.stderr
    assert {name: after[name] for name in before} == before, "the first run's files are untouched"
    assert "pendulum/samples.png" in after, "the hint's samples went beside its checkpoint"
    assert all(lock.read_text() == "" for lock in tmp_path.rglob(".lock")), "finished runs name no PID"


@pytest.mark.slow
def test_the_env_defaults_are_resolved_once_printed_and_recorded_in_config_json(capsys, tmp_path) -> None:
    result = run_main(capsys, train_vae.main, *TINY, "--out_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    line = "CartPole-v1: RESET_AFTER=20, ANGLE_RANGE=(-0.3, 0.3), CROP=(0.4, 1.0, 0.0, 1.0), POLICY='random'"
    assert line in result.stdout, "the run says what each None took"
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["reset_after"], config["angle_range"], config["crop"], config["policy"]) == (
        20, [-0.3, 0.3], [0.4, 1.0, 0.0, 1.0], "random")
    assert None not in (config[name] for name in envs.ENV_DEFAULTS)


def test_a_run_recorded_before_the_defaults_were_resolved_reads_as_it_ran(tmp_path) -> None:
    """A config with None (and no POLICY) is read with the env's own values: the same store, the same frames."""
    from worldvae import dataset
    from worldvae.checkpoints import run_config

    resolved = train_config(env_id="CartPole-v1", img_size=32, latent_dim=4, hidden_dims=(8, 16, 16, 32, 32))
    old = vars(resolved) | {"reset_after": None, "angle_range": None, "crop": None}
    del old["policy"]
    save_checkpoint(tmp_path / "vae.pt", MyVAE(latent_dim=4, img_size=32, hidden_dims=(8, 16, 16, 32, 32)), config=old)
    read = run_config(load_checkpoint(tmp_path / "vae.pt"), tmp_path / "vae.pt")
    assert (read["reset_after"], read["angle_range"], read["policy"]) == (20, (-0.3, 0.3), "random")
    assert dataset.dataset_dir("out", SimpleNamespace(**read)) == dataset.dataset_dir("out", resolved)
