"""A convolutional (variational) autoencoder for small RGB frames, and its loss.

Run `python MyVAE.py` for a self-check: a random batch through both paths. This file
imports nothing else from the repo: checkpoints.py saves and rebuilds the model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class VAEOutput(NamedTuple):
    """What forward returns, in the homework's order (so `recon, x, mu, log_var = model(x)` and
    `model.loss(*model(x), ...)` work as they always did), each part with its name."""

    recon: Tensor  # the reconstruction, in [0, 1]
    x: Tensor  # the input, echoed back
    mu: Tensor  # the code: the mean of q(z|x) (an autoencoder's code itself)
    log_var: Tensor  # the log-variance of q(z|x) (zeros for an autoencoder)


class MyVAE(nn.Module):
    """Conv encoder -> latent code -> mirrored transposed-conv decoder, outputs in [0, 1].

    With `variational=True` the encoder gives a diagonal Gaussian q(z|x) and training
    samples from it through the reparameterization trick; with `variational=False` it is
    a plain autoencoder whose code is a single point.
    """

    def __init__(
        self,
        in_channels: int = 3,
        latent_dim: int = 10,
        hidden_dims: Sequence[int] = (32, 64, 128, 256, 512),
        variational: bool = True,
        img_size: int = 64,
    ) -> None:
        super().__init__()
        hidden_dims = list(hidden_dims)  # a copy: the caller's sequence is never touched
        n_down = len(hidden_dims)
        if img_size < 2**n_down or img_size & (img_size - 1):
            raise ValueError(
                f"img_size must be a power of two >= 2**len(hidden_dims) = {2**n_down}, got {img_size}"
            )
        self.model_args = dict(
            in_channels=in_channels,
            latent_dim=latent_dim,
            hidden_dims=hidden_dims,
            variational=variational,
            img_size=img_size,
        )
        self.latent_dim = latent_dim
        self.variational = variational
        self.feature_size = img_size // 2**n_down  # side of the encoder's last feature map
        self.feature_shape = (hidden_dims[-1], self.feature_size, self.feature_size)
        flat = hidden_dims[-1] * self.feature_size**2

        channels = [in_channels, *hidden_dims]
        self.encoder = nn.Sequential(
            *(_down(c_in, c_out) for c_in, c_out in zip(channels[:-1], channels[1:], strict=True))
        )
        if variational:
            self.z_mu = nn.Linear(flat, latent_dim)
            self.z_var = nn.Linear(flat, latent_dim)  # gives log-variance, named as in the homework
        else:
            self.z_simple = nn.Linear(flat, latent_dim)

        self.decoder_input = nn.Linear(latent_dim, flat)
        up = hidden_dims[::-1]
        self.decoder = nn.Sequential(*(_up(c_in, c_out) for c_in, c_out in zip(up[:-1], up[1:], strict=True)))
        self.final_layer = nn.Sequential(
            _up(up[-1], up[-1]),
            nn.Conv2d(up[-1], in_channels, kernel_size=3, padding=1),
            nn.Sigmoid(),  # the data lies in [0, 1], so must the reconstruction
        )

    def encode(self, x: Tensor) -> list[Tensor] | Tensor:
        """[mu, log_var] on the VAE path, the code z on the AE path."""
        h = torch.flatten(self.encoder(x), start_dim=1)
        if self.variational:
            return [self.z_mu(h), self.z_var(h)]
        return self.z_simple(h)

    def code_mean(self, x: Tensor) -> Tensor:
        """The code a frame gets without sampling: the mean of q(z|x), or the autoencoder's code."""
        code = self.encode(x)
        return code[0] if self.variational else code

    def decode(self, z: Tensor) -> Tensor:
        h = self.decoder_input(z).view(-1, *self.feature_shape)
        return self.final_layer(self.decoder(h))

    @staticmethod
    def reparameterize(mu: Tensor, log_var: Tensor) -> Tensor:
        """z = mu + sigma * eps: the noise is an input, so gradients reach mu and log_var."""
        eps = torch.randn_like(mu)
        return eps * torch.exp(0.5 * log_var) + mu

    def forward(self, x: Tensor, sample: bool | None = None) -> VAEOutput:
        """(recon, x, mu, log_var). The VAE decodes a code sampled from q(z|x) in training mode and mu in
        eval mode (so a reconstruction is deterministic), unless `sample` says which."""
        if self.variational:
            mu, log_var = self.encode(x)
            z = self.reparameterize(mu, log_var) if (self.training if sample is None else sample) else mu
        else:
            mu = z = self.encode(x)
            log_var = torch.zeros_like(mu)
        return VAEOutput(self.decode(z), x, mu, log_var)

    def loss(
        self, recon: Tensor, x: Tensor, mu: Tensor, log_var: Tensor, kl_weight: float, kl_floor: float = 0.0
    ) -> dict[str, Tensor]:
        """Total loss and its parts: per-pixel MSE, and KL in nats per frame.

        KL(N(mu, sigma^2) || N(0, I)) in closed form (Kingma & Welling 2014, Appendix B),
        summed over latent dimensions and averaged over the batch. The AE has no KL term.
        `kl_floor` (free bits, Kingma et al. 2016, per dimension): a dimension's batch-mean KL below
        this many nats costs nothing, so the loss does not squeeze it to zero; the "kl" part
        reported is the true KL either way. (World Models floors each frame's total KL instead, at
        0.5 nats times the code's size.)

        The MSE is a mean over pixels, so `kl_weight` is beta against a per-pixel error: as a Gaussian
        decoder, sigma^2 = kl_weight * (pixels * channels) / 2, which the same weight doubles
        (sigma) with each doubling of the frame's side: 0.25 at 64 px and 1e-5, 0.5 at 128 px.
        """
        recon_loss = F.mse_loss(recon.float(), x.float())
        if not self.variational:
            return {"loss": recon_loss, "recon": recon_loss, "kl": torch.zeros_like(recon_loss)}
        per_dim = kl_per_dim(mu.float(), log_var.float()).mean(dim=0)
        penalized = per_dim.clamp(min=kl_floor).sum() if kl_floor > 0 else per_dim.sum()
        return {"loss": recon_loss + kl_weight * penalized, "recon": recon_loss, "kl": per_dim.sum()}

    @torch.no_grad()
    def generate(self, z: Tensor) -> Tensor:
        """Decode the codes z into frames, in eval mode whatever mode the model is in (a batch of
        samples must neither use nor update BatchNorm's running statistics); the mode is restored."""
        with _evaluating(self):
            return self.decode(z.to(next(self.parameters()).device))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Encode and decode x from the code's mean, in eval mode (so twice the same frame gives the
        same picture); the mode is restored."""
        with _evaluating(self):
            return self.forward(x).recon


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """The model in eval mode for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def kl_per_dim(mu: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mu, exp(log_var)) || N(0, 1)) for each element, in nats."""
    return -0.5 * (1 + log_var - mu.pow(2) - log_var.exp())


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(),
    )


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, kernel_size=3, stride=2, padding=1, output_padding=1),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(),
    )


def _self_check() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 3, 64, 64)
    for variational in (True, False):
        model = MyVAE(variational=variational)
        recon, _, mu, log_var = model(x)
        parts = model.loss(recon, x, mu, log_var, kl_weight=5e-4)
        n_params = sum(p.numel() for p in model.parameters())
        print(
            f"{'VAE' if variational else 'AE '}: input {tuple(x.shape)} -> latent {tuple(mu.shape)} "
            f"-> output {tuple(recon.shape)}, {n_params:,} parameters, "
            + ", ".join(f"{k} {v.item():.4f}" for k, v in parts.items())
        )
    print("decoded from z ~ N(0, I):", tuple(model.generate(torch.randn(2, model.latent_dim)).shape))


if __name__ == "__main__":
    _self_check()
