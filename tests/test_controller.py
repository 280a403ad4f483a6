"""The controller recipe: DAgger on CarRacing codes, its resume, its held-out evaluation, its refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line, run_main

from worldvae import REPO, constants

pytest.importorskip("Box2D", reason="CarRacing needs gymnasium[box2d]: pip install -r requirements-envs.txt")
from examples import carracing_controller as recipe  # noqa: E402

SCRIPT = "examples/carracing_controller.py"
SHIPPED = REPO / "pretrained" / "carracing_controller.json"
# two tracks a round, 60 steps each (50 of them the zoom): seconds, not minutes
QUICK = ["--episodes", "2", "--episode_steps", "60", "--fit_steps", "20", "--workers", "1", "--seed", "3"]


def quick_run(out_dir: Path, rounds: int, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *QUICK, "--rounds", str(rounds), "--out_dir", str(out_dir), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def trained(out_dir: Path) -> tuple[dict, list]:
    """A finished training's controller weights and its per-round history."""
    record = json.loads((out_dir / "controller.json").read_text())
    return record["weights"], record["history"]


def start(out_dir: Path, rounds: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, SCRIPT, *QUICK, "--rounds", str(rounds), "--out_dir", str(out_dir)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_the_actions_lie_in_carracings_ranges_whatever_the_code() -> None:
    torch.manual_seed(0)
    for hidden in (0, 8):
        net = recipe.controller_net(32, hidden)
        actions = recipe.act(net, 100 * torch.randn(500, 32))
        assert actions[:, 0].abs().max() <= 1 and actions[:, 1:].min() >= 0 and actions[:, 1:].max() <= 1
        assert actions[:, 0].min() < -0.5 < 0.5 < actions[:, 0].max(), "steering reaches both ways"


def test_the_fit_learns_the_teachers_actions_from_the_codes() -> None:
    """Labels that a linear controller can give exactly: the fit finds them (steering tanh(z0), gas 0.15)."""
    codes = np.random.default_rng(0).normal(size=(2000, 32)).astype(np.float32)
    labels = np.stack([np.tanh(codes[:, 0]), np.full(2000, 0.15), np.zeros(2000)], axis=1).astype(np.float32)
    cfg = constants.defaults(recipe, fit_steps=500)
    net = recipe.fit(codes, labels, cfg, round_=0)
    error = (recipe.act(net, torch.from_numpy(codes)) - torch.from_numpy(labels)).abs().max().item()
    assert error < 0.05


@pytest.mark.slow
def test_a_training_killed_and_resumed_ends_as_one_never_stopped(tmp_path: Path) -> None:
    """kill -9 once round 0's state is on disk, then --resume: the same controller, bit for bit, and history."""
    whole = quick_run(tmp_path / "whole", 3)
    assert whole.returncode == 0, whole.stderr
    process = start(tmp_path / "killed", 3)
    for line in process.stdout:
        if line.startswith("round 0:"):  # printed after round 0's state is written
            break
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL
    assert torch.load(tmp_path / "killed" / recipe._STATE, weights_only=False)["round"] in (1, 2)
    refused = quick_run(tmp_path / "killed", 3)
    assert_one_line(refused, "--resume True to go on")
    resumed = quick_run(tmp_path / "killed", 3, "--resume", "True")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after round" in resumed.stdout
    assert trained(tmp_path / "killed") == trained(tmp_path / "whole")


@pytest.mark.slow
def test_ctrl_c_stops_after_the_round_it_is_in_and_resume_ends_as_one_never_stopped(tmp_path: Path) -> None:
    whole = quick_run(tmp_path / "whole", 3)
    assert whole.returncode == 0, whole.stderr
    process = start(tmp_path / "stopped", 3)
    for line in process.stdout:
        if line.startswith("DAgger on"):
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "SIGINT: stopped after round" in stderr and "--resume True goes on" in stderr and "Traceback" not in stderr
    assert torch.load(tmp_path / "stopped" / recipe._STATE, weights_only=False)["round"] < 3
    resumed = quick_run(tmp_path / "stopped", 3, "--resume", "True")
    assert resumed.returncode == 0, resumed.stderr
    assert trained(tmp_path / "stopped") == trained(tmp_path / "whole")


@pytest.mark.slow
def test_more_rounds_go_on_from_a_finished_training_as_if_asked_for_at_first(tmp_path: Path) -> None:
    assert quick_run(tmp_path / "two", 2).returncode == 0
    assert quick_run(tmp_path / "two", 3, "--resume", "True").returncode == 0
    assert quick_run(tmp_path / "three", 3).returncode == 0
    assert trained(tmp_path / "two") == trained(tmp_path / "three")
    weights, history = trained(tmp_path / "three")
    assert [row["driver"] for row in history] == ["teacher", "controller", "controller"]
    assert (tmp_path / "three" / "progress.png").stat().st_size > 0


@pytest.mark.slow
def test_evaluation_drives_whole_episodes_on_held_out_tracks_beside_a_random_policy(tmp_path: Path, capsys,
                                                                                    monkeypatch) -> None:
    """Evaluation drives exactly its own tracks, each to the end gymnasium gives it; the shipped controller
    drives them better than chance."""
    driven = []
    monkeypatch.setattr(recipe, "drive_all", lambda pool, tasks, bar: driven.extend(tasks) or
                        [recipe.drive(task) for task in tasks])
    result = run_main(capsys, recipe.main, "--evaluate", "True", "--controller", str(SHIPPED), "--eval_tracks", "2",
                      "--eval_seed", "500000", "--workers", "1", "--out_dir", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr
    assert sorted(task["track"] for task in driven) == [500_000, 500_000, 500_001, 500_001]
    assert not any("steps" in task for task in driven), "evaluation never cuts an episode short"
    saved = json.loads((tmp_path / "eval/evaluation.json").read_text())
    assert saved["tracks"] == 2 and saved["seeds"] == [500_000, 500_001]
    assert saved["mean"] == pytest.approx(np.mean(saved["returns"])) and saved["worst"] == min(saved["returns"])
    assert saved["std"] == pytest.approx(np.std(saved["returns"]))
    assert all(steps == 1000 for steps in saved["steps"]) or min(saved["returns"]) > 0
    assert saved["random"]["mean"] + 200 < saved["mean"]
    assert "World Models" in result.stdout and "632" in result.stdout and "a uniformly random policy" in result.stdout


def test_evaluation_refuses_tracks_the_controller_trained_on(tmp_path: Path, capsys) -> None:
    controller = tmp_path / "controller.json"
    record = recipe.controller_record(recipe.controller_net(32, 0), 0, {"weights_digest": recipe.weights_digest(
        torch.load(REPO / recipe.CHECKPOINT, weights_only=False))}, {"tracks": [300_000, 64]})
    controller.write_text(json.dumps(record))
    result = run_main(capsys, recipe.main, "--evaluate", "True", "--controller", str(controller), "--eval_seed",
                      "300010", "--eval_tracks", "2", "--out_dir", str(tmp_path / "eval"))
    assert_one_line(result, "trained on tracks 300000 .. 300063")
    assert not (tmp_path / "eval").exists()


def test_training_refuses_a_seed_whose_tracks_reach_the_evaluations(tmp_path: Path, capsys) -> None:
    result = run_main(capsys, recipe.main, "--seed", "10", "--out_dir", str(tmp_path / "run"))
    assert_one_line(result, "reach the evaluation's (EVAL_SEED=1000000)")
    assert not (tmp_path / "run").exists()


def test_the_shipped_controller_reads_the_shipped_v_stage_and_never_trained_on_the_evaluations_tracks() -> None:
    net, record = recipe.load_controller(str(SHIPPED), recipe.CHECKPOINT)
    assert not recipe.overlaps(record["training"]["tracks"], (recipe.EVAL_SEED, recipe.EVAL_TRACKS))
    assert record["hidden"] == recipe.HIDDEN and record["vision"]["checkpoint"] == recipe.CHECKPOINT
    assert SHIPPED.stat().st_size < 50_000


def test_a_missing_or_damaged_controller_is_one_line(tmp_path: Path, capsys) -> None:
    result = run_main(capsys, recipe.main, "--evaluate", "True", "--controller", str(tmp_path / "none.json"))
    assert_one_line(result, "no controller at")
    for text in ("{not json", json.dumps({"format": "something else"}), SHIPPED.read_text()[:200],
                 SHIPPED.read_text().replace('"latent_dim": 32', '"latent_dim": 7')):
        (tmp_path / "bad.json").write_text(text)
        result = run_main(capsys, recipe.main, "--rollout", "True", "--controller", str(tmp_path / "bad.json"),
                          "--out_dir", str(tmp_path / "out"))
        assert_one_line(result, "is not a readable controller file")
    assert not (tmp_path / "out").exists()


def test_a_controller_of_another_v_stage_is_refused(tmp_path: Path, capsys) -> None:
    saved = torch.load(REPO / recipe.CHECKPOINT, weights_only=False)
    first = next(iter(saved["model"]))
    saved["model"][first] = saved["model"][first] + 1e-3
    torch.save(saved, tmp_path / "other.pt")
    result = run_main(capsys, recipe.main, "--evaluate", "True", "--checkpoint", str(tmp_path / "other.pt"),
                      "--controller", str(SHIPPED), "--eval_tracks", "1", "--out_dir", str(tmp_path / "out"))
    assert_one_line(result, "was trained on the codes of another V stage")


def test_a_missing_checkpoint_a_cartpole_one_and_a_missing_box2d_are_one_line(tmp_path: Path, capsys,
                                                                             monkeypatch) -> None:
    assert_one_line(run_main(capsys, recipe.main, "--checkpoint", str(tmp_path / "none.pt")), "no checkpoint at")
    assert_one_line(run_main(capsys, recipe.main, "--checkpoint", "pretrained/cartpole.pt"),
                    "is a model of CartPole-v1 frames")
    monkeypatch.setitem(sys.modules, "Box2D", None)
    assert_one_line(run_main(capsys, recipe.main, "--out_dir", str(tmp_path / "run")), "CarRacing needs Box2D")
    assert not (tmp_path / "run").exists()


def test_the_users_own_files_are_never_replaced(tmp_path: Path, capsys) -> None:
    (tmp_path / "controller.json").write_text("my notes")
    assert_one_line(run_main(capsys, recipe.main, "--out_dir", str(tmp_path)), "controller.json exists and is not")
    (tmp_path / "evaluation.json").write_text("my notes")
    assert_one_line(run_main(capsys, recipe.main, "--evaluate", "True", "--controller", str(SHIPPED), "--eval_tracks",
                             "1", "--out_dir", str(tmp_path)), "evaluation.json exists and is not")
    (tmp_path / "rollout.gif").write_text("my notes")
    assert_one_line(run_main(capsys, recipe.main, "--rollout", "True", "--controller", str(SHIPPED), "--out_dir",
                             str(tmp_path)), "rollout.gif exists and is not")
    assert {p.read_text() for p in tmp_path.iterdir()} == {"my notes"}


def test_resume_refuses_another_training_and_a_folder_without_one(tmp_path: Path, capsys) -> None:
    assert_one_line(run_main(capsys, recipe.main, "--resume", "True", "--out_dir", str(tmp_path)),
                    "holds no training to resume")
    torch.save({"config": recipe.training_config(constants.defaults(recipe, hidden=16))}, tmp_path / recipe._STATE)
    assert_one_line(run_main(capsys, recipe.main, "--resume", "True", "--out_dir", str(tmp_path)),
                    "was trained with other constants (hidden)")
    (tmp_path / recipe._STATE).write_bytes(b"damaged")
    assert_one_line(run_main(capsys, recipe.main, "--resume", "True", "--out_dir", str(tmp_path)),
                    "is not a readable training state")


@pytest.mark.slow
def test_the_rollout_draws_each_kept_step_beside_its_reconstruction_with_the_return_so_far(tmp_path: Path,
                                                                                          capsys) -> None:
    from PIL import Image

    result = run_main(capsys, recipe.main, "--rollout", "True", "--controller", str(SHIPPED), "--out_dir",
                      str(tmp_path))
    assert result.returncode == 0, result.stderr
    steps = int(result.stdout.split(" in ")[1].split(" steps")[0])
    with Image.open(tmp_path / "rollout.gif") as gif:
        assert gif.n_frames == len(range(recipe._ZOOM_STEPS, steps, recipe._ROLLOUT_EVERY))
        first = np.asarray(gif.convert("RGB")).astype(float)
    body = first[2 * 20:-4]  # below the title and the column labels: the frame, then its reconstruction
    left, right = body[:, :body.shape[1] // 2], body[:, body.shape[1] // 2:]
    assert abs(left.mean() - right.mean()) < 25, "the frame and its reconstruction look alike (not a white tile)"
    assert left.std() > 10 and right.std() > 10, "both tiles show a picture"
