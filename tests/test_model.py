"""MyVAE: shapes, the loss against its closed form, the reparameterization, checkpoints."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from conftest import train_config
from torch.distributions import Normal, kl_divergence

from MyVAE import MyVAE
from worldvae.checkpoints import CheckpointError, load_checkpoint, load_vae, save_checkpoint

SMALL = dict(latent_dim=4, hidden_dims=(8, 16, 16, 32, 32))


@pytest.mark.parametrize("img_size", [32, 64, 128])
@pytest.mark.parametrize("variational", [True, False])
def test_shapes_on_both_paths_and_sizes(img_size: int, variational: bool) -> None:
    model = MyVAE(img_size=img_size, variational=variational, **SMALL)
    x = torch.rand(3, 3, img_size, img_size)
    recon, x_out, mu, log_var = model(x)
    assert recon.shape == x.shape and x_out is x
    assert mu.shape == log_var.shape == (3, 4)
    encoded = model.encode(x)
    if variational:
        assert [t.shape for t in encoded] == [(3, 4), (3, 4)]
    else:
        assert encoded.shape == (3, 4) and torch.count_nonzero(log_var) == 0
    assert model.generate(torch.randn(5, 4)).shape == (5, 3, img_size, img_size)


def test_output_lies_in_unit_interval_like_the_data() -> None:
    model = MyVAE(**SMALL).eval()
    recon = model.reconstruct(torch.randn(4, 3, 64, 64) * 10)  # extreme inputs, not extreme outputs
    assert recon.min() >= 0 and recon.max() <= 1


def test_rejects_image_size_the_encoder_cannot_halve() -> None:
    with pytest.raises(ValueError, match="power of two"):
        MyVAE(img_size=48)
    with pytest.raises(ValueError, match="power of two"):
        MyVAE(img_size=16)  # five halvings need at least 32


def test_hidden_dims_of_the_caller_is_not_mutated() -> None:
    hidden = [8, 16, 16, 32, 32]
    MyVAE(hidden_dims=hidden, latent_dim=4)
    assert hidden == [8, 16, 16, 32, 32]


def test_kl_matches_closed_form_on_known_inputs() -> None:
    model = MyVAE(**SMALL)
    mu = torch.tensor([[1.0, 0.0, -2.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    log_var = torch.tensor([[0.0, 1.0, -1.0, 0.3], [0.0, 0.0, 0.0, 0.0]])
    x = torch.rand(2, 3, 64, 64)
    parts = model.loss(x, x, mu, log_var, kl_weight=0.1)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * log_var)), Normal(0.0, 1.0)).sum(dim=1).mean()
    assert parts["kl"].item() == pytest.approx(expected.item(), rel=1e-6)
    # by hand for the first row's first element: 0.5 * mu^2 = 0.5 nats; second row is exactly 0
    assert kl_divergence(Normal(1.0, 1.0), Normal(0.0, 1.0)).item() == pytest.approx(0.5)
    assert parts["recon"].item() == 0.0
    assert parts["loss"].item() == pytest.approx(0.1 * expected.item(), rel=1e-6)
    assert parts["kl"].item() > 0  # the sign the guide warns about


def test_a_kl_floor_frees_the_nats_below_it_and_reports_the_true_kl() -> None:
    model = MyVAE(**SMALL)
    x = torch.rand(2, 3, 64, 64)
    mu = torch.tensor([[0.5, 0.0, 2.0, 0.0], [0.5, 0.0, 2.0, 0.0]], requires_grad=True)  # KL 0.125, 0, 2, 0 nats
    log_var = torch.zeros(2, 4)
    parts = model.loss(x, x, mu, log_var, kl_weight=1.0, kl_floor=0.5)
    assert parts["kl"].item() == pytest.approx(2.125), "the true KL, for the logs"
    assert parts["loss"].item() == pytest.approx(0.5 + 0.5 + 2.0 + 0.5), "dimensions under the floor cost the floor"
    parts["loss"].backward()
    assert mu.grad[:, 0].abs().sum() == 0 and mu.grad[:, 2].abs().sum() > 0, "no push on a dimension under the floor"


def test_autoencoder_has_no_kl_term() -> None:
    model = MyVAE(variational=False, **SMALL)
    x = torch.rand(2, 3, 64, 64)
    parts = model.loss(*model(x), kl_weight=1.0)
    assert parts["kl"].item() == 0.0 and parts["loss"].item() == parts["recon"].item()


def test_gradients_reach_mu_and_log_var_through_reparameterization() -> None:
    torch.manual_seed(0)
    mu = torch.zeros(4, 3, requires_grad=True)
    log_var = torch.zeros(4, 3, requires_grad=True)
    z = MyVAE.reparameterize(mu, log_var)
    (z * torch.arange(1.0, 4.0)).sum().backward()
    assert torch.allclose(mu.grad, torch.arange(1.0, 4.0).expand(4, 3))
    eps = z.detach()  # with mu = 0 and sigma = 1, z is the noise itself
    assert torch.allclose(log_var.grad, 0.5 * eps * torch.arange(1.0, 4.0))
    assert log_var.grad.abs().sum() > 0


def test_eval_mode_is_deterministic_and_train_mode_samples() -> None:
    model = MyVAE(**SMALL)
    x = torch.rand(4, 3, 64, 64)
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])


def test_a_few_optimizer_steps_lower_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = MyVAE(**SMALL)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.ones(8, 3, 64, 64)  # white frames with a dark block, like a cart, in 8 places
    for i in range(8):
        x[i, :, 40:48, 6 * i : 6 * i + 8] = 0.0
    losses = []
    for _ in range(30):
        parts = model.loss(*model(x), kl_weight=5e-4)
        optimizer.zero_grad()
        parts["loss"].backward()
        optimizer.step()
        losses.append(parts["loss"].item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("variational", [True, False])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, variational: bool) -> None:
    model = MyVAE(variational=variational, img_size=32, **SMALL).eval()
    path = tmp_path / "vae.pt"
    config = vars(train_config(img_size=32, variational=variational, **SMALL))
    save_checkpoint(path, model, config=config)
    loaded = load_vae(path)
    x = torch.rand(2, 3, 32, 32)
    assert not loaded.training
    assert torch.equal(model(x)[0], loaded(x)[0])
    assert loaded.model_args == model.model_args
    assert load_checkpoint(path)["config"] == config
    assert [p.name for p in tmp_path.iterdir()] == ["vae.pt"], "no temporary file (.vae.pt.HOST-PID.RANDOM.tmp) left"


def test_missing_checkpoint_says_how_to_make_one(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="train_vae.py"):
        load_vae(tmp_path / "nope.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # random bytes may look like one
@pytest.mark.parametrize("content", [b"", os.urandom(256), pickle.dumps({"format": "something else"}, protocol=2)])
def test_files_that_are_not_checkpoints_are_refused(tmp_path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_vae(path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {_RunsCode.marker}",))


def test_pickle_with_code_is_refused_without_running_it(tmp_path) -> None:
    _RunsCode.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "MyVAE checkpoint v1", "payload": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_vae(path)
    assert not _RunsCode.marker.exists()


def test_weights_that_do_not_fit_the_model_description_are_refused(tmp_path) -> None:
    path = tmp_path / "vae.pt"
    save_checkpoint(path, MyVAE(img_size=32, **SMALL))
    checkpoint = load_checkpoint(path)
    checkpoint["model_args"]["latent_dim"] = 7
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="does not match"):
        load_vae(path)


def test_the_kl_floor_is_free_bits_per_dimension_as_its_words_say_not_world_models_floor_per_frame() -> None:
    import train_vae
    from worldvae import constants

    words = constants.knobs(train_vae)["KL_FLOOR"].help
    assert "per dimension" in words and "World Models used" not in words
    model = MyVAE(**SMALL)
    x = torch.rand(2, 3, 64, 64)
    mu = torch.tensor([[0.5, 0.0, 2.0, 0.0], [0.5, 0.0, 2.0, 0.0]])  # KL 0.125, 0, 2, 0 nats: 2.125 a frame
    parts = model.loss(x, x, mu, torch.zeros(2, 4), kl_weight=1.0, kl_floor=0.5)
    world_models = max(2.125, 0.5 * 4)  # a floor on each frame's total: 0.5 nats times the code's size
    assert parts["loss"].item() == pytest.approx(3.5) != pytest.approx(world_models)


@pytest.mark.parametrize("side", [32, 64])
def test_the_kl_weight_is_beta_against_a_per_pixel_mean_a_gaussian_decoder_whose_sigma_grows_with_the_frame(
        side: int) -> None:
    """As its words say: with the default KL_WEIGHT the loss is, up to a factor, the negative ELBO of a
    Gaussian decoder of the sigma the words give (0.25 at 64 px), twice that per doubling of the side.
    Sigma comes from the words, never from the weight, so a weight the words do not describe fails."""
    import re

    import train_vae
    from worldvae import constants

    words = re.search(r"sigma ([\d.]+) at (\d+) px", constants.knobs(train_vae)["KL_WEIGHT"].help)
    assert words, "KL_WEIGHT's comment gives the decoder's sigma"
    sigma = float(words[1]) * side / int(words[2])  # the same weight against a per-pixel mean: sigma grows with side
    weight, pixels = train_vae.KL_WEIGHT, 3 * side * side
    model = MyVAE(latent_dim=4, img_size=side, hidden_dims=(8, 8, 16, 16, 32))
    x, recon = torch.rand(2, 3, side, side), torch.rand(2, 3, side, side)
    mu, log_var = torch.randn(2, 4), torch.randn(2, 4) * 0.3
    parts = model.loss(recon, x, mu, log_var, kl_weight=weight)
    squared_error = ((recon - x) ** 2).flatten(1).sum(1).mean()
    # -ELBO = squared_error / (2 sigma^2) + KL, up to a constant that does not move the weights; times the
    # factor 2 sigma^2 / pixels, term by term (the KL's share is small beside the error's: checked on its own).
    # The words round sigma to two digits: its square is within 5%
    factor = 2 * sigma**2 / pixels
    assert parts["recon"].item() == pytest.approx(factor * squared_error.item() / (2 * sigma**2), rel=1e-5)
    assert (parts["loss"] - parts["recon"]).item() == pytest.approx(factor * parts["kl"].item(), rel=0.05)
