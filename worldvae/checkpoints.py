"""The checkpoint format: what a .pt file holds, how it is written safely and read back.

A checkpoint is a dict of plain types: `format`, `model_args` (MyVAE's constructor
arguments), `model` (the state_dict) and whatever the writer adds: `config` (the
constants of the run), `prior` in vae.pt (the mixture its samples are drawn from, prior.py),
and for last.pt the optimizer, progress and random states.
Files are read with `weights_only=True`, so loading one never runs code.
"""

from __future__ import annotations

import io
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
    """The checkpoint dict, loaded with weights_only=True; CheckpointError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train one first with `python train_vae.py`")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason(error)})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} file")
    return checkpoint


def build_vae(checkpoint: dict[str, Any], device: str | torch.device = "cpu") -> MyVAE:
    """Rebuild the model a checkpoint describes, with its weights, in eval mode."""
    try:
        model = MyVAE(**checkpoint["model_args"])
        model.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint does not match its model description ({reason(error)})") from None
    return model.to(device).eval()


def load_vae(path: str | Path, device: str | torch.device = "cpu") -> MyVAE:
    """The model saved at `path`, rebuilt from that file alone, in eval mode."""
    return build_vae(load_checkpoint(path), device)


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Two state dicts hold the same tensors, bit for bit: every parameter and every buffer (BatchNorm's
    running statistics among them), so two models compute the same in eval mode too."""
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def run_config(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The constants of the run that wrote the checkpoint; CheckpointError naming the part if absent."""
    config = checkpoint.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{path} has no `config` (the constants of the run that made it), which this needs; "
            "use a checkpoint written by train_vae.py"
        )
    args = checkpoint.get("model_args", {})
    same = {name: (list(value) if isinstance(value, (list, tuple)) else value) for name, value in args.items()}
    differ = [f"{name.upper()} {config[name]!r} against the model's {args[name]!r}" for name in same
              if name in config and (list(config[name]) if isinstance(config[name], (list, tuple)) else config[name])
              != same[name]]
    if differ:
        raise CheckpointError(f"{path}: its config does not describe its model ({'; '.join(differ)}): it was "
                              "edited; use the checkpoint as train_vae.py wrote it")
    return envs.resolved_config(config)
