"""How actions are drawn while frames are collected: a policy per name, for the POLICY constant.

A policy's frames are what the model learns to see, so it decides what a controller trained
on the codes will meet: the homework's uniform random actions keep CartPole's cart near the
centre; a controller drives it along the track. Every random draw comes from the env's own
action-space generator, seeded per collection chunk, so a chunk's frames depend on its seed
alone; what a policy keeps between steps lives on the policy, which a chunk makes anew.

    random    uniform random actions (the homework's): any env
    balancer  CartPole: a linear balancing controller steering the cart to a target that jumps
              now and then, with random actions mixed in at a rate drawn per episode
    driver    CarRacing: steers toward the track ahead, with slow random steering noise
    brownian  CarRacing: brownian random steering with fast gas: off the road, spinning, on grass
    drivers   CarRacing: each episode a driver drawn from a family (how it steers, its gas, its brakes)
    mixed     CarRacing: each episode one of driver, brownian and random, drawn at random
    prober    CartPole: the control check's own driver (control.py), never the training frames'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

BALANCER_GAINS = (0.5, 1.0, 10.0, 2.0)  # push right when this . (x - target, x_dot, theta, theta_dot) > 0
_LOOK_AHEAD_TILES = 6  # the driver steers toward the track this far ahead


class Policy:
    """Draws an action from the env's state; `start` is called when an episode starts."""

    name: ClassVar[str] = "random"
    runs_whole_episodes: ClassVar[bool] = False  # episodes run until the env (or a chunk) ends them

    def start(self, env: gym.Env) -> None:
        """A new episode begins (after env.reset)."""

    def __call__(self, env: gym.Env) -> Any:
        return env.action_space.sample()

    def params(self) -> dict:
        """What decides its actions besides the seed: recorded with the frames it made."""
        return {}


class Balancer(Policy):
    """CartPole kept up by a linear controller, which drives the cart toward a target position that
    jumps, now and then, anywhere on the track; random actions replace its own at a rate drawn
    per episode from RANDOM_RATE. The cart travels the track and the pole sways, unlike under
    random actions, where an episode ends within a few dozen steps near the centre."""

    name = "balancer"
    runs_whole_episodes = True
    RANDOM_RATE = (0.0, 0.6)  # per episode: the share of steps whose action is uniform random
    TARGET_JUMPS = 0.02  # per step: the chance that the target moves
    TARGET_RANGE = 1.5  # the target lies in +-this (the track ends at +-2.4)

    def start(self, env: gym.Env) -> None:
        rng = env.action_space.np_random
        self.random_rate, self.target = float(rng.uniform(*self.RANDOM_RATE)), 0.0

    def __call__(self, env: gym.Env) -> int:
        rng = env.action_space.np_random
        self.move_target(rng)
        if rng.random() < self.random_rate:
            return int(rng.integers(2))
        return balancing_action(np.asarray(env.unwrapped.state), self.target)

    def move_target(self, rng: np.random.Generator) -> None:
        """Now and then (TARGET_JUMPS), the target jumps anywhere in +-TARGET_RANGE."""
        if rng.random() < self.TARGET_JUMPS:
            self.target = float(rng.uniform(-self.TARGET_RANGE, self.TARGET_RANGE))

    def params(self) -> dict:
        return {"gains": list(BALANCER_GAINS), "random_rate": list(self.RANDOM_RATE),
                "target_jumps": self.TARGET_JUMPS, "target_range": self.TARGET_RANGE}


def balancing_action(state: np.ndarray, target: float = 0.0, gains: tuple[float, ...] = BALANCER_GAINS) -> int:
    """CartPole's fixed linear controller: push right (1) when the gains' sum says so. From the true
    state it balances CartPole-v1 for all its 500 steps (so do control.CONTROLLERS' other gains)."""
    x, x_dot, theta, theta_dot = state
    return int(np.dot(gains, (x - target, x_dot, theta, theta_dot)) > 0)


class Prober(Balancer):
    """The control check's own driver (control.py), which no POLICY names, so no training frames come
    from it: the fixed controller with half its actions random, its target sweeping the track back and
    forth, so the cart visits all of it."""

    name = "prober"
    RANDOM_RATE = (0.5, 0.5)

    def start(self, env: gym.Env) -> None:
        super().start(env)
        self.phase, self.step = float(env.action_space.np_random.uniform(0, 2 * np.pi)), 0

    def move_target(self, rng: np.random.Generator) -> None:
        """The target sweeps +-TARGET_RANGE, one period in about 250 steps."""
        self.step += 1
        self.target = self.TARGET_RANGE * float(np.sin(self.phase + self.step / 40))


@dataclass(frozen=True)
class Steering:
    """A CarRacing driver's character: how it steers, how much gas it gives, how often it brakes."""

    follow: float  # gain of its steering toward the track ahead; 0 drives blind
    persistence: float  # the share of its random steering kept from one step to the next
    noise: float  # the spread of each step's new random steering
    gas: float  # gas while below top_speed
    top_speed: float  # no gas at this speed or above (inf: no limit)
    brake_rate: float  # the chance, each step, that it brakes (BRAKE) instead of giving gas


BRAKE = 0.8  # how hard a driver brakes


