"""A real RL library on the vision stage's codes: stable-baselines3's PPO learns CartPole from codes of frames.

    pip install -r requirements-envs.txt         # stable-baselines3 is optional: never in the core install
    python examples/ppo_on_codes.py              # PPO on the shipped control model's codes
    python examples/ppo_on_codes.py --observe state   # the same PPO on the env's true state: the yardstick

Each env is wrapped in LatentObservation, so the policy reads the code of each rendered frame,
never the state. One code shows where the cart and the pole are, not how fast they move: SB3's
VecFrameStack hands the policy the last N_STACK codes, and the policy reads motion from their
differences. PPO's settings are rl-zoo's published ones for CartPole-v1 (_PPO_SETTINGS) but for
the budget: TOTAL_STEPS is twice the zoo's 100,000, and the learning rate and clip range, which
fall linearly to 0 over training, fall over the longer budget. The state side (--observe state)
is stacked too, so the two sides differ in what the policy observes and nothing else.
`tools/bench_ppo.py` runs both sides with the same seeds and budget and prints their ratio.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: the library beside the scripts
from worldvae import cli, constants  # noqa: E402
from worldvae.checkpoints import load_checkpoint, run_config  # noqa: E402
from worldvae.cli import UserError  # noqa: E402
from worldvae.latent import LatentObservation  # noqa: E402
from worldvae.progress import ProgressBar  # noqa: E402

# -----------------------------------------------------------------------------
CHECKPOINT = "pretrained/cartpole_control.pt"  # the VAE whose codes the policy reads (a CartPole-v1 checkpoint)
OBSERVE = "codes"  # codes: the code of each frame (LatentObservation); state: the env's own 4 numbers
N_STACK = 4  # how many of the latest observations the policy reads at once (VecFrameStack)
TOTAL_STEPS = 200_000  # env steps of training, across all 8 envs (rl-zoo's n_envs; its budget: 100,000)
TEST_EPISODES = 20  # episodes of the trained policy (its most likely action) on seeds training never used
SEED = 0  # seeds the envs, PPO and the test episodes
# -----------------------------------------------------------------------------

_ENV_ID = "CartPole-v1"
_OBSERVES = ("codes", "state")
# rl-baselines3-zoo's hyperparams/ppo.yml, CartPole-v1 (lin_X: X falling linearly to 0 over training)
_PPO_SETTINGS = {"n_envs": 8, "policy": "MlpPolicy", "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8,
                "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0, "learning_rate": ("lin", 1e-3),
                "clip_range": ("lin", 0.2)}
_TEST_SEED_OFFSET = 1_000_000  # test episodes start from seeds no training env reaches


def check(cfg) -> None:
    """Every constant a user can set, before anything is made."""
    cli.require(cfg.observe in _OBSERVES, f"OBSERVE must be one of {', '.join(_OBSERVES)}, got {cfg.observe!r}")
    cli.require(1 <= cfg.n_stack <= 64, f"N_STACK must lie in 1 .. 64, got {cfg.n_stack}")
    cli.require(_PPO_SETTINGS["n_envs"] <= cfg.total_steps <= 10**9, f"TOTAL_STEPS must lie in "
                f"{_PPO_SETTINGS['n_envs']} .. 10**9, got {cfg.total_steps}")
    cli.require(1 <= cfg.test_episodes <= 10_000, f"TEST_EPISODES must lie in 1 .. 10000, got {cfg.test_episodes}")
    cli.require_seed(cfg.seed)
    if cfg.observe == "codes":
        if not Path(cfg.checkpoint).is_file():
            raise UserError(f"no checkpoint at {cfg.checkpoint}: train one (python train_vae.py --policy balancer "
                            "--reset_after None) or keep the shipped pretrained/cartpole_control.pt")
        env_id = run_config(load_checkpoint(cfg.checkpoint), cfg.checkpoint)["env_id"]
        cli.require(env_id == _ENV_ID, f"{cfg.checkpoint} is a model of {env_id} frames; this recipe drives "
                    f"{_ENV_ID}: give a {_ENV_ID} checkpoint")


def import_sb3():
    """stable-baselines3, or one line saying how to install it."""
    try:
        import stable_baselines3
    except ImportError:
        raise UserError("stable-baselines3 is not installed: pip install -r requirements-envs.txt") from None
    return stable_baselines3


def make_envs(cfg, n_envs: int, seed: int):
    """`n_envs` CartPoles, each seen through the checkpoint's codes (or as its state), the last N_STACK
    observations stacked."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    def observed() -> gym.Env:
        if cfg.observe == "state":
            return gym.make(_ENV_ID)
        return LatentObservation(gym.make(_ENV_ID, render_mode="rgb_array"), cfg.checkpoint, device="cpu")

    return VecFrameStack(make_vec_env(observed, n_envs=n_envs, seed=seed), cfg.n_stack)


