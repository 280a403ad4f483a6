"""The checkpoint format: what a .pt file holds, how it is written safely and read back.

A checkpoint is a dict of plain types: `format`, `model_args` (MyVAE's constructor
arguments), `model` (the state_dict) and whatever the writer adds: `config` (the
constants of the run), `prior` in vae.pt (the mixture its samples are drawn from, prior.py),
and for last.pt the optimizer, progress and random states.
Files are read with `weights_only=True`, so loading one never runs code, and validated once, as
they are read: a model that fits its description, a prior and a config the code can use. A damaged
or edited file is refused there, in one line, before any script makes a folder or spends a minute.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from MyVAE import MyVAE
from worldvae import envs, files
from worldvae.cli import UserError, reason

CHECKPOINT_FORMAT = "MyVAE checkpoint v1"


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable or does not fit the model it describes."""


def save_checkpoint(path: str | Path, model: MyVAE, **extra: Any) -> None:
    """Write weights, constructor arguments and `extra` (config, optimizer, ...) atomically."""
    write_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model_args": model.model_args, "model": model.state_dict(),
                            **extra})


def write_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write a checkpoint dict atomically: serialized first, so a full disk is a plain OSError on write,
    not torch's zip error, and a crash leaves the old file whole."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    files.atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def save_compact(path: str | Path, checkpoint: dict[str, Any], scores: dict[str, Any]) -> None:
    """A checkpoint to ship (pretrained/): the weights in float16 (half the bytes; they load into the
    float32 model as they are), its model description, its run's config and fitted prior, and what it scored."""
    weights = {key: value.half() if value.is_floating_point() else value for key, value in checkpoint["model"].items()}
    write_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model_args": checkpoint["model_args"], "model": weights,
                            "config": checkpoint["config"], "scores": scores}
                     | ({"prior": checkpoint["prior"]} if "prior" in checkpoint else {}))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with weights_only=True and validated (its model, prior and config);
    CheckpointError naming the file and what is wrong if it is not one this code can use."""
    path = Path(path)
    if not files.is_file(path, "CHECKPOINT"):
        raise CheckpointError(f"no checkpoint at {path}: train one first with `python train_vae.py`")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason(error)})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} file")
    build_vae(checkpoint, path=path)
    problem = prior_problem(checkpoint["prior"], checkpoint["model_args"]["latent_dim"]) if "prior" in checkpoint \
        else None
    problem = problem or (config_problem(checkpoint["config"], checkpoint["model_args"]) if "config" in checkpoint
                          else None)
    if problem:
        raise CheckpointError(f"{path}: {problem}: the file was damaged or edited; use the checkpoint as "
                              "train_vae.py wrote it, or train it again")
    return checkpoint


def prior_problem(prior: object, latent_dim: int) -> str | None:
    """What makes a stored prior (prior.py's mixture: weights (K,), means (K, D), Cholesky factors
    (K, D, D)) unusable for codes of `latent_dim`, or None."""
    parts = ("weights", "means", "scale_tril")
    if not isinstance(prior, dict) or set(prior) != set(parts):
        return f"its prior is not a mixture of {', '.join(parts)}"
    if not all(isinstance(prior[name], torch.Tensor) and prior[name].is_floating_point() for name in parts):
        return "its prior holds something other than tensors of numbers"
    weights, means, tril = (prior[name].double() for name in parts)
    k = len(weights)
    if weights.shape != (k,) or k < 1 or means.shape != (k, latent_dim) or tril.shape != (k, latent_dim, latent_dim):
        return (f"its prior has shapes {[tuple(prior[name].shape) for name in parts]}, not (K,), (K, {latent_dim}) "
                f"and (K, {latent_dim}, {latent_dim}) for the model's {latent_dim}-dimensional codes")
    if not all(torch.isfinite(part).all() for part in (weights, means, tril)):
        return "its prior holds values that are not finite"
    if (weights < 0).any() or abs(float(weights.sum()) - 1) > 1e-3:
        return f"its prior's weights are not a distribution (they sum to {float(weights.sum()):.4g})"
    if (tril.triu(1) != 0).any() or (tril.diagonal(dim1=1, dim2=2) <= 0).any():
        return "its prior's covariance factors are not lower-triangular with a positive diagonal"
    return None


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fractions(value: object, n: int) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == n and all(_number(v) for v in value)


# what each constant of a run's recorded config must be for the code that reads it (collection, the split,
# the wrapper, the control check); the model's own constants are checked against its description
_CONFIG: dict[str, tuple[Callable[[Any], bool], str]] = {
    "env_id": (lambda v: isinstance(v, str) and v.strip() != "", "an env id"),
    "n_frames": (lambda v: _whole(v) and v >= 1, "a whole number of at least 1"),
    "shard_frames": (lambda v: _whole(v) and v >= envs.CHUNK_FRAMES and v % envs.CHUNK_FRAMES == 0,
                     f"a multiple of {envs.CHUNK_FRAMES}"),
    "seed": (lambda v: _whole(v) and 0 <= v < 2**32, "a seed in 0 .. 2**32 - 1"),
    "img_size": (lambda v: _whole(v) and v >= 32 and v & (v - 1) == 0, "a power of two of at least 32"),
    "val_fraction": (lambda v: _number(v) and 0 < v < 1, "a number strictly between 0 and 1"),
    "max_steps_per_frame": (lambda v: _whole(v) and v >= 1, "a whole number of at least 1"),
    "n_envs": (lambda v: _whole(v) and v >= 0, "a whole number of at least 0"),
    "reset_after": (lambda v: v is None or (_whole(v) and v >= 1), "a whole number of at least 1, or None"),
    "angle_range": (lambda v: v in (None, "all") or (_fractions(v, 2) and v[0] < v[1]),
                    "(low, high) with low < high, \"all\" or None"),
    "crop": (lambda v: v is None or (_fractions(v, 4) and 0 <= v[0] < v[1] <= 1 and 0 <= v[2] < v[3] <= 1),
             "(top, bottom, left, right) fractions, or None"),
    "policy": (lambda v: v is None or isinstance(v, str), "a policy's name, or None"),
    "fast_render": (lambda v: isinstance(v, bool), "True or False"),
    "variational": (lambda v: isinstance(v, bool), "True or False"),
    "kl_weight": (lambda v: _number(v) and v >= 0, "a number of at least 0"),
    "out_dir": (lambda v: isinstance(v, str), "a folder"),
}


def config_problem(config: object, model_args: dict[str, Any]) -> str | None:
    """What makes a run's recorded config unusable, or unlike the model it was saved with, or None."""
    if not isinstance(config, dict):
        return "its config is not a table of constants"
    missing = [name.upper() for name in _CONFIG if name not in config and name != "policy"]  # older runs: none
    if missing:
        return f"its config lacks {', '.join(missing)}"
    wrong = [f"{name.upper()}={config[name]!r} (must be {what})" for name, (ok, what) in _CONFIG.items()
             if name in config and not ok(config[name])]
    if wrong:
        return f"its config holds {'; '.join(wrong)}"
    allowed = envs.knowledge(config["env_id"]).policies
    if config.get("policy") is not None and config["policy"] not in allowed:
        return (f"its config's POLICY={config['policy']!r} does not drive {config['env_id']} "
                f"(one of {', '.join(allowed)})")
    differ = [f"{name.upper()} {config[name]!r} against the model's {value!r}" for name, value in model_args.items()
              if name in config and _plain(config[name]) != _plain(value)]
    if differ:
        return f"its config does not describe its model ({'; '.join(differ)})"
    return None


