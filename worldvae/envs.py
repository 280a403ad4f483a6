"""What the code knows of each env family beyond what gymnasium tells, and making the env.

Each family (CartPole, Pendulum, Acrobot, MountainCar, CarRacing, ALE) has its pole angle
(for the angle filter), its crop, its episode reset, its intro to skip, its model defaults
and its collection policy; an unknown family keeps its full frame and has no angle.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import gymnasium as gym
import numpy as np

from worldvae import cli, policies
from worldvae.cli import UserError

CHUNK_FRAMES = 250  # frames per collection chunk: the unit of seeding and parallel work; episodes are cut there
_FULL_FRAME = (0.0, 1.0, 0.0, 1.0)
ENV_DEFAULTS = ("reset_after", "angle_range", "crop", "policy", "latent_dim", "hidden_dims", "epochs")  # None: env's


@dataclass(frozen=True)
class EnvKnowledge:
    """What the code knows about an env family beyond what gymnasium tells."""

    angle: Callable[[np.ndarray], float] | None = None  # the pole angle (rad) an observation holds
    angle_range: tuple[float, float] | None = None  # the frames kept by default; None keeps every angle
    crop: tuple[float, float, float, float] = _FULL_FRAME  # (top, bottom, left, right) fractions kept
    state_names: tuple[str, ...] = ()  # what each observation entry means
    reset_after: int = 20  # RESET_AFTER's default: observations before every episode is reset
    skip_first: int = 0  # observations at each episode's start that are never kept (an intro animation)
    latent_dim: int = 10  # LATENT_DIM's default
    epochs: int = 2  # EPOCHS' default
    hidden_dims: tuple[int, ...] = (8, 16, 32, 64, 128)  # HIDDEN_DIMS' default
    policy: str = "random"  # POLICY's default: how actions are drawn (policies.py)
    policies: tuple[str, ...] = ("random",)  # the POLICY values that make sense here


_ENVS = {
    "CartPole": EnvKnowledge(
        angle=lambda obs: obs[2],  # pole angle from vertical
        angle_range=(-0.3, 0.3),  # the task's filter; CartPole ends an episode past 0.2095 anyway
        policies=("random", "balancer"),
        crop=(0.4, 1.0, 0.0, 1.0),  # the cart runs in the lower part of the frame; the top is empty sky
        state_names=("cart position", "cart velocity", "pole angle", "pole angular velocity"),
    ),
    "Pendulum": EnvKnowledge(
        angle=lambda obs: np.arctan2(obs[1], obs[0]),  # obs = [cos, sin, velocity]; 0 is upright
        # no default filter: random torques rarely lift the pendulum, so +-0.3 would keep ~4% of frames
        state_names=("cos(angle)", "sin(angle)", "angular velocity"),
    ),
    "Acrobot": EnvKnowledge(
        angle=lambda obs: np.arctan2(obs[1], obs[0]),  # first link; obs starts [cos, sin]; 0 hangs down
        # no default filter: +-0.3 would keep only the hanging-down frames
        state_names=("cos(link 1)", "sin(link 1)", "cos(link 2)", "sin(link 2)", "link 1 velocity", "link 2 velocity"),
    ),
    "MountainCar": EnvKnowledge(state_names=("position", "velocity")),
    # World Models' car: its 96x96 observation is the frame; the bottom 12 rows are a status bar
    "CarRacing": EnvKnowledge(
        crop=(0.0, 84 / 96, 0.0, 1.0),
        reset_after=300,  # the first 50 observations zoom in on the car: 20 would show nothing else
        skip_first=50,
        latent_dim=32,  # as World Models
        # measured on 2 cores (docs/carracing-atari.md): twice CartPole's channels and 3 epochs kept the road
        # (IoU 0.96) at a lower MSE than 4 epochs of CartPole's widths; the last two layers at 64, not 128 and
        # 256, kept the three fixed drivers' MSE under 0.0008 and the run, collection included, under 10
        # minutes; of the drivers it never trained on, the racer's fast frames are not there yet (the page's table)
        epochs=3,
        hidden_dims=(16, 32, 64, 64, 64),
        # a controller in training drives off the road, spins and crosses the track, carefully or not: a
        # family of drivers, not one
        policy="drivers",
        policies=("drivers", "mixed", "driver", "brownian", "random"),
    ),
    # Atari: frameskip as the env defines it (v5: 4), no angle; episodes as long as a collection chunk holds
    "ALE": EnvKnowledge(reset_after=CHUNK_FRAMES),
}


def env_family(env_id: str) -> str:
    """'CartPole-v1' -> 'CartPole', 'ALE/Pong-v5' -> 'ALE' (the part that decides crop, angle, ...)."""
    return "ALE" if env_id.startswith("ALE/") else env_id.split("/")[-1].split("-v")[0]


def knowledge(env_id: str) -> EnvKnowledge:
    """What we know of the env's family; an unknown family has no angle and keeps its full frame."""
    return _ENVS.get(env_family(env_id), EnvKnowledge())