def linear(start: float):
    """SB3's schedule: `start` at the beginning of training, falling linearly to 0 at its end."""
    return lambda progress_remaining: progress_remaining * start


def train(cfg, sb3):
    """PPO with rl-zoo's CartPole-v1 settings, its progress on our bar (SB3's own needs `rich`)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Progress(BaseCallback):
        def __init__(self, bar: ProgressBar) -> None:
            super().__init__()
            self.bar = bar

        def _on_step(self) -> bool:  # one step of every env
            self.bar.update(self.training_env.num_envs)
            return True

    settings = {key: linear(value[1]) if isinstance(value, tuple) else value
                for key, value in _PPO_SETTINGS.items() if key not in ("n_envs", "policy")}
    envs = make_envs(cfg, _PPO_SETTINGS["n_envs"], cfg.seed)
    model = sb3.PPO(_PPO_SETTINGS["policy"], envs, seed=cfg.seed, device="cpu", verbose=0, **settings)
    rollout = _PPO_SETTINGS["n_steps"] * _PPO_SETTINGS["n_envs"]  # PPO learns in whole rollouts: it rounds up
    with ProgressBar(-(-cfg.total_steps // rollout) * rollout, "PPO", "step") as bar:
        model.learn(total_timesteps=cfg.total_steps, callback=Progress(bar))
    return model, envs


def test(cfg, model) -> list[float]:
    """Returns of TEST_EPISODES episodes of the policy's most likely action, on seeds training never used."""
    from stable_baselines3.common.evaluation import evaluate_policy

    envs = make_envs(cfg, 1, cfg.seed + _TEST_SEED_OFFSET)
    returns, _ = evaluate_policy(model, envs, n_eval_episodes=cfg.test_episodes, deterministic=True,
                                 return_episode_rewards=True)
    envs.close()
    return [float(r) for r in returns]


def main(argv: Sequence[str] | None = None, check_only: bool = False) -> dict | None:
    """Train and test; with `check_only`, only the refusals (tools/bench_ppo.py checks every run first)."""
    cfg = constants.parse_config(__name__, argv)
    check(cfg)
    sb3 = import_sb3()
    if check_only:
        return None
    what = "the true state" if cfg.observe == "state" else f"the codes of {cfg.checkpoint}"
    print(f"PPO (rl-zoo's CartPole-v1 settings) on {what}, {cfg.n_stack} stacked, {cfg.total_steps:,} steps, "
          f"seed {cfg.seed}")
    model, envs = train(cfg, sb3)
    returns = test(cfg, model)
    envs.close()
    result = {"observe": cfg.observe, "n_stack": cfg.n_stack, "total_steps": cfg.total_steps, "seed": cfg.seed,
              "test_episodes": cfg.test_episodes, "ppo_settings": _PPO_SETTINGS,
              "mean_return": float(np.mean(returns)), "worst_return": float(min(returns)), "returns": returns}
    print(f"test: mean return {result['mean_return']:.1f}, worst {result['worst_return']:.0f} "
          f"over {cfg.test_episodes} episodes (500 is the most)")
    return result


if __name__ == "__main__":
    cli.run(main)
