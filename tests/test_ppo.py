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
def test_the_recipe_trains_ppo_on_codes_and_tests_it_on_seeds_it_never_trained_on(capsys, monkeypatch) -> None:
    """A few hundred steps: the recipe runs end to end with the published settings and reports every test
    episode, which starts from a seed no training env was reset with."""
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    phase, seeds, returns = ["train"], {"train": set(), "test": set()}, []
    real_reset, real_test = CartPoleEnv.reset, ppo_on_codes.test

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            seeds[phase[0]].add(seed)
        return real_reset(self, seed=seed, options=options)

    def test(cfg, model) -> list[float]:
        phase[0] = "test"
        returns.extend(real_test(cfg, model))
        return returns

    monkeypatch.setattr(CartPoleEnv, "reset", reset)
    monkeypatch.setattr(ppo_on_codes, "test", test)
    result = run_main(capsys, ppo_on_codes.main, "--total_steps", "300", "--test_episodes", "3", "--seed", "7")
    assert result.returncode == 0, result.stderr
    assert "PPO (rl-zoo's CartPole-v1 settings) on the codes of pretrained/cartpole_control.pt, 4 stacked" \
        in result.stdout
    assert seeds["train"] == set(range(7, 7 + ppo_on_codes._PPO_SETTINGS["n_envs"])), "one seed per training env"
    assert seeds["test"] and not seeds["test"] & seeds["train"], "the test starts where training never did"
    assert len(returns) == 3 and all(1 <= r <= 500 for r in returns)
    assert f"mean return {np.mean(returns):.1f}" in result.stdout


@pytest.mark.slow
def test_the_benchmark_puts_codes_and_state_side_by_side_with_their_ratio(capsys, monkeypatch, tmp_path) -> None:
    ran, real_main = [], ppo_on_codes.main

    def recipe(argv, check_only=False):  # what each run of the recipe returned, as the bench got it
        result = real_main(argv, check_only)
        ran.extend([result] if result is not None else [])
        return result

    monkeypatch.setattr(ppo_on_codes, "main", recipe)
    result = run_main(capsys, bench_ppo.main, "--seeds", "(3,)", "--total_steps", "256", "--workers", "1",
                      "--out_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "ppo.json").read_text())
    assert [run["observe"] for run in ran] == ["codes", "state"]
    assert all(run["seed"] == 3 and run["total_steps"] == 256 for run in ran)
    codes, state = (np.mean(run["returns"]) for run in ran)  # from the recipe's own returns, not the report's means
    assert report["ratio"] == pytest.approx(codes / state)
    assert f"codes / state: {report['ratio']:.3f}" in result.stdout and report["machine"]["cpu"]


@pytest.mark.slow
def test_the_benchmarks_runs_side_by_side_come_back_each_to_its_seed_and_side(capsys, tmp_path) -> None:
    result = run_main(capsys, bench_ppo.main, "--seeds", "(3, 4)", "--total_steps", "256", "--workers", "2",
                      "--out_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "ppo.json").read_text())
    for observe in ("codes", "state"):
        assert [(run["observe"], run["seed"]) for run in report["runs"][observe]] == [(observe, 3), (observe, 4)]
    codes, state = (np.mean([r for run in report["runs"][side] for r in run["returns"]]) for side in ("codes", "state"))
    assert report["ratio"] == pytest.approx(codes / state)


def test_a_missing_checkpoint_or_library_is_one_line(capsys, monkeypatch, tmp_path) -> None:
    result = run_main(capsys, ppo_on_codes.main, "--checkpoint", str(tmp_path / "none.pt"))
    assert result.returncode == 1 and result.stderr.startswith("error: no checkpoint at")
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # as if it were not installed
    result = run_main(capsys, ppo_on_codes.main, "--total_steps", "300")
    assert result.returncode == 1 and "pip install -r requirements-envs.txt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
