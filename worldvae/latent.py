"""A Gymnasium wrapper whose observation is the trained VAE's code of the frame: what the memory
(an MDN-RNN) and the controller of a world model read.

    import gymnasium as gym
    from worldvae.latent import LatentObservation

    env = LatentObservation(gym.make("CarRacing-v3"), "outputs/car/vae.pt")
    z, info = env.reset(seed=0)  # z: float32 (LATENT_DIM,), the mean of q(z|frame)

Each observation becomes a frame exactly as the training frames were made (the run's crop,
size and renderer: the image observation itself, or the env's rgb_array render for classic
control), then is encoded alone (the encoder only: nothing is decoded), in eval mode, on the
checkpoint's DEVICE.

CarRacing's first 50 observations zoom in on the car, and collection never keeps them (envs.py's
`skip_first`): the wrapper still encodes them, so a controller gets, at the start of every episode,
codes of frames unlike any the model trained on. Act on them as on noise (World Models' agents
take no decision there), or step past them before acting.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldvae import envs, rendering
from worldvae.checkpoints import build_vae, load_checkpoint, run_config
from worldvae.cli import UserError
from worldvae.compute import pick_device, to_unit_float

CODES = ("mu", "mu_log_var")  # what an observation holds: the code's mean, or its mean and log-variance


class LatentObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """`env` observed through the VAE saved at `checkpoint`: each observation is the code of its frame.

    code="mu" (the default) gives the mean of q(z|frame), (LATENT_DIM,) float32; code="mu_log_var"
    gives the mean and the log-variance side by side, (2 * LATENT_DIM,), and only for a VAE: an
    autoencoder's code has no variance. `device` overrides the
    checkpoint's DEVICE. A classic-control env must be made with render_mode="rgb_array", since its
    frames are renders.
    """

    def __init__(self, env: gym.Env, checkpoint: str | Path, code: str = "mu", device: str | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, checkpoint=str(checkpoint), code=code, device=device)
        gym.ObservationWrapper.__init__(self, env)
        if code not in CODES:
            raise UserError(f"code must be one of {', '.join(CODES)}, got {code!r}")
        if multiprocessing.parent_process() is not None:  # a vector env's worker (AsyncVectorEnv), forked or spawned
            # one thread, before anything parallel runs (reading the checkpoint builds a model): a pool the parent
            # started does not survive fork (the child's first parallel op would wait forever), and N workers of N
            # threads each would only fight over the cores; one frame at a time needs no more
            torch.set_num_threads(1)
        saved = load_checkpoint(checkpoint)
        config = run_config(saved, checkpoint)
        env_id = env.spec.id if env.spec is not None else "an unregistered env"
        if env_id != config["env_id"]:
            raise UserError(f"{checkpoint} was trained on {config['env_id']} frames, not {env_id}'s: use a checkpoint "
                            f"trained with --env_id {env_id}")
        if not envs.observes_images(env) and env.render_mode != "rgb_array":
            raise UserError(f"{env_id} is drawn from its render: make it with gym.make({env_id!r}, "
                            "render_mode=\"rgb_array\")")
        self.device = pick_device(device or config["device"])
        self.model = build_vae(saved, self.device)
        if code == "mu_log_var" and not self.model.variational:
            raise UserError(f"{checkpoint} is an autoencoder, whose code has no variance: use code=\"mu\"")
        self.code = code
        self._render = rendering.frame_renderer(env, config["crop"], config["img_size"], config["fast_render"])
        size = self.model.latent_dim * (2 if code == "mu_log_var" else 1)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)

    def frame(self, observation: Any) -> np.ndarray:
        """The (3, IMG_SIZE, IMG_SIZE) uint8 frame this observation makes, as training saw it."""
        return self._render(self.env, observation)

    @torch.no_grad()
    def observation(self, observation: Any) -> np.ndarray:
        frame = torch.tensor(self.frame(observation)[None], device=self.device)  # a copy: a render may be read-only
        x = to_unit_float(frame)  # one frame, in eval mode: no batch statistics, no sampling
        parts = [self.model.code_mean(x)] if self.code == "mu" else self.model.encode(x)
        return torch.cat(parts, dim=1)[0].float().cpu().numpy()
