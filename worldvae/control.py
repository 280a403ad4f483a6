"""The closed-loop check: can controllers balance CartPole on what the code says of the state?

A World Models controller acts on the vision stage's code, so the test of a code is a
controller acting on it, on frames a learning controller meets. The check:

1. collects labelled frames of its own, from a driver that collected no training frames
   (policies.Prober: the fixed controller, half its actions random, its target sweeping the track),
   so the readouts are fitted where a controller goes, not where the training frames were;
2. fits least-squares readouts from the code (the latent mean and its products of two, and of
   three: the pole's angle is no linear function of a code that places the cart and the pole's tip)
   to the cart's position and the pole's angle, scored (R^2) on every other episode, fitted on the
   rest; the closed loop's readouts are fitted on every probe frame;
3. runs each of CONTROLLERS, fixed linear controllers with different gains, in closed loop on the
   state each readout gives back from each frame's code, the velocities from consecutive estimates,
   and beside them the same controllers on the true state, over the same episodes. A code passes
   when every combination of controller and readout does: the verdict hangs on no one of them.

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
from worldvae.policies import BALANCER_GAINS, balancing_action
from worldvae.rendering import frame_renderer

READ_BACK = (0, 2)  # the state entries a readout fits: the cart's position and the pole's angle
SOLVED = 475  # CartPole-v1's "solved": the mean episode length over 100 episodes, of at most 500
DEGREES = (2, 3)  # the readouts' degrees: products of two, and of three, entries of the code
# gains on (x, x_dot, theta, theta_dot), each balancing all 500 steps from the true state: the collection
# policy's own, and three that weigh the pole's spin, its angle and the cart differently
CONTROLLERS = {"balancer": BALANCER_GAINS, "damped": (0.3, 1.5, 8.0, 3.0), "stiff": (1.0, 1.0, 15.0, 1.5),
               "loose": (0.1, 0.5, 5.0, 1.0)}
Estimate = Callable[[list[gym.Env]], np.ndarray]  # envs -> their (position, angle), (n, 2)


def features(mu: np.ndarray, degree: int) -> np.ndarray:
    """(N, D) codes -> a bias, the code, and every product of two (and, at degree 3, of three) of its
    entries; readout_degrees says which degrees a fit can afford. On a control model's held-out probe
    episodes the third degree cut the quadratic readout's median error by more than half (cart
    0.008 -> 0.002, pole 0.009 -> 0.004 rad) and its worst closed-loop episode from 141 steps to 500."""
    columns = [np.ones((len(mu), 1)), mu]
    for order in range(2, degree + 1):
        index = np.array(list(itertools.combinations_with_replacement(range(mu.shape[1]), order)))
        columns.append(np.prod(mu[:, index], axis=2))
    return np.column_stack(columns)


def readout_degrees(latent_dim: int, fit_frames: int) -> tuple[int, ...]:
    """The DEGREES whose fit has at least four frames per feature: a wide code's products of three outnumber
    the probe frames (LATENT_DIM=32 has 6,545 features up to degree 3, 10 has 286); degree 1 where none has."""
    return tuple(d for d in DEGREES if math.comb(latent_dim + d, d) * 4 <= fit_frames) or (1,)


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


def closed_loop(env_id: str, estimate: Estimate, episodes: int, seed: int,
                gains: tuple[float, ...] = BALANCER_GAINS, max_steps: int = 500) -> list[int]:
    """Episode lengths of the controller with `gains` acting on `estimate(envs)`, the (position, angle)
    it reads back of each env each step; velocities are the change of consecutive estimates over the
    env's time step. The episodes run side by side, so a model encodes their frames in one batch."""
    made = [gym.make(env_id, render_mode="rgb_array", max_episode_steps=max_steps) for _ in range(episodes)]
    for episode, env in enumerate(made):
        env.reset(seed=seed + episode)
    tau = made[0].unwrapped.tau
    lengths, previous, live = [0] * episodes, np.full((episodes, 2), np.nan), list(range(episodes))
    while live:
        now = np.asarray(estimate([made[i] for i in live]), dtype=np.float64)
        velocity = (now - np.where(np.isnan(previous[live]), now, previous[live])) / tau
        previous[live] = now
        still = []
        for i, (position, angle), (speed, spin) in zip(live, now, velocity, strict=True):
            _, _, terminated, truncated, _ = made[i].step(balancing_action(np.array((position, speed, angle, spin)),
                                                                            gains=gains))
            lengths[i] += 1
            if not (terminated or truncated):
                still.append(i)
        live = still
    for env in made:
        env.close()
    return lengths


def true_state(envs: list[gym.Env]) -> np.ndarray:
    return np.array([np.asarray(env.unwrapped.state)[list(READ_BACK)] for env in envs])


def control_check(model: MyVAE, config: dict, device: torch.device, episodes: int = 20, fit_frames: int = 4000,
                  seed: int = 10_000) -> dict:
    """The check on CartPole for the model trained with `config`: each readout's R^2 on held-out probe frames,
    and each controller's mean and worst episode on each readout of the code and on the true state; and the
    worst of those combinations, named (worst_combination)."""
    probe_cfg = envs.resolve_env_defaults(SimpleNamespace(**(config | {"n_frames": fit_frames, "seed": seed,
                                                                       "policy": "prober", "reset_after": None})))
    labelled = collect_frames(probe_cfg)[0]
    half = labelled["episode"] % 2 == 0  # fit on every other episode, score on the rest: both cover the track
    codes = encode_frames(model, labelled["frames"], device, "control: encoding").mu
    targets = labelled["states"][:, list(READ_BACK)]
    readouts, r2 = {}, {}
    for degree in readout_degrees(model.latent_dim, int(half.sum())):
        design = features(codes, degree)
        scored = Readout.fit(design[half], targets[half]).r2(design[~half], targets[~half])  # on unseen episodes
        r2[f"degree {degree}"] = dict(zip(("cart position", "pole angle"), scored.tolist(), strict=True))
        readouts[degree] = Readout.fit(design, targets)  # the closed loop's: every probe frame, all the cart reaches
    made = make_env(config["env_id"], seed)
    render = frame_renderer(made, config["crop"], config["img_size"], config["fast_render"])
    made.close()
    model.eval()

    def from_code(degree: int) -> Estimate:  # the frames as training drew them, their codes, the states read back
        @torch.no_grad()
        def estimate(envs: list[gym.Env]) -> np.ndarray:
            frames = to_unit_float(torch.tensor(np.stack([render(env, None) for env in envs]), device=device))
            return readouts[degree](features(model.code_mean(frames).float().cpu().numpy(), degree))
        return estimate

    combinations = []
    for name, gains in CONTROLLERS.items():
        truth = closed_loop(config["env_id"], true_state, episodes, seed, gains)
        for degree in readouts:
            on_code = closed_loop(config["env_id"], from_code(degree), episodes, seed, gains)
            combinations.append({"controller": name, "readout_degree": degree, "mean_steps": float(np.mean(on_code)),
                                 "worst_steps": int(min(on_code)), "true_state_mean_steps": float(np.mean(truth)),
                                 "true_state_worst_steps": int(min(truth))})
    return {"episodes": episodes, "controllers": {name: list(gains) for name, gains in CONTROLLERS.items()},
            "readout_r2": r2, "combinations": combinations, "worst": worst_combination(combinations)}


def worst_combination(combinations: list[dict]) -> dict:
    """The one combination of controller and readout that balances least: the lowest mean, then the
    shortest episode. Its own numbers, never the lowest mean of one beside the worst episode of another."""
    return min(combinations, key=lambda c: (c["mean_steps"], c["worst_steps"]))
