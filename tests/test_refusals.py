"""Inputs nobody tuned on, refused in one line before any folder is made or any minute is spent: a damaged
checkpoint, the user's own files, paths the system refuses, orchestrators' later steps, input files of the
wrong kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY, assert_one_line, fingerprint, run_main

import compare_vae
import encode_vae
import evaluate_vae
import sample_vae
import train_vae
from tools import activities, homework, make_docs
from worldvae import prior
from worldvae.checkpoints import load_checkpoint, write_checkpoint


def _nan_mean(c):
    c["prior"]["means"][0, 0] = float("nan")


def _upper_factor(c):
    c["prior"]["scale_tril"][0, 0, 1] = 1.0


def _negative_diagonal(c):
    c["prior"]["scale_tril"][0, 0, 0] = -1.0


def _weights_off(c):
    c["prior"]["weights"] *= 3


def _prior_key_missing(c):
    del c["prior"]["means"]


def _prior_of_wider_codes(c):
    c["prior"] = prior.fit_mixture(np.random.default_rng(0).normal(size=(400, 7)), components=2)


def _prior_none(c):
    c["prior"] = None


def _policy_of_another_family(c):
    c["config"]["policy"] = "drivers"


def _crop_of_wrong_form(c):
    c["config"]["crop"] = (0.4, 1.0)


def _config_key_missing(c):
    del c["config"]["seed"]


def _config_value_of_wrong_type(c):
    c["config"]["n_frames"] = "many"


def _model_of_absurd_size(c):
    c["model_args"]["latent_dim"] = 10**9


DAMAGES = {  # what is done to a good checkpoint, and the words its refusal must hold
    _nan_mean: "values that are not finite",
    _upper_factor: "not lower-triangular",
    _negative_diagonal: "positive diagonal",
    _weights_off: "weights are not a distribution",
    _prior_key_missing: "prior is not a mixture",
    _prior_of_wider_codes: "4-dimensional codes",
    _prior_none: "prior is not a mixture",
    _policy_of_another_family: "POLICY='drivers' does not drive CartPole-v1",
    _crop_of_wrong_form: "CROP=(0.4, 1.0)",
    _config_key_missing: "lacks SEED",
    _config_value_of_wrong_type: "N_FRAMES='many'",
    _model_of_absurd_size: "latent_dim 1000000000",
}


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__.strip("_"))
def test_a_damaged_checkpoint_is_refused_as_it_is_read_before_any_folder_is_made(capsys, tmp_path, tiny_run,
                                                                              damage) -> None:
    checkpoint = load_checkpoint(tiny_run / "vae.pt")
    damage(checkpoint)
    write_checkpoint(tmp_path / "vae.pt", checkpoint)
    out = tmp_path / "out"
    for main, argv in ((sample_vae.main, ["--out_dir", str(out)]), (sample_vae.main, ["--prior", "fitted",
                       "--out_dir", str(out)]), (evaluate_vae.main, ["--out_dir", str(out)]),
                       (encode_vae.main, ["--out", str(out / "codes.npz")])):
        result = run_main(capsys, main, "--checkpoint", str(tmp_path / "vae.pt"), *argv)
        assert_one_line(result, DAMAGES[damage])
        assert str(tmp_path / "vae.pt") in result.stderr, "the refusal names the file"
        assert not out.exists(), f"{main.__module__} made its folder before refusing"


def test_a_good_checkpoint_with_its_config_as_a_list_still_works(capsys, tmp_path, tiny_run) -> None:
    """Valid inputs keep working: a crop and an angle range as lists (as JSON would give them) are fine."""
    checkpoint = load_checkpoint(tiny_run / "vae.pt")
    checkpoint["config"] |= {"crop": list(checkpoint["config"]["crop"]), "angle_range": [-0.3, 0.3]}
    write_checkpoint(tmp_path / "vae.pt", checkpoint)
    result = run_main(capsys, sample_vae.main, "--checkpoint", str(tmp_path / "vae.pt"), "--n_samples", "2")
    assert result.returncode == 0, result.stderr


def test_encode_never_writes_its_codes_onto_the_checkpoint_it_reads_or_a_users_file(capsys, tmp_path,
                                                                                   tiny_run) -> None:
    before = fingerprint(tiny_run)
    result = run_main(capsys, encode_vae.main, "--checkpoint", str(tiny_run / "vae.pt"), "--out",
                      str(tiny_run / "vae.pt"))
    assert_one_line(result, "is not a codes file of encode_vae.py")
    (tmp_path / "notes.npz").write_text("a user's notes")
    result = run_main(capsys, encode_vae.main, "--checkpoint", str(tiny_run / "vae.pt"), "--out",
                      str(tmp_path / "notes.npz"))
    assert_one_line(result, "notes.npz exists and is not a codes file")
    assert fingerprint(tiny_run) == before and (tmp_path / "notes.npz").read_text() == "a user's notes"
    result = run_main(capsys, encode_vae.main, "--checkpoint", str(tiny_run / "vae.pt"), "--out",
                      str(tmp_path / "codes.npz"))
    assert result.returncode == 0, result.stderr
    again = run_main(capsys, encode_vae.main, "--checkpoint", str(tiny_run / "vae.pt"), "--out",
                     str(tmp_path / "codes.npz"))
    assert again.returncode == 0, "its own codes file it may write again"


@pytest.mark.parametrize("name", ["config.json", "metrics.csv"])
def test_training_never_replaces_a_users_own_files_of_a_runs_names(capsys, tmp_path, name) -> None:
    (tmp_path / name).write_text("the user's own")
    result = run_main(capsys, train_vae.main, *TINY, "--out_dir", str(tmp_path))
    assert_one_line(result, f"holds {name}, which no run of train_vae.py wrote")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name] and (tmp_path / name).read_text() == "the user's own"
    train_vae.main([*TINY, "--out_dir", str(tmp_path), "--replace"], check_only=True)  # unless told to


def test_a_run_stopped_before_its_first_epoch_is_no_users_file(tmp_path) -> None:
    """A run writes config.json before it collects: killed then, its folder is its own to start again in."""
    (tmp_path / "config.json").write_text(json.dumps({"env_id": "CartPole-v1", "n_frames": 96, "seed": 0,
                                                      "out_dir": str(tmp_path)}))
    train_vae.main([*TINY, "--out_dir", str(tmp_path)], check_only=True)


def test_paths_the_system_refuses_and_numbers_as_paths(capsys, tmp_path, monkeypatch, tiny_run) -> None:
    long = str(tmp_path / ("a" * 300))
    assert_one_line(run_main(capsys, train_vae.main, *TINY, "--out_dir", long), "OUT_DIR names a file or folder "
                    "300 bytes long")
    assert_one_line(run_main(capsys, sample_vae.main, "--checkpoint", long + "/vae.pt"), "CHECKPOINT names a file")
    assert_one_line(run_main(capsys, homework.main, "--heldout", long), "HELDOUT names a file")
    monkeypatch.chdir(tmp_path)
    result = run_main(capsys, sample_vae.main, "--checkpoint", str(tiny_run / "vae.pt"), "--n_samples", "2",
                      "--out_dir", "2024")
    assert result.returncode == 0 and (tmp_path / "2024" / "samples.png").is_file(), result.stderr


def test_compare_refuses_a_later_models_kl_weight_or_folder_before_the_first_trains(capsys, tmp_path,
                                                                                   tiny_run) -> None:
    result = run_main(capsys, compare_vae.main, "--kl_weights", "(1e-5, 1e7)", "--out_dir", str(tmp_path / "c"))
    assert_one_line(result, "KL_WEIGHT must lie in 0 .. 1e+06")
    assert not (tmp_path / "c").exists()
    (tmp_path / "c" / "vae").mkdir(parents=True)
    (tmp_path / "c" / "vae" / "vae.pt").write_bytes((tiny_run / "vae.pt").read_bytes())
    result = run_main(capsys, compare_vae.main, "--n_frames", "96",
                      "--out_dir", str(tmp_path / "c"))
    assert_one_line(result, "holds an earlier run (vae.pt)")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["vae"], "the autoencoder never started"


def test_activities_refuse_a_later_activitys_folder_holding_a_run_before_the_first_trains(capsys, tmp_path,
                                                                                        tiny_run) -> None:
    (tmp_path / "activity5").mkdir()
    (tmp_path / "activity5" / "vae.pt").write_bytes((tiny_run / "vae.pt").read_bytes())
    result = run_main(capsys, activities.main, "--out_dir", str(tmp_path))
    assert_one_line(result, "activity5' holds an earlier run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["activity5"]


def test_the_ppo_bench_refuses_a_later_step_before_its_folder_or_first_run(capsys, tmp_path, tiny_run) -> None:
    pytest.importorskip("stable_baselines3")
    from tools import bench_ppo

    out = tmp_path / "bench"
    assert_one_line(run_main(capsys, bench_ppo.main, "--total_steps", "4", "--out_dir", str(out)),
                    "TOTAL_STEPS must lie in 8 ..")
    checkpoint = load_checkpoint(tiny_run / "vae.pt")
    checkpoint["config"]["env_id"] = "Pendulum-v1"
    write_checkpoint(tmp_path / "pendulum.pt", checkpoint)
    assert_one_line(run_main(capsys, bench_ppo.main, "--checkpoint", str(tmp_path / "pendulum.pt"), "--out_dir",
                             str(out)), "is a model of Pendulum-v1 frames")
    assert not out.exists()


def test_a_damaged_build_record_is_built_again_not_a_traceback(tmp_path, capsys, monkeypatch) -> None:
    from worldvae import constants

    monkeypatch.setattr(make_docs, "_RECORDS", tmp_path)
    cfg = constants.defaults(make_docs)
    for damaged in ("{not json", json.dumps({"stamp": {}, "loaded": "x", "measurements": {}, "minutes": 1}), "[]"):
        (tmp_path / "results.json").write_text(damaged)
        assert make_docs.read_record(tmp_path / "results.json") is None
        assert make_docs.changed(None, "results", cfg) == ["never built"]
        assert "not yet in one build" in make_docs.provenance_line(cfg)
        assert "is damaged; its part is built again" in capsys.readouterr().out


@pytest.mark.parametrize(("frames", "message"), [
    (np.zeros((4, 64, 64, 3), np.uint8), "holds uint8 of shape (4, 64, 64, 3), not uint8 frames (N, 3, 64, 64)"),
    (np.zeros((4, 3, 64, 64), np.float32), "holds float32"),
    (None, "is not an .npy array"),
], ids=["channels_last", "floats", "not_npy"])
def test_homework_refuses_heldout_frames_of_the_wrong_kind_before_collecting(capsys, tmp_path, frames,
                                                                            message) -> None:
    path = tmp_path / "heldout.npy"
    if frames is None:
        path.write_text("not an array")
    else:
        np.save(path, frames)
    result = run_main(capsys, homework.main, "--heldout", str(path), "--report", str(tmp_path / "r" / "h.json"))
    assert_one_line(result, message)
    assert not (tmp_path / "r").exists() and "collect" not in result.stdout


def test_a_fitted_prior_keeps_no_empty_component_at_the_origin() -> None:
    """Three distinct codes, 32 components asked: the 29 that k-means leaves empty are dropped, not kept at 0."""
    codes = np.repeat(np.array([[3.0, 1.0], [-2.0, 4.0], [1.0, -5.0]]), 100, axis=0)
    fitted = prior.fit_mixture(codes, components=32)
    assert len(fitted["weights"]) == 3 and float(fitted["weights"].sum()) == pytest.approx(1.0)
    assert torch.cdist(fitted["means"], torch.zeros(1, 2)).min() > 1, "no component sits at the origin"