def _plain(value: object) -> object:
    return list(value) if isinstance(value, (list, tuple)) else value


def build_vae(checkpoint: dict[str, Any], device: str | torch.device = "cpu", path: str | Path = "checkpoint"
              ) -> MyVAE:
    """Rebuild the model a checkpoint describes, with its weights, in eval mode."""
    problem = model_args_problem(checkpoint.get("model_args"))
    if problem:
        raise CheckpointError(f"{path}: its model description {problem}")
    try:
        model = MyVAE(**checkpoint["model_args"])
        model.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise CheckpointError(f"{path} does not match its model description ({reason(error)})") from None
    return model.to(device).eval()


_MAX_WIDTH = 4096  # channels or code dimensions: what train_vae.py allows


def model_args_problem(args: object) -> str | None:
    """What makes MyVAE's recorded constructor arguments unbuildable (or absurdly large), or None."""
    if not isinstance(args, dict) or not {"latent_dim", "hidden_dims", "img_size"} <= set(args):
        return "is not MyVAE's arguments (latent_dim, hidden_dims, img_size, ...)"
    dims = args["hidden_dims"]
    if not (_whole(args["latent_dim"]) and 1 <= args["latent_dim"] <= _MAX_WIDTH
            and isinstance(dims, (list, tuple)) and dims and all(_whole(c) and 1 <= c <= _MAX_WIDTH for c in dims)
            and _whole(args["img_size"]) and 2 ** len(dims) <= args["img_size"] <= 1024
            and _whole(args.get("in_channels", 3)) and 1 <= args.get("in_channels", 3) <= 4):
        return (f"holds sizes no model of this code has (latent_dim {args['latent_dim']!r}, hidden_dims {dims!r}, "
                f"img_size {args['img_size']!r})")
    return None


def load_vae(path: str | Path, device: str | torch.device = "cpu") -> MyVAE:
    """The model saved at `path`, rebuilt from that file alone, in eval mode."""
    return build_vae(load_checkpoint(path), device)


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Two state dicts hold the same tensors, bit for bit: every parameter and every buffer (BatchNorm's
    running statistics among them), so two models compute the same in eval mode too."""
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def run_config(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The constants of the run that wrote the checkpoint (validated when it was read), with the env's own
    values where it recorded None; CheckpointError naming the part if absent."""
    if "config" not in checkpoint:
        raise CheckpointError(
            f"{path} has no `config` (the constants of the run that made it), which this needs; "
            "use a checkpoint written by train_vae.py"
        )
    return envs.resolved_config(checkpoint["config"])
