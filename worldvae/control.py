"""The closed-loop check: can a controller balance CartPole on what the code says of the state?

A World Models controller acts on the vision stage's code, so the test of a code is a
controller acting on it, on frames a learning controller meets. The check:

1. collects labelled frames of its own, from a driver that collected no training frames
   (policies.Prober: the fixed controller, half its actions random, its target sweeping the track),
   so the readout is fitted where a controller goes, not where the training frames were;
2. fits a least-squares readout from the code (the latent mean, and its products of two and of
   three entries, readout_degree permitting: the pole's angle is no linear function of a code
   that places the cart and the pole's tip) to the cart's position and the pole's angle, scored
   (R^2) on every other episode, fitted on the rest; the closed loop's readout is fitted on every
   probe frame;
3. runs the fixed controller (policies.balancing_action) in closed loop on the state read back
   from each frame's code, the velocities from consecutive estimates, and beside it the same
   controller on the true state, over the same episodes.

CartPole-v1 counts as solved at an average of 475 of its 500 steps.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch

from MyVAE import MyVAE
from worldvae import envs
from worldvae.codes import encode_frames
from worldvae.collection import collect_frames
from worldvae.compute import to_unit_float
from worldvae.envs import make_env
from worldvae.policies import balancing_action
from worldvae.rendering import frame_renderer

READ_BACK = (0, 2)  # the state entries a readout fits: the cart's position and the pole's angle
SOLVED = 475  # CartPole-v1's "solved": the mean episode length over 100 episodes, of at most 500


def features(mu: np.ndarray, degree: int) -> np.ndarray:
    """(N, D) codes -> a bias, the code, and every product of two (and, at degree 3, of three) of its
    entries; readout_degree says which degree a fit can afford. On a control model's held-out probe
    episodes the third degree cut the quadratic readout's median error by more than half (cart
    0.008 -> 0.002, pole 0.009 -> 0.004 rad) and its worst closed-loop episode from 141 steps to 500."""
    columns = [np.ones((len(mu), 1)), mu]
    for order in range(2, degree + 1):
        index = np.array(list(itertools.combinations_with_replacement(range(mu.shape[1]), order)))
        columns.append(np.prod(mu[:, index], axis=2))
    return np.column_stack(columns)


def readout_degree(latent_dim: int, fit_frames: int) -> int:
    """3 where the fit has at least four frames per feature, else 2: a wide code's products of three
    outnumber the probe frames (LATENT_DIM=32 has 6,545 features up to degree 3, 10 has 286)."""
    return 3 if math.comb(latent_dim + 3, 3) * 4 <= fit_frames else 2


@dataclass
class Readout:
    """A least-squares map from features of a code to the READ_BACK state entries, its estimates
    kept within the range of the states it was fitted on: the products extrapolate wildly
    on a code unlike any it saw, and no cart stands beyond the track's end."""

    weights: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(cls, design: np.ndarray, targets: np.ndarray, ridge: float = 1e-6) -> Readout:
        gram = design.T @ design + ridge * len(design) * np.eye(design.shape[1])
        return cls(np.linalg.solve(gram, design.T @ targets), targets.min(0), targets.max(0))

    def __call__(self, design: np.ndarray) -> np.ndarray:
        return np.clip(design @ self.weights, self.low, self.high)

    def r2(self, design: np.ndarray, targets: np.ndarray) -> np.ndarray:
        residual = ((targets - self(design)) ** 2).sum(0)
        return 1.0 - residual / np.maximum(((targets - targets.mean(0)) ** 2).sum(0), 1e-12)


def closed_loop(env_id: str, estimate: Callable[[gym.Env], np.ndarray], episodes: int, seed: int,
                max_steps: int = 500) -> list[int]:
    """Episode lengths of the fixed controller acting on `estimate(env)`, the (position, angle) it
    reads back each step; velocities are the change of consecutive estimates over the env's time step."""
    env, lengths = gym.make(env_id, render_mode="rgb_array", max_episode_steps=max_steps), []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        previous, steps, done = None, 0, False
        while not done:
            position, angle = estimate(env)
            if previous is None:
                previous = (position, angle)
            tau = env.unwrapped.tau
            state = (position, (position - previous[0]) / tau, angle, (angle - previous[1]) / tau)
            previous = (position, angle)
            _, _, terminated, truncated, _ = env.step(balancing_action(np.array(state)))
            steps, done = steps + 1, terminated or truncated
        lengths.append(steps)
    env.close()
    return lengths


def true_state(env: gym.Env) -> np.ndarray:
    return np.asarray(env.unwrapped.state)[list(READ_BACK)]


def control_check(model: MyVAE, config: dict, device: torch.device, episodes: int = 20, fit_frames: int = 4000,
                  seed: int = 10_000) -> dict:
    """The check on CartPole for the model trained with `config`: readout R^2 on held-out probe frames,
    and the mean and worst episode of the controller on the code and on the true state."""
    probe_cfg = envs.resolve_env_defaults(SimpleNamespace(**(config | {"n_frames": fit_frames, "seed": seed,
                                                                       "policy": "prober", "reset_after": None})))
    labelled = collect_frames(probe_cfg)[0]
    half = labelled["episode"] % 2 == 0  # fit on every other episode, score on the rest: both cover the track
    degree = readout_degree(model.latent_dim, int(half.sum()))
    design = features(encode_frames(model, labelled["frames"], device, "control: encoding").mu, degree)
    targets = labelled["states"][:, list(READ_BACK)]
    scored = Readout.fit(design[half], targets[half]).r2(design[~half], targets[~half])  # on episodes it never saw
    readout = Readout.fit(design, targets)  # the closed loop's: every probe frame, to cover all the cart can reach
    made = make_env(config["env_id"], seed)
    render = frame_renderer(made, config["crop"], config["img_size"], config["fast_render"])
    made.close()
    model.eval()

    @torch.no_grad()
    def from_code(env: gym.Env) -> np.ndarray:  # the frame as training drew it, its code, the state read back
        frame = to_unit_float(torch.tensor(render(env, None)[None], device=device))
        return readout(features(model(frame).mu.float().cpu().numpy(), degree))[0]

    on_code = closed_loop(config["env_id"], from_code, episodes, seed)
    on_truth = closed_loop(config["env_id"], true_state, episodes, seed)
    r2 = dict(zip(("cart position", "pole angle"), scored.tolist(), strict=True))
    return {"episodes": episodes, "readout_r2": r2, "readout_degree": degree,
            "mean_steps": float(np.mean(on_code)), "worst_steps": int(min(on_code)),
            "true_state_mean_steps": float(np.mean(on_truth)), "true_state_worst_steps": int(min(on_truth))}