class Driver(Policy):
    """CarRacing driven by one `Steering`: steering toward the track a few tiles ahead (`follow`) plus
    mean-reverting random steering noise (the "brownian" policies World Models users drove with),
    gas up to a top speed, and a brake now and then. The class's own is the careful driver: slow
    enough to stay near the road, so every frame shows road under the car."""

    name = "driver"
    STEERING = Steering(follow=2.0, persistence=0.9, noise=0.25, gas=0.3, top_speed=40.0, brake_rate=0.0)

    def __init__(self, steering: Steering | None = None) -> None:
        self.steering = steering or self.STEERING

    def start(self, env: gym.Env) -> None:
        self.noise = 0.0

    def __call__(self, env: gym.Env) -> np.ndarray:
        s, car_racing, rng = self.steering, env.unwrapped, env.action_space.np_random
        self.noise = float(np.clip(s.persistence * self.noise + rng.normal(0.0, s.noise), -1.0, 1.0))
        steer = self.noise - s.follow * heading_error(car_racing) if s.follow else self.noise
        braking = s.brake_rate > 0 and rng.random() < s.brake_rate  # no draw for a driver that never brakes
        speed = float(np.linalg.norm(car_racing.car.hull.linearVelocity))
        gas = s.gas if speed < s.top_speed and not braking else 0.0
        return np.array([np.clip(steer, -1.0, 1.0), gas, BRAKE if braking else 0.0], dtype=np.float32)

    def params(self) -> dict:
        return {"look_ahead_tiles": _LOOK_AHEAD_TILES, "brake": BRAKE} | asdict(self.steering)


def heading_error(car_racing: gym.Env) -> float:
    """The angle (rad, in -pi .. pi) from the car's heading to the track _LOOK_AHEAD_TILES ahead of its
    nearest tile."""
    x, y = car_racing.car.hull.position
    heading = car_racing.car.hull.angle + np.pi / 2
    track = np.array([(tile[2], tile[3]) for tile in car_racing.track])
    nearest = int(np.argmin(((track - (x, y)) ** 2).sum(1)))
    ahead_x, ahead_y = track[(nearest + _LOOK_AHEAD_TILES) % len(track)]
    return float((np.arctan2(ahead_y - y, ahead_x - x) - heading + np.pi) % (2 * np.pi) - np.pi)


class Brownian(Driver):
    """CarRacing driven blind: steering that wanders (slowly mean-reverting random noise, so it turns
    hard one way, then the other) with full gas and no brakes, so the car leaves the road, spins on the
    grass and crosses the track: the frames a learning controller sees early on."""

    name = "brownian"
    STEERING = Steering(follow=0.0, persistence=0.95, noise=0.3, gas=1.0, top_speed=math.inf, brake_rate=0.0)


class Drivers(Driver):
    """CarRacing: each episode, a driver whose `Steering` is drawn from RANGES (uniform in each), blind in
    BLIND of them: careful and reckless, on the road, at its edges, off it and across it. A learning
    controller moves through a family of behaviours; three fixed drivers would be three points of it.
    evaluate_vae.py scores drivers from outside these ranges (HELD_OUT) beside the fixed ones."""

    name = "drivers"
    RANGES = {"follow": (0.5, 3.0), "persistence": (0.75, 0.97), "noise": (0.1, 0.4), "gas": (0.2, 1.0),
              "top_speed": (30.0, 120.0), "brake_rate": (0.0, 0.1)}
    BLIND = 0.4  # the share of episodes whose driver never looks at the track (follow 0)

    def start(self, env: gym.Env) -> None:
        rng = env.action_space.np_random
        drawn = {name: float(rng.uniform(low, high)) for name, (low, high) in self.RANGES.items()}
        self.steering = Steering(**(drawn | ({"follow": 0.0} if rng.random() < self.BLIND else {})))
        super().start(env)

    def params(self) -> dict:
        return {"look_ahead_tiles": _LOOK_AHEAD_TILES, "brake": BRAKE, "blind": self.BLIND,
                "ranges": {name: list(bounds) for name, bounds in self.RANGES.items()}}


# drivers from outside Drivers.RANGES, that no collection drives: what evaluate_vae.py checks a model on
HELD_OUT = {
    "jittery": Steering(follow=0.0, persistence=0.5, noise=0.6, gas=0.65, top_speed=math.inf, brake_rate=0.0),
    "racer": Steering(follow=4.5, persistence=0.9, noise=0.05, gas=1.0, top_speed=math.inf, brake_rate=0.0),
    "braker": Steering(follow=1.5, persistence=0.9, noise=0.25, gas=1.0, top_speed=math.inf, brake_rate=0.25),
}


class Mixed(Policy):
    """Each episode, one of the driver, the brownian driver and uniform random actions, drawn at
    random with SHARES: road under the car, off the road and across it, in one dataset."""

    name = "mixed"
    # the driver's frames (curves, the track's edges) are the hardest to reconstruct, a random
    # policy's (a car that barely moves) the easiest: they get the most episodes and the fewest
    SHARES = (0.5, 0.35, 0.15)

    def __init__(self) -> None:
        self.choices = (Driver(), Brownian(), Policy())
        self.current: Policy = self.choices[0]

    def start(self, env: gym.Env) -> None:
        self.current = self.choices[int(env.action_space.np_random.choice(len(self.choices), p=self.SHARES))]
        self.current.start(env)

    def __call__(self, env: gym.Env) -> Any:
        return self.current(env)

    def params(self) -> dict:
        return {choice.name: choice.params() | {"share": share} for choice, share in zip(self.choices, self.SHARES,
                                                                                       strict=True)}


POLICIES: dict[str, type[Policy]] = {cls.name: cls for cls in (Policy, Balancer, Prober, Driver, Brownian, Drivers,
                                                                Mixed)}


def make_policy(name: str) -> Policy:
    """The policy POLICY names, or a held-out driver (HELD_OUT) for evaluate_vae.py's fresh frames."""
    return Driver(HELD_OUT[name]) if name in HELD_OUT else POLICIES[name]()
