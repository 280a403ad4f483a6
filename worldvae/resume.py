"""Resuming a run exactly: where training stands, and last.pt, which carries it.

last.pt holds the weights, the optimizer, the `TrainingPosition` (epoch, batch, the
shuffling generator's state, the loss sums and logs so far) and every process's own random
states and loss sums, so a resumed run logs and learns what a run that never stopped would
have. A run resumes only with the constants that made it, but for those in MAY_CHANGE.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

from MyVAE import MyVAE
from worldvae import distributed, envs
from worldvae.checkpoints import load_checkpoint, save_checkpoint
from worldvae.cli import require
from worldvae.compute import Compute
from worldvae.metrics import LOSS_PARTS

# besides EPOCHS, what --resume lets change: where to write, and the knobs that change only speed (not FAST_RENDER:
# it changes the frames, so their store)
MAY_CHANGE = {"resume", "replace", "out_dir", "device", "precision", "channels_last", "compile", "n_envs", "threads"}


@dataclass
class TrainingPosition:
    """Where training stands; last.pt carries it so that a run resumes exactly.

    `shuffle_state` is the shuffling generator's state at the start of epoch `epoch`,
    of which `batch` batches are done, their loss parts summed in `loss_sums` (this
    process's own; last.pt keeps every process's). `steps` holds the training loss every LOG_EVERY
    steps (the mean of those steps, summed in `window_sums`), for the loss curve.
    """

    shuffle_state: torch.Tensor
    epoch: int = 1
    batch: int = 0
    loss_sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(LOSS_PARTS, 0.0))
    history: list[dict] = field(default_factory=list)
    best_val_loss: float = math.inf
    steps: list[dict] = field(default_factory=list)
    reader: str = ""  # how training reads the frames ("in_memory", "streamed"): a resume reads them the same way
    window_sums: list[float] = field(default_factory=lambda: [0.0] * len(LOSS_PARTS))  # since the last logged step

    @staticmethod
    def on_device(values: list[float], compute: Compute) -> torch.Tensor:
        """Loss sums as the training step adds to them: on the device, in float64 (float32 on MPS)."""
        return torch.tensor(values, dtype=compute.sums(0).dtype, device=compute.device)


def process_state(compute: Compute, position: TrainingPosition) -> dict:
    """What is this process's own in last.pt: its random states (torch's, and its own GPU's, never
    another GPU's) and its loss sums so far in the epoch."""
    states = {"torch": torch.get_rng_state(), "loss_sums": [position.loss_sums[key] for key in LOSS_PARTS]}
    if compute.device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(compute.device)
    return states


def save_training_state(path: Path, model: MyVAE, optimizer: torch.optim.Optimizer, position: TrainingPosition,
                        cfg: SimpleNamespace, compute: Compute, ranks: distributed.Ranks = distributed.ALONE) -> None:
    """last.pt, with every process's own state (a collective: every process calls it); rank 0 writes."""
    rng = distributed.gather_to_all(process_state(compute, position))
    if ranks.main:
        write_training_state(path, model, optimizer, position, cfg, rng)


def write_training_state(path: Path, model: MyVAE, optimizer: torch.optim.Optimizer, position: TrainingPosition,
                         cfg: SimpleNamespace, rng: list[dict]) -> None:
    """Everything a resumed run needs: weights, optimizer, position, and each process's own state."""
    save_checkpoint(path, model, config=vars(cfg), optimizer=optimizer.state_dict(), progress=asdict(position),
                    rng={"per_rank": rng})


def check_resumable(checkpoint: dict, cfg: SimpleNamespace, path: Path) -> None:
    """A run resumes only with the constants that made it; EPOCHS and those in MAY_CHANGE may change.
    BATCH_SIZE=None takes the batch the run started with, whatever this device would pick: the
    schedule and the order of the data depend on it (a batch set by hand must be the same)."""
    require("progress" in checkpoint, f"{path} is not a training checkpoint (last.pt holds one)")
    saved = envs.resolved_config(checkpoint["config"])
    if cfg.batch_size is None:
        cfg.batch_size = saved["batch_size"]
    changed = [
        f"{name.upper()} {saved.get(name)!r} -> {value!r}"
        for name, value in vars(cfg).items()
        if name not in MAY_CHANGE | {"epochs"} and saved.get(name) != value
    ]
    require(
        not changed,
        f"{path} was made with other constants ({'; '.join(changed)}): "
        "use the same ones, or start over without --resume",
    )
    done = checkpoint["progress"]["epoch"] - 1
    require(done < cfg.epochs, f"{path} has finished {done} of EPOCHS={cfg.epochs}: nothing to resume; "
            f"raise --epochs to train on")
    if cfg.epochs != saved["epochs"]:
        print(f"EPOCHS {saved['epochs']} -> {cfg.epochs}: the learning-rate schedule is laid over "
              f"{cfg.epochs} epochs from here on")


def restore_training_state(checkpoint: dict, model: MyVAE, optimizer: torch.optim.Optimizer, compute: Compute,
                           ranks: distributed.Ranks = distributed.ALONE) -> TrainingPosition:
    """Weights, optimizer, the position, and this process's own random states and loss sums from
    last.pt, so every logged number is what a run that never stopped would have logged. A GPU's
    random state goes back to a GPU only (a run moved between a CPU and a GPU continues with that
    device's own stream)."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    per_rank = checkpoint["rng"].get("per_rank", [checkpoint["rng"]])  # a last.pt of one process, as older runs saved
    require(len(per_rank) == ranks.world, f"last.pt holds the random states of {len(per_rank)} processes, not "
            f"{ranks.world}: resume with as many processes as the run had")
    states = per_rank[ranks.rank]
    torch.set_rng_state(states["torch"])
    if "cuda" in states and compute.device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], compute.device)
    saved = dict(checkpoint["progress"])
    saved["loss_sums"] = saved.pop("totals", None) or saved["loss_sums"]  # older last.pt files said "totals"
    position = TrainingPosition(**saved)
    own = states.get("loss_sums", states.get("totals"))  # older last.pt files held rank 0's sums alone
    if own is not None:
        position.loss_sums = dict(zip(LOSS_PARTS, own, strict=True))
    return position


def load_resumable(cfg: SimpleNamespace, out_dir: Path) -> dict:
    """last.pt, checked to continue this run."""
    last_path = out_dir / "last.pt"
    require(last_path.exists(), f"nothing to resume: no {last_path} (a run saves it at the end of its first epoch, "
            "or when stopped); run the same command without --resume: the dataset is reused, only training restarts")
    checkpoint = load_checkpoint(last_path)
    check_resumable(checkpoint, cfg, last_path)
    return checkpoint