def resolve_env_defaults(cfg: SimpleNamespace) -> SimpleNamespace:
    """Replace, in place, every constant left at None that means "the env's own" by that env's value, once, when
    a run's constants are read (config.json then records what the run used): LATENT_DIM, EPOCHS, HIDDEN_DIMS,
    CROP, POLICY, RESET_AFTER (for a policy that runs whole episodes, the balancer, as many observations as a
    collection chunk keeps: the env ends them) and ANGLE_RANGE ("all" where the env filters no angle). A value
    set by hand stays as it is, for validation to judge; so does a None whose env default depends on one that
    cannot be (an unknown POLICY). Older configs, written before this, are read through it too."""
    known = knowledge(cfg.env_id)
    for name in ("latent_dim", "epochs", "hidden_dims", "crop", "policy"):
        if getattr(cfg, name) is None:
            setattr(cfg, name, getattr(known, name))
    if cfg.reset_after is None and cfg.policy in policies.POLICIES:
        whole = policies.POLICIES[cfg.policy].runs_whole_episodes
        cfg.reset_after = CHUNK_FRAMES + known.skip_first if whole else known.reset_after
    if cfg.angle_range is None:
        cfg.angle_range = known.angle_range or "all"
    return cfg


def resolved_config(config: dict) -> dict:
    """A run's recorded constants with the env's own values filled in: a run recorded before they were
    resolved at its start (or before POLICY existed) has None there."""
    return vars(resolve_env_defaults(SimpleNamespace(**({"policy": None} | config))))


def env_defaults_line(cfg: SimpleNamespace) -> str:
    """The values of the constants whose None means the env's own, as the run took them: what it prints."""
    return f"{cfg.env_id}: " + ", ".join(f"{name.upper()}={getattr(cfg, name)!r}" for name in ENV_DEFAULTS)


def envs_with_an_angle() -> list[str]:
    return [family for family, known in _ENVS.items() if known.angle is not None]


def state_names(env_id: str, n: int) -> list[str]:
    """A name for each of the n observation entries."""
    names = knowledge(env_id).state_names
    return [names[i] if i < len(names) else f"state {i}" for i in range(n)]


def make_env(env_id: str, seed: int) -> gym.Env:
    """The env rendering off-screen, its action sampler seeded."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # rgb_array needs no window
    if env_id.startswith("ALE/"):
        try:
            import ale_py
        except ImportError:
            raise UserError(f"ENV_ID={env_id!r} needs ale-py: pip install -r requirements-envs.txt") from None
        gym.register_envs(ale_py)
    try:
        with warnings.catch_warnings():  # gymnasium only warns about a missing render mode; we refuse below
            warnings.filterwarnings("ignore", message=".*render_mode")
            env = gym.make(env_id, render_mode="rgb_array")
    except gym.error.DependencyNotInstalled as error:
        raise UserError(f"ENV_ID={env_id!r} needs a package that is not installed ({cli.reason(error)}): "
                        "pip install -r requirements-envs.txt") from None
    except gym.error.Error as error:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UserError(f"ENV_ID={env_id!r} cannot be made ({error}){hint}") from None
    if "rgb_array" not in env.metadata.get("render_modes", []):
        env.close()
        raise UserError(f"ENV_ID={env_id!r} cannot render rgb_array frames; pick a classic-control env")
    space = env.observation_space
    if not (isinstance(space, gym.spaces.Box) and (len(space.shape) == 1 or observes_images(env))):
        env.close()
        raise UserError(f"ENV_ID={env_id!r} observes {space}: neither a vector of numbers (stored beside each "
                        "frame) nor an RGB image (the frame itself); pick a classic-control, CarRacing or ALE env")
    if not isinstance(env.action_space, (gym.spaces.Box, gym.spaces.Discrete)):
        env.close()
        raise UserError(f"ENV_ID={env_id!r} acts in {env.action_space}, which the dataset cannot record")
    env.action_space.seed(seed)
    return env


def observes_images(env: gym.Env) -> bool:
    """An env whose observation is an (H, W, 3) image: that image is the frame, and there is no state vector."""
    shape = env.observation_space.shape or ()
    return len(shape) == 3 and shape[2] == 3


def pole_angle(env_id: str, obs: np.ndarray) -> float | None:
    """The pole angle (rad) an observation holds, or None for an env without one."""
    angle_of = knowledge(env_id).angle
    return None if angle_of is None else float(angle_of(obs))


def passes_angle_filter(env_id: str, angle_range: tuple[float, float] | str, obs: np.ndarray) -> bool:
    """Filter (2): ANGLE_RANGE "all", or the pole angle of `obs` lies in [low, high], both ends included and
    read at the observation's own precision (CartPole's float32 angle 0.3 is 0.30000001: it is kept)."""
    if angle_range == "all":
        return True
    low, high = (float(np.asarray(end, dtype=obs.dtype)) for end in angle_range)
    return low <= pole_angle(env_id, obs) <= high

