"""The recipe for a real RL library on the codes: stable-baselines3's PPO on LatentObservation, frames stacked."""

from __future__ import annotations

import json
import sys

import gymnasium as gym
import numpy as np
import pytest
from conftest import run_main

from worldvae import REPO, constants
from worldvae.latent import LatentObservation

pytest.importorskip("stable_baselines3", reason="stable-baselines3 is optional: pip install -r requirements-envs.txt")
from examples import ppo_on_codes  # noqa: E402
from tools import bench_ppo  # noqa: E402

CONTROL_MODEL = REPO / "pretrained" / "cartpole_control.pt"


def test_the_policy_reads_the_latest_codes_of_the_frames_stacked_never_the_state() -> None:
    cfg = constants.defaults(ppo_on_codes, n_stack=3)
    envs = ppo_on_codes.make_envs(cfg, n_envs=2, seed=5)
    stacked = envs.reset()
    latent_dim = LatentObservation(gym.make("CartPole-v1", render_mode="rgb_array"), CONTROL_MODEL).model.latent_dim
    assert stacked.shape == (2, 3 * latent_dim)
    for i in range(2):  # make_vec_env seeds env i with seed + i; the newest code is the last of the stack
        alone = LatentObservation(gym.make("CartPole-v1", render_mode="rgb_array"), CONTROL_MODEL)
        np.testing.assert_allclose(stacked[i, -latent_dim:], alone.reset(seed=5 + i)[0], atol=1e-5)
    assert not stacked[:, :-latent_dim].any(), "the stack starts empty, not with copies of the state"
    state = ppo_on_codes.make_envs(constants.defaults(ppo_on_codes, observe="state", n_stack=3), n_envs=2, seed=5)
    assert state.reset().shape == (2, 3 * 4)
    envs.close()
    state.close()


@pytest.mark.slow
def test_the_recipe_trains_ppo_on_codes_and_tests_it_on_seeds_it_never_trained_on(capsys) -> None:
    """A few hundred steps: the recipe runs end to end with the published settings and reports every test episode."""
    result = run_main(capsys, ppo_on_codes.main, "--total_steps", "300", "--test_episodes", "3")
    assert result.returncode == 0, result.stderr
    assert "PPO (rl-zoo's CartPole-v1 settings) on the codes of pretrained/cartpole_control.pt, 4 stacked" \
        in result.stdout
    returns = ppo_on_codes.main(["--total_steps", "300", "--test_episodes", "3"])["returns"]
    assert len(returns) == 3 and all(1 <= r <= 500 for r in returns)
    assert f"mean return {np.mean(returns):.1f}" in result.stdout, "the same seeds give the same returns"


@pytest.mark.slow
def test_the_benchmark_puts_codes_and_state_side_by_side_with_their_ratio(capsys, tmp_path) -> None:
    result = run_main(capsys, bench_ppo.main, "--seeds", "(3,)", "--total_steps", "256", "--out_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "ppo.json").read_text())
    assert [run["observe"] for run in report["runs"]["codes"] + report["runs"]["state"]] == ["codes", "state"]
    assert all(run["seed"] == 3 and run["total_steps"] == 256 for side in report["runs"].values() for run in side)
    assert report["ratio"] == pytest.approx(report["mean_return"]["codes"] / report["mean_return"]["state"])
    assert f"codes / state: {report['ratio']:.3f}" in result.stdout and report["machine"]["cpu"]


def test_a_missing_checkpoint_or_library_is_one_line(capsys, monkeypatch, tmp_path) -> None:
    result = run_main(capsys, ppo_on_codes.main, "--checkpoint", str(tmp_path / "none.pt"))
    assert result.returncode == 1 and result.stderr.startswith("error: no checkpoint at")
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # as if it were not installed
    result = run_main(capsys, ppo_on_codes.main, "--total_steps", "300")
    assert result.returncode == 1 and "pip install -r requirements-envs.txt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
