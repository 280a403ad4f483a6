"""Collect filtered frames from a Gymnasium env, then train a (variational) autoencoder on them.

    python train_vae.py                       # CartPole-v1, the defaults below
    python train_vae.py --env_id Pendulum-v1  # any constant can be overridden like this
    torchrun --standalone --nproc_per_node=2 train_vae.py  # one model, two processes (README: Scaling out)

The story: constants -> data (frames.py collects or reuses them) -> model (MyVAE.py) ->
the training step -> saving (checkpoints, metrics, pictures) after every epoch.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

from MyVAE import MyVAE
from worldvae import cli, compute, constants, dataset, distributed, envs, files, readers, store
from worldvae.checkpoints import load_checkpoint, save_checkpoint
from worldvae.cli import UserError, require
from worldvae.compute import Compute, auto_batch_size, pick_device, set_threads
from worldvae.pictures import plot_curves, save_comparison
from worldvae.progress import ProgressBar

# -----------------------------------------------------------------------------
# data
ENV_ID = "CartPole-v1"  # any classic-control id: CartPole-v1, Pendulum-v1, Acrobot-v1, MountainCar-v0, ...
N_FRAMES = 24_000  # frames to keep after filtering (collection is cheap: fresh frames beat repeated epochs)
RESET_AFTER = None  # every episode is reset after its first RESET_AFTER observations; None: the env's (CartPole: 20)
ANGLE_RANGE = None  # keep frames whose pole angle (rad) lies in (low, high); None: the env's own; "all": no filter
CROP = None  # (top, bottom, left, right) fractions of the frame to keep; None: the env's default
IMG_SIZE = 64  # frames are resized to IMG_SIZE x IMG_SIZE (a power of two, >= 32)
MAX_STEPS_PER_FRAME = 50  # give up when N_FRAMES * this many observations kept too few
N_ENVS = 0  # worker processes that collect in parallel; 0: one per CPU core, 1: no workers
SHARD_FRAMES = 4000  # frames per file of the dataset (a multiple of 250): the unit of resuming, streaming, splitting
IN_RAM_MB = None  # MiB of frames held in memory, more stream from disk; None: 1/4 of free GPU memory on CUDA, else 0
FAST_RENDER = True  # CartPole: draw only the kept rows, straight to a small image (same picture, ~3x faster)
# model
LATENT_DIM = None  # size of the latent code z; None: the env's (10; CarRacing: 32, as World Models)
HIDDEN_DIMS = None  # channels of the stride-2 convolutions, mirrored back; None: the env's (8..128; CarRacing: 16..256)
VARIATIONAL = True  # False: a plain autoencoder (no sampling, no KL term)
KL_WEIGHT = 1e-5  # beta: weight of the KL term (nats per frame) against the per-pixel MSE
KL_FLOOR = 0.0  # nats per latent dimension that cost nothing ("free bits", as World Models used 0.5); 0: none
# training
BATCH_SIZE = None  # frames per optimizer step; None: 8 on a CPU or MPS, 512 on CUDA
EPOCHS = None  # passes over the training split; None: the env's (2; CarRacing: 3)
LR = 3e-3  # Adam's peak learning rate
WARMUP = 0.05  # share of the steps that ramp the learning rate up from 0 to LR
COSINE = True  # after the warm-up, a cosine from LR down to LR/10; False: LR throughout
VAL_FRACTION = 0.1  # share of the episodes held out for validation
# system
SEED = 0  # seeds the env, the actions, the split, the weights and the shuffling
OUT_DIR = "outputs"  # dataset, checkpoints, metrics and pictures go here
RESUME = False  # continue from OUT_DIR/last.pt: weights, optimizer, epoch, random states, metrics
DEVICE = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, mps
THREADS = 1  # CPU threads per process (torch, and the collection workers); None: torch's default, one per core
PRECISION = "auto"  # auto (bf16 autocast where the hardware has it), bf16, fp32
CHANNELS_LAST = True  # NHWC memory layout: faster convolutions on CPU and recent GPUs
COMPILE = "auto"  # torch.compile the training forward: auto (one CUDA process, long runs; not on CPU), on, off
# -----------------------------------------------------------------------------

_MAX_WIDTH = 4096  # channels or latent dimensions: wider asks for weights of absurd size
_LOSS_PARTS = ("loss", "recon", "kl")
_LOG_EVERY = 50  # steps between the points of the training loss in loss_curves.png and steps.csv
# besides EPOCHS, what --resume lets change: where to write, and the knobs that change only speed
_MAY_CHANGE_ON_RESUME = {"resume", "out_dir", "device", "precision", "channels_last", "compile", "n_envs",
                         "fast_render", "threads"}
_COMPILE_PAYS_AFTER = 20_000  # optimizer steps: below this, compiling (~20 s on CUDA) costs more than it saves


def validate_config(cfg: SimpleNamespace, ranks: distributed.Ranks = distributed.ALONE) -> None:
    """Reject bad constants with one clear message, before any work starts."""
    dataset.validate_collection(cfg)
    n_shards = len(store.shard_sizes(cfg.n_frames, cfg.shard_frames))
    require(n_shards >= ranks.world, f"N_FRAMES={cfg.n_frames} makes {n_shards} shards of SHARD_FRAMES="
            f"{cfg.shard_frames}, fewer than the {ranks.world} processes: each needs a shard of its own")
    require(cfg.in_ram_mb is None or (isinstance(cfg.in_ram_mb, (int, float)) and cfg.in_ram_mb >= 0),
            f"IN_RAM_MB must be None or a size in MiB of zero or more, got {cfg.in_ram_mb!r}")
    if cfg.in_ram_mb is not None:  # frames up to this budget are held whole
        held = min(cfg.in_ram_mb * 2**20, cfg.n_frames / ranks.world * 3 * cfg.img_size**2)
        compute.require_memory(held, f"holding IN_RAM_MB={cfg.in_ram_mb} of frames", "lower IN_RAM_MB (or set it to 0 "
                           "to stream from disk)")
    require(isinstance(cfg.latent_dim, int) and cfg.latent_dim >= 1,
            f"LATENT_DIM must be an integer of at least 1, got {cfg.latent_dim!r}")
    cli.require_at_most(cfg.latent_dim, _MAX_WIDTH, "LATENT_DIM", "a code that wide is no compact picture")
    require(isinstance(cfg.epochs, int) and not isinstance(cfg.epochs, bool) and cfg.epochs >= 1,
            f"EPOCHS must be an integer of at least 1, or None (the env's), got {cfg.epochs!r}")
    cli.require_at_most(cfg.epochs, 10**6, "EPOCHS", "the run would not end")
    require(
        isinstance(cfg.hidden_dims, tuple) and len(cfg.hidden_dims) >= 1
        and all(isinstance(c, int) and 1 <= c <= _MAX_WIDTH for c in cfg.hidden_dims)
        and cfg.img_size >= 2 ** len(cfg.hidden_dims),
        f"HIDDEN_DIMS must be a tuple of channel counts from 1 to {_MAX_WIDTH}, at most "
        f"log2(IMG_SIZE)={int(math.log2(cfg.img_size))} of them; got {cfg.hidden_dims}",
    )
    require(0 < cfg.lr < math.inf, f"LR must be positive and finite, got {cfg.lr}")
    require(0 <= cfg.warmup < 1, f"WARMUP must lie in [0, 1), got {cfg.warmup}")
    require(0 <= cfg.kl_weight < math.inf, f"KL_WEIGHT must be zero or positive and finite, got {cfg.kl_weight}")
    require(0 <= cfg.kl_floor <= 100, f"KL_FLOOR must lie in 0 .. 100 nats per dimension, got {cfg.kl_floor}")
    require(0 < cfg.val_fraction < 1, f"VAL_FRACTION must lie strictly between 0 and 1, got {cfg.val_fraction}")
    cli.require_seed(cfg.seed)
    if cfg.batch_size is not None:  # None on resume: checked once last.pt tells the run's own
        require(isinstance(cfg.batch_size, int) and cfg.batch_size >= 2,
                f"BATCH_SIZE must be an integer of at least 2 (BatchNorm), or None; got {cfg.batch_size!r}")
        require_batch_fits(int(cfg.n_frames * (1 - cfg.val_fraction) / ranks.world), cfg.batch_size)  # an estimate


def require_batch_fits(n_train: int, batch_size: int) -> None:
    require(n_train >= batch_size, f"the training split ({n_train} frames) is smaller than BATCH_SIZE={batch_size}: "
            "raise N_FRAMES or lower BATCH_SIZE")


def learning_rate(step: int, total_steps: int, cfg: SimpleNamespace) -> float:
    """Linear warm-up from 0 over WARMUP of the steps, then constant or (COSINE) a cosine down to LR/10."""
    warmup_steps = int(cfg.warmup * total_steps)
    if step < warmup_steps:
        return cfg.lr * (step + 1) / warmup_steps
    if not cfg.cosine:
        return cfg.lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class TrainingPosition:
    """Where training stands; last.pt carries it so that a run resumes exactly.

    `shuffle_state` is the shuffling generator's state at the start of epoch `epoch`,
    of which `batch` batches are done, their loss parts summed in `totals` (this process's
    own; last.pt keeps every process's). `steps` holds the training loss every _LOG_EVERY
    steps, for the loss curve.
    """

    shuffle_state: torch.Tensor
    epoch: int = 1
    batch: int = 0
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_LOSS_PARTS, 0.0))
    history: list[dict] = field(default_factory=list)
    best_val_loss: float = math.inf
    steps: list[dict] = field(default_factory=list)
    reader: str = ""  # how training reads the frames ("in_memory", "streamed"): a resume reads them the same way


@torch.no_grad()
def validation_loss(model: MyVAE, batches: Iterator[torch.Tensor], cfg: SimpleNamespace,
                    compute: Compute) -> dict[str, float]:
    """Loss parts over the validation frames of every process, in eval mode (decoding mu), per frame."""
    model.eval()
    sums, n = compute.sums(len(_LOSS_PARTS)), 0
    for batch in batches:
        with compute.autocast():
            parts = model.loss(*model(compute.inputs(batch)), cfg.kl_weight, cfg.kl_floor)
        sums += torch.stack([parts[key].detach().to(sums.dtype) for key in _LOSS_PARTS]) * len(batch)
        n += len(batch)
    *totals, n = distributed.sum_over_ranks([*sums.tolist(), n])
    return {key: value / n for key, value in zip(_LOSS_PARTS, totals, strict=True)}


def train(
    cfg: SimpleNamespace,
    source: readers.InMemory | readers.Streamed,
    out_dir: Path,
    compute: Compute,
    stop: cli.StopRequests,
    resume: dict | None = None,
    ranks: distributed.Ranks = distributed.ALONE,
) -> list[dict]:
    """Train with Adam, score the validation episodes each epoch, keep the last and the best checkpoint.
    Under torchrun every process trains on its own shards and only rank 0 writes."""
    fewest = distributed.min_over_ranks(source.n_train)  # every process takes as many steps as the one with fewest
    require(fewest > 0, f"validation took every frame: each shard of SHARD_FRAMES={cfg.shard_frames} frames holds too "
            "few episodes (each shard gives at least one whole episode to validation): raise SHARD_FRAMES")
    require_batch_fits(fewest, cfg.batch_size)  # the split is by whole episodes, so check the real one
    steps_per_epoch = fewest // cfg.batch_size
    total_steps = steps_per_epoch * cfg.epochs
    n_train, n_val = (int(n) for n in distributed.sum_over_ranks([source.n_train, source.n_val]))
    each = f" ({ranks.world} processes, each on its own shards)" if ranks.world > 1 else ""
    print(f"training on {n_train} frames, validating on {n_val} (held-out episodes){each}, on {compute}")

    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    model = compute.prepare(MyVAE(latent_dim=cfg.latent_dim, hidden_dims=cfg.hidden_dims, variational=cfg.variational,
                                  img_size=cfg.img_size))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    torch.manual_seed(distributed.rank_seed(cfg.seed, ranks.rank))  # but each its own noise
    shuffle = torch.Generator()
    position = TrainingPosition(shuffle.manual_seed(cfg.seed).get_state(), reader=source.kind)
    if resume is not None:
        position = restore_training_state(resume, model, optimizer, compute, ranks)
        print(f"resuming at epoch {position.epoch}, batch {position.batch}")
    net = compute.for_training(distributed.for_ranks(model, compute.device))

    while position.epoch <= cfg.epochs:
        start = time.perf_counter()
        shuffle.set_state(position.shuffle_state)
        net.train()
        first_batch = position.batch
        sums = compute.sums(len(_LOSS_PARTS))
        sums += torch.tensor([position.totals[key] for key in _LOSS_PARTS], dtype=sums.dtype, device=sums.device)
        with (
            contextlib.closing(source.batches(cfg.batch_size, shuffle)) as stream,
            ProgressBar(steps_per_epoch, f"epoch {position.epoch}/{cfg.epochs}", "batch", position.batch,
                            images_per_unit=cfg.batch_size * ranks.world) as bar,
        ):
            for frames_u8 in itertools.islice(stream, position.batch, steps_per_epoch):
                # the training step: one wait for the device, where every process agrees on two flags
                step = (position.epoch - 1) * steps_per_epoch + position.batch
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, total_steps, cfg)
                with compute.autocast():
                    parts = model.loss(*net(compute.inputs(frames_u8)), cfg.kl_weight, cfg.kl_floor)
                stop_flag = torch.full((), bool(stop.signum), device=compute.device)  # a fill, not a copy that waits
                flags = torch.stack([~torch.isfinite(parts["loss"]), stop_flag])
                non_finite, stopping = distributed.any_over_ranks(flags)
                if non_finite:  # before backward: a NaN never reaches the weights
                    raise diverged(parts["loss"].item(), position, cfg, out_dir)
                optimizer.zero_grad(set_to_none=True)
                parts["loss"].backward()
                optimizer.step()
                sums += torch.stack([parts[key].detach().to(sums.dtype) for key in _LOSS_PARTS])
                position.batch += 1
                note = ""
                if (step + 1) % _LOG_EVERY == 0:  # the loss is read from the device only here
                    mean = (sums / position.batch).tolist()
                    position.steps.append({"step": step + 1, "epoch": (step + 1) / steps_per_epoch,
                                           "train_loss": mean[0], "train_recon": mean[1]})
                    note = f"loss {mean[0]:.5f}"
                bar.update(note=note)
                if stopping:  # every process after the same whole step, so a resume continues exactly
                    position.totals = dict(zip(_LOSS_PARTS, sums.tolist(), strict=True))  # this process's own
                    save_training_state(out_dir / "last.pt", model, optimizer, position, cfg, compute, ranks)
                    raise cli.Stopped(f"stopped by {stop.name} in epoch {position.epoch} after {position.batch}/"
                                      f"{steps_per_epoch} batches; saved {out_dir / 'last.pt'}; to continue, run the "
                                      "same command with --resume", stop.signum)
        if position.batch < steps_per_epoch:  # the reader ran dry: the epoch did not take the steps it announced
            raise RuntimeError(f"epoch {position.epoch} yielded {position.batch} of its {steps_per_epoch} batches")
        position.totals = dict(zip(_LOSS_PARTS, sums.tolist(), strict=True))

        images_per_s = (steps_per_epoch - first_batch) * cfg.batch_size * ranks.world / (time.perf_counter() - start)
        train_sums = distributed.sum_over_ranks(list(position.totals.values()))
        train_parts = {key: value / (steps_per_epoch * ranks.world) for key, value in zip(_LOSS_PARTS, train_sums,
                                                                                          strict=True)}
        val_parts = validation_loss(model, source.validation(cfg.batch_size), cfg, compute)
        if not math.isfinite(val_parts["loss"]):  # a model that scores inf is no model to keep
            raise diverged(val_parts["loss"], position, cfg, out_dir, "the validation loss")
        seconds = time.perf_counter() - start
        position.history.append(
            {"epoch": position.epoch}
            | {f"train_{k}": v for k, v in train_parts.items()}
            | {f"val_{k}": v for k, v in val_parts.items()}
            | {"lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2), "images_per_s": round(images_per_s)}
        )
        improved = val_parts["loss"] < position.best_val_loss
        print(
            f"epoch {position.epoch}/{cfg.epochs}: train loss {train_parts['loss']:.5f} "
            f"(recon {train_parts['recon']:.5f}, kl {train_parts['kl']:.2f}) | "
            f"val loss {val_parts['loss']:.5f} (recon {val_parts['recon']:.5f}, kl {val_parts['kl']:.2f}) | "
            f"{seconds:.1f}s ({images_per_s:.0f} images/s){' *' if improved else ''}"
        )
        position = TrainingPosition(shuffle.get_state(), position.epoch + 1, history=position.history,
                                    best_val_loss=min(position.best_val_loss, val_parts["loss"]), steps=position.steps,
                                    reader=position.reader)
        save_epoch(model, optimizer, position, cfg, improved, source.shown, compute, out_dir, ranks)
    return position.history


def in_memory_budget(cfg: SimpleNamespace, compute: Compute) -> int:
    """Bytes of frames to hold in memory rather than stream: IN_RAM_MB, or by default what may live
    on the GPU (batches are then indexed there, with no copy per step), which off CUDA is nothing:
    on a CPU, streaming keeps RAM flat whatever N_FRAMES (bench.py measures the speed of both ways)."""
    return int(cfg.in_ram_mb * 2**20) if cfg.in_ram_mb is not None else gpu_room(compute)


def gpu_room(compute: Compute) -> int:
    """Bytes of uint8 frames that may live on the GPU: a quarter of its free memory; 0 off CUDA."""
    return torch.cuda.mem_get_info(compute.device)[0] // 4 if compute.device.type == "cuda" else 0


def holding_device(n_bytes: int, compute: Compute) -> torch.device:
    """Where frames held in memory live: on the GPU when they fit in its room, so batches are indexed
    there and no host-to-device copy waits on each step; else in RAM."""
    return compute.device if n_bytes < gpu_room(compute) else torch.device("cpu")


def diverged(loss: float, position: TrainingPosition, cfg: SimpleNamespace, out_dir: Path,
             what: str = "loss") -> UserError:
    """The one-line error for a non-finite loss, naming where it happened and the likely cause."""
    last = out_dir / "last.pt"
    kept = f"{last} keeps the last good epoch" if last.exists() else "no epoch finished"
    cause = (f"KL_WEIGHT={cfg.kl_weight:g} is far above the default {KL_WEIGHT:g}: lower it"
             if cfg.kl_weight > 1000 * KL_WEIGHT else f"try a lower LR than {cfg.lr:g}")
    where = (f"at epoch {position.epoch}, step {position.batch + 1}" if what == "loss"
             else f"after epoch {position.epoch}")
    return UserError(f"training diverged: {what} is {loss} {where}; {kept}; {cause}")


# ---------------------------------------------------------------- saving


def save_epoch(model: MyVAE, optimizer: torch.optim.Optimizer, position: TrainingPosition, cfg: SimpleNamespace,
               improved: bool, shown: torch.Tensor, compute: Compute, out_dir: Path,
               ranks: distributed.Ranks = distributed.ALONE) -> None:
    """Everything an epoch leaves behind, written by rank 0 (every process takes part in gathering the
    random states). last.pt is written last: a run killed at any instant before it resumes from the
    previous epoch, redoes this one and rewrites every file below."""
    rng = distributed.gather_to_all(process_state(compute, position))
    if not ranks.main:
        return
    if improved:
        save_checkpoint(out_dir / "vae.pt", model, config=vars(cfg), epoch=position.epoch - 1,
                        metrics=position.history)
    write_metrics(position.history, position.steps, out_dir)
    model.eval()
    x = compute.inputs(shown)
    with compute.autocast():
        save_comparison(x, model.reconstruct(x), out_dir / "reconstructions.png")
    write_training_state(out_dir / "last.pt", model, optimizer, position, cfg, rng)


def write_metrics(history: list[dict], steps: list[dict], out_dir: Path) -> None:
    """metrics.csv (a row per epoch), steps.csv (the training loss every _LOG_EVERY steps) and
    loss_curves.png from both: the training loss along the epochs, the validation loss after each."""
    for name, rows in (("metrics.csv", history), ("steps.csv", steps)):
        if rows:
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            files.atomic_write(out_dir / name, lambda f, text=text: f.write(text.getvalue().encode()))

    def curves(part: str) -> dict[str, tuple[list[float], list[float]]]:
        epochs = [row["epoch"] for row in history]
        drawn = {"train (epoch mean)": (epochs, [row[f"train_{part}"] for row in history]),
                 "validation": (epochs, [row[f"val_{part}"] for row in history])}
        if steps and f"train_{part}" in steps[0]:
            drawn[f"train, mean of the epoch so far, every {_LOG_EVERY} steps"] = (
                [row["epoch"] for row in steps], [row[f"train_{part}"] for row in steps])
        return drawn

    panels = {"reconstruction MSE per pixel": curves("recon")}
    if any(row["train_kl"] > 0 for row in history):  # an autoencoder has no KL term to plot
        panels["KL (nats per frame)"] = curves("kl")
    plot_curves(panels, out_dir / "loss_curves.png")


def process_state(compute: Compute, position: TrainingPosition) -> dict:
    """What is this process's own in last.pt: its random states (torch's, and its own GPU's, never
    another GPU's) and its loss sums so far in the epoch."""
    states = {"torch": torch.get_rng_state(), "totals": [position.totals[key] for key in _LOSS_PARTS]}
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
    """A run resumes only with the constants that made it; EPOCHS and the speed knobs may change.
    BATCH_SIZE=None takes the batch the run started with, whatever this device would pick: the
    schedule and the order of the data depend on it (a batch set by hand must be the same)."""
    require("progress" in checkpoint, f"{path} is not a training checkpoint (last.pt holds one)")
    saved = checkpoint["config"]
    if cfg.batch_size is None:
        cfg.batch_size = saved["batch_size"]
    changed = [
        f"{name.upper()} {saved.get(name)!r} -> {value!r}"
        for name, value in vars(cfg).items()
        if name not in _MAY_CHANGE_ON_RESUME | {"epochs"} and saved.get(name) != value
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
    position = TrainingPosition(**checkpoint["progress"])
    if "totals" in states:  # older last.pt files held rank 0's sums alone, in `progress`
        position.totals = dict(zip(_LOSS_PARTS, states["totals"], strict=True))
    return position


def load_resumable(cfg: SimpleNamespace, out_dir: Path) -> dict:
    """last.pt, checked to continue this run."""
    last_path = out_dir / "last.pt"
    require(last_path.exists(), f"nothing to resume: no {last_path} (a run saves it at the end of its first epoch, "
            "or when stopped); run the same command without --resume: the dataset is reused, only training restarts")
    checkpoint = load_checkpoint(last_path)
    check_resumable(checkpoint, cfg, last_path)
    return checkpoint


def main(argv: Sequence[str] | None = None) -> None:
    ranks = distributed.Ranks.from_env()
    distributed.print_only_on_main(ranks)
    cfg = constants.parse_config(__name__, argv)
    set_threads(cfg.threads)  # before torch's first op starts its thread pool
    device = pick_device(cfg.device, ranks.local_rank if ranks.launched else None)  # this process's own GPU
    envs.resolve_env_defaults(cfg)
    if cfg.batch_size is None and not cfg.resume:  # a resume takes the run's own, once last.pt is read
        cfg.batch_size = auto_batch_size(device)
    validate_config(cfg, ranks)
    cfg.world_size = ranks.world  # recorded with the run: it resumes only with as many processes
    out_dir = files.prepare_out_dir(cfg.out_dir)
    if not cfg.resume and (out_dir / "vae.pt").exists():
        print(f"note: {out_dir} holds an earlier run; this one replaces its checkpoints, metrics and pictures "
              f"(to keep both, stop now and pass --out_dir {out_dir}_2)")
    start = time.perf_counter()
    with (
        distributed.process_group(ranks, device),
        distributed.held_by_main(lambda: files.lock_out_dir(out_dir), ranks),  # all refused before any touches OUT_DIR
        cli.StopRequests() as stop,
    ):
        resume = distributed.from_main(lambda: load_resumable(cfg, out_dir)) if cfg.resume else None
        if cfg.batch_size is None:  # BATCH_SIZE=None on resume: the batch the run started with, on any device
            cfg.batch_size = resume["config"]["batch_size"]
            validate_config(cfg, ranks)
        steps = cfg.epochs * int(cfg.n_frames * (1 - cfg.val_fraction)) // (cfg.batch_size * ranks.world)
        compute = Compute.choose(device, cfg.precision, cfg.channels_last, cfg.compile, steps >= _COMPILE_PAYS_AFTER,
                                 ranks.world)
        plan = distributed.on_every_rank(lambda: dataset.plan_collection(cfg, out_dir, ranks.rank, ranks.world))
        if ranks.main:  # every check that can refuse the run has passed: now it writes
            files.atomic_write(out_dir / "config.json", lambda f: f.write(json.dumps(vars(cfg), indent=2).encode()))
        shards = dataset.collect_planned(cfg, plan, stop, ranks.rank, ranks.world)
        source = readers.open_frames(plan.store, shards, cfg.val_fraction, cfg.seed, in_memory_budget(cfg, compute),
                                   hold_on=lambda n_bytes: holding_device(n_bytes, compute),
                                   reader=resume["progress"].get("reader") if resume else None)
        history = train(cfg, source, out_dir, compute, stop, resume, ranks)
    best = min(history, key=lambda row: row["val_loss"])
    print(f"done in {time.perf_counter() - start:.0f}s; best validation loss {best['val_loss']:.5f} "
          f"(recon MSE {best['val_recon']:.5f}) at epoch {best['epoch']}")
    for name in ("vae.pt", "last.pt", "metrics.csv", "loss_curves.png", "reconstructions.png", "config.json"):
        print(f"  {out_dir / name}")
    print(f"  {plan.store.folder}/")
    checkpoint = "" if cfg.out_dir == OUT_DIR else f" --checkpoint {out_dir / 'vae.pt'}"
    print(f"next: python sample_vae.py{checkpoint}")


if __name__ == "__main__":
    cli.run(main)
