"""Collect filtered frames from a Gymnasium env, then train a (variational) autoencoder on them.

    python train_vae.py                       # CartPole-v1, the defaults below
    python train_vae.py --env_id Pendulum-v1  # any constant can be overridden like this
    torchrun --standalone --nproc_per_node=2 train_vae.py  # one model, two processes (README: Scaling out)

The story: constants -> data (worldvae/dataset.py collects or reuses them) -> model (MyVAE.py) ->
the training step -> saving (checkpoints, metrics, pictures) after every epoch.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import torch

from MyVAE import MyVAE
from worldvae import cli, constants, dataset, distributed, envs, files, prior, readers, resume
from worldvae.checkpoints import save_checkpoint
from worldvae.cli import UserError, require
from worldvae.compute import Compute, auto_batch_size, pick_device, set_threads
from worldvae.metrics import LOG_EVERY as _LOG_EVERY, LOSS_PARTS as _LOSS_PARTS, print_run_summary, write_metrics
from worldvae.pictures import save_comparison
from worldvae.progress import ProgressBar
from worldvae.resume import TrainingPosition

# -----------------------------------------------------------------------------
# data
ENV_ID = "CartPole-v1"  # any classic-control id: CartPole-v1, Pendulum-v1, Acrobot-v1, MountainCar-v0, ...
N_FRAMES = 24_000  # frames to keep after filtering (collection is cheap: fresh frames beat repeated epochs)
RESET_AFTER = None  # every episode is reset after its first RESET_AFTER observations; None: the env's (CartPole: 20)
ANGLE_RANGE = None  # keep frames whose pole angle (rad) is in [low, high], ends included; None: the env's; "all": any
CROP = None  # (top, bottom, left, right) fractions of the frame to keep; None: the env's default
IMG_SIZE = 64  # frames are resized to IMG_SIZE x IMG_SIZE (a power of two, >= 32)
POLICY = None  # how actions are drawn; None: the env's (random; CarRacing: drivers); CartPole: balancer (docs/data.md)
MAX_STEPS_PER_FRAME = 50  # give up when N_FRAMES * this many observations kept too few
N_ENVS = 0  # worker processes that collect in parallel; 0: one per CPU core, 1: no workers
SHARD_FRAMES = 4000  # frames per file of the dataset (a multiple of 250): the unit of resuming, streaming, splitting
IN_RAM_MB = None  # MiB of frames held in memory, more stream from disk; None: 1/4 of free GPU memory, or of RAM
FAST_RENDER = True  # the same pictures, faster: CartPole drawn to its kept rows only, CarRacing's road by numpy
# model
LATENT_DIM = None  # size of the latent code z; None: the env's (10; CarRacing: 32, as World Models)
HIDDEN_DIMS = None  # channels of the stride-2 convolutions, mirrored back; None: the env's (8..128; CarRacing: 16..64)
VARIATIONAL = True  # False: a plain autoencoder (no sampling, no KL term)
KL_WEIGHT = 1e-5  # beta: KL (nats/frame) against the per-pixel MSE; as a Gaussian decoder, sigma 0.25 at 64 px
KL_FLOOR = 0.0  # free bits: a dimension's batch-mean KL under this many nats costs nothing (per dimension); 0: none
# training
BATCH_SIZE = None  # frames per optimizer step; None: 8 on a CPU or MPS, 512 on CUDA
EPOCHS = None  # passes over the training split; None: the env's (2; CarRacing: 3)
LR = 3e-3  # Adam's peak learning rate
WARMUP = 0.05  # share of the steps that ramp the learning rate up from 0 to LR
COSINE = True  # after the warm-up, a cosine from LR down to LR/10; False: LR throughout
VAL_FRACTION = 0.1  # share of the frames held out for validation, in whole episodes
# system
SEED = 0  # seeds the env, the actions, the split, the weights and the shuffling
OUT_DIR = "outputs"  # dataset, checkpoints, metrics and pictures go here
RESUME = False  # continue from OUT_DIR/last.pt: weights, optimizer, epoch, random states, metrics
REPLACE = False  # True: replace the model, metrics and pictures of an earlier run in OUT_DIR (else refused)
DEVICE = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, mps
THREADS = 1  # CPU threads per process (torch, and the collection workers); None: torch's default, one per core
PRECISION = "auto"  # auto (bf16 autocast where the hardware has it), bf16, fp32
CHANNELS_LAST = True  # NHWC memory layout: faster convolutions on CPU and recent GPUs
COMPILE = "auto"  # torch.compile the training forward: auto (one CUDA process, long runs; not on CPU), on, off
# -----------------------------------------------------------------------------

_MAX_WIDTH = 4096  # channels or latent dimensions: wider asks for weights of absurd size
_MAX_KL_WEIGHT = 1e6  # the KL would drown the per-pixel error a million times over
_COMPILE_PAYS_AFTER = 20_000  # optimizer steps: below this, compiling (~20 s on CUDA) costs more than it saves


def validate_config(cfg: SimpleNamespace, ranks: distributed.Ranks = distributed.ALONE) -> None:
    """Reject bad constants with one clear message, before any work starts."""
    dataset.validate_collection(cfg, ranks.world)
    readers.validate_in_ram_mb(cfg.in_ram_mb, cfg.n_frames // ranks.world * 3 * cfg.img_size**2)
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
    cli.require_learning_rate(cfg.lr)
    require(0 <= cfg.warmup < 1, f"WARMUP must lie in [0, 1), got {cfg.warmup}")
    require(0 <= cfg.kl_weight <= _MAX_KL_WEIGHT, f"KL_WEIGHT must lie in 0 .. {_MAX_KL_WEIGHT:g}, got {cfg.kl_weight}")
    require(0 <= cfg.kl_floor <= 100, f"KL_FLOOR must lie in 0 .. 100 nats per dimension, got {cfg.kl_floor}")
    require(0 < cfg.val_fraction < 1, f"VAL_FRACTION must lie strictly between 0 and 1, got {cfg.val_fraction}")
    cli.require_seed(cfg.seed)
    if cfg.batch_size is not None:  # None on resume: checked once last.pt tells; the real split, in train()
        require(isinstance(cfg.batch_size, int) and cfg.batch_size >= 2,
                f"BATCH_SIZE must be an integer of at least 2 (BatchNorm), or None; got {cfg.batch_size!r}")
        readers.require_batch_fits(int(cfg.n_frames * (1 - cfg.val_fraction) / ranks.world), cfg.batch_size)


def learning_rate(step: int, total_steps: int, cfg: SimpleNamespace) -> float:
    """Linear warm-up from 0 over WARMUP of the steps, then constant or (COSINE) a cosine down to LR/10."""
    warmup_steps = int(cfg.warmup * total_steps)
    if step < warmup_steps:
        return cfg.lr * (step + 1) / warmup_steps
    if not cfg.cosine:
        return cfg.lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def validation_loss(model: MyVAE, batches: Iterator[torch.Tensor], cfg: SimpleNamespace,
                    compute: Compute) -> dict[str, float]:
    """Loss parts over the validation frames of every process, per frame, as training measures them (a code
    sampled from q(z|x)), with BatchNorm in eval mode and the same noise each epoch (compute.same_noise)."""
    model.eval()
    sums, n = compute.sums(len(_LOSS_PARTS)), 0
    with compute.same_noise(cfg.seed):
        for batch in batches:
            with compute.autocast():
                parts = model.loss(*model(compute.inputs(batch), sample=True), cfg.kl_weight, cfg.kl_floor)
            sums += torch.stack([parts[key].detach().to(sums.dtype) for key in _LOSS_PARTS]) * len(batch)
            n += len(batch)
    *sums_over_ranks, n = distributed.sum_over_ranks([*sums.tolist(), n])
    return {key: value / n for key, value in zip(_LOSS_PARTS, sums_over_ranks, strict=True)}


def training_step(model: MyVAE, net: torch.nn.Module, optimizer: torch.optim.Optimizer, frames_u8: torch.Tensor,
                  lr: float, cfg: SimpleNamespace, compute: Compute, stop: cli.StopRequests
                  ) -> tuple[dict[str, torch.Tensor], bool, bool]:
    """One optimizer step on a batch: its loss parts, whether the loss was not finite on any process
    (then no step is taken: a NaN never reaches the weights), and whether any process was asked to
    stop. The two flags are the step's one wait for the device, agreed by every process at once."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with compute.autocast():
        parts = model.loss(*net(compute.inputs(frames_u8)), cfg.kl_weight, cfg.kl_floor)
    stop_flag = torch.full((), bool(stop.signum), device=compute.device)  # a fill, not a copy that waits
    non_finite, stopping = distributed.any_over_ranks(torch.stack([~torch.isfinite(parts["loss"]), stop_flag]))
    if not non_finite:
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        optimizer.step()
    return parts, non_finite, stopping


def train(cfg: SimpleNamespace, source: readers.InMemory | readers.Streamed, out_dir: Path, compute: Compute,
          stop: cli.StopRequests, checkpoint: dict | None = None, ranks: distributed.Ranks = distributed.ALONE
          ) -> list[dict]:
    """Train with Adam, score the validation episodes each epoch, keep the last and the best checkpoint;
    continue from last.pt's `checkpoint` when given. Under torchrun every process trains on its own
    shards and only rank 0 writes."""
    fewest = distributed.min_over_ranks(source.n_train)  # every process takes as many steps as the one with fewest
    require(fewest > 0, f"validation took every frame: a shard of SHARD_FRAMES={cfg.shard_frames} frames holds too few "
            "episodes (the first always gives a whole one to validation): raise SHARD_FRAMES and N_FRAMES")
    readers.require_batch_fits(fewest, cfg.batch_size)  # the split is by whole episodes, so check the real one
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
    if checkpoint is not None:
        position = resume.restore_training_state(checkpoint, model, optimizer, compute, ranks)
        print(f"resuming at epoch {position.epoch}, batch {position.batch}")
    net = compute.for_training(distributed.for_ranks(model, compute.device))
    window = position.on_device(position.window_sums, compute)  # the loss parts since the last logged step

    while position.epoch <= cfg.epochs:
        start, first_batch = time.perf_counter(), position.batch
        shuffle.set_state(position.shuffle_state)
        net.train()
        sums = position.on_device(list(position.loss_sums.values()), compute)
        with (
            contextlib.closing(source.batches(cfg.batch_size, shuffle)) as stream,
            ProgressBar(steps_per_epoch, f"epoch {position.epoch}/{cfg.epochs}", "batch", position.batch,
                        images_per_unit=cfg.batch_size * ranks.world) as bar,
        ):
            for frames_u8 in itertools.islice(stream, position.batch, steps_per_epoch):
                step = (position.epoch - 1) * steps_per_epoch + position.batch
                parts, non_finite, stopping = training_step(model, net, optimizer, frames_u8,
                                                            learning_rate(step, total_steps, cfg), cfg, compute, stop)
                if non_finite:
                    raise diverged(parts["loss"].item(), position, cfg, out_dir)
                latest = torch.stack([parts[key].detach().to(sums.dtype) for key in _LOSS_PARTS])
                sums, window, position.batch, note = sums + latest, window + latest, position.batch + 1, ""
                if (step + 1) % _LOG_EVERY == 0:  # the loss is read from the device only here: the last 50 steps'
                    mean, window = (window / _LOG_EVERY).tolist(), torch.zeros_like(window)
                    position.steps.append({"step": step + 1, "epoch": (step + 1) / steps_per_epoch,
                                           "train_loss": mean[0], "train_recon": mean[1]})
                    note = f"loss {mean[0]:.5f}"
                bar.update(note=note)
                if stopping:  # every process after the same whole step, so a resume continues exactly
                    position.loss_sums = dict(zip(_LOSS_PARTS, sums.tolist(), strict=True))  # this process's own
                    position.window_sums = window.tolist()
                    resume.save_training_state(out_dir / "last.pt", model, optimizer, position, cfg, compute, ranks)
                    raise cli.Stopped(f"stopped by {stop.name} in epoch {position.epoch} after {position.batch}/"
                                      f"{steps_per_epoch} batches; saved {out_dir / 'last.pt'}; to continue, run the "
                                      "same command with --resume", stop.signum)
        if position.batch < steps_per_epoch:  # the reader ran dry: the epoch did not take the steps it announced
            raise RuntimeError(f"epoch {position.epoch} yielded {position.batch} of its {steps_per_epoch} batches")
        position.loss_sums = dict(zip(_LOSS_PARTS, sums.tolist(), strict=True))
        position.window_sums, position.shuffle_state = window.tolist(), shuffle.get_state()  # where the next starts
        images_per_s = (steps_per_epoch - first_batch) * cfg.batch_size * ranks.world / (time.perf_counter() - start)
        position = end_epoch(model, optimizer, position, source, cfg, compute, out_dir, ranks,
                             steps_per_epoch, start, images_per_s)
    return position.history


def end_epoch(model: MyVAE, optimizer: torch.optim.Optimizer, position: TrainingPosition,
              source: readers.InMemory | readers.Streamed, cfg: SimpleNamespace, compute: Compute, out_dir: Path,
              ranks: distributed.Ranks, steps_per_epoch: int, start: float, images_per_s: float) -> TrainingPosition:
    """Score the validation frames, log the epoch, save what it leaves: the position the next starts from."""
    train_sums = distributed.sum_over_ranks(list(position.loss_sums.values()))
    train_parts = dict(zip(_LOSS_PARTS, (value / (steps_per_epoch * ranks.world) for value in train_sums), strict=True))
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
    position = TrainingPosition(position.shuffle_state, position.epoch + 1, history=position.history,
                                best_val_loss=min(position.best_val_loss, val_parts["loss"]), steps=position.steps,
                                reader=position.reader, window_sums=position.window_sums)
    save_epoch(model, optimizer, position, cfg, improved, source.shown, compute, out_dir, ranks)
    return position


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
    rng = distributed.gather_to_all(resume.process_state(compute, position))
    if not ranks.main:
        return
    if improved:
        save_checkpoint(out_dir / "vae.pt", model, config=vars(cfg), epoch=position.epoch - 1,
                        metrics=position.history)
    write_metrics(position.history, position.steps, out_dir)
    x = compute.inputs(shown)
    with compute.autocast():
        save_comparison(x, model.reconstruct(x), out_dir / "reconstructions.png")
    resume.write_training_state(out_dir / "last.pt", model, optimizer, position, cfg, rng)


def main(argv: Sequence[str] | None = None, check_only: bool = False) -> None:
    """The run; with `check_only`, only its refusals (an orchestrator checks every run before the first)."""
    ranks = distributed.Ranks.from_env()
    distributed.print_only_on_main(ranks)
    cfg = constants.parse_config(__name__, argv)
    set_threads(cfg.threads)  # before torch's first op starts its thread pool
    device = pick_device(cfg.device, ranks.local_rank if ranks.launched else None)  # this process's own GPU
    print(envs.env_defaults_line(envs.resolve_env_defaults(cfg)))  # what None took: config.json records it too
    if cfg.batch_size is None and not cfg.resume:  # a resume takes the run's own, once last.pt is read
        cfg.batch_size = auto_batch_size(device)
    validate_config(cfg, ranks)
    cfg.world_size = ranks.world  # recorded with the run: it resumes only with as many processes
    files.refuse_to_replace(Path(cfg.out_dir), cfg.resume or cfg.replace)  # before anything is written
    if check_only:
        return
    out_dir = files.prepare_out_dir(cfg.out_dir)
    start = time.perf_counter()
    with (
        distributed.process_group(ranks, device),
        distributed.held_by_main(lambda: files.lock_out_dir(out_dir), ranks),  # all refused before any touches OUT_DIR
        cli.StopRequests() as stop,
    ):
        # data: the run's constants checked against last.pt and the disk, then frames collected or reused
        checkpoint = distributed.from_main(lambda: resume.load_resumable(cfg, out_dir)) if cfg.resume else None
        if cfg.batch_size is None:  # BATCH_SIZE=None on resume: the batch the run started with, on any device
            cfg.batch_size = checkpoint["config"]["batch_size"]
            validate_config(cfg, ranks)
        steps = cfg.epochs * int(cfg.n_frames * (1 - cfg.val_fraction)) // (cfg.batch_size * ranks.world)
        compute = Compute.choose(device, cfg.precision, cfg.channels_last, cfg.compile, steps >= _COMPILE_PAYS_AFTER,
                                 ranks.world)
        plan = distributed.on_every_rank(lambda: dataset.plan_collection(cfg, out_dir, ranks.rank, ranks.world))
        if ranks.main:  # every check that can refuse the run has passed: now it writes
            files.atomic_write(out_dir / "config.json", lambda f: f.write(json.dumps(vars(cfg), indent=2).encode()))
        shards = dataset.collect_planned(cfg, plan, stop, ranks.rank, ranks.world)
        source = readers.open_frames(plan.store, shards, cfg.val_fraction, cfg.seed,
                                     readers.in_memory_budget(cfg.in_ram_mb, compute.device), compute.device,
                                     reader=checkpoint["progress"].get("reader") if checkpoint else None)
        # the model, trained and saved every epoch
        history = train(cfg, source, out_dir, compute, stop, checkpoint, ranks)
        if ranks.main:  # where the best model's codes lie, which sample_vae.py draws from: in vae.pt
            prior.fit_to_checkpoint(out_dir / "vae.pt", plan.store, cfg, device)
    print_run_summary(history, time.perf_counter() - start, out_dir, plan.store.folder)
    checkpoint_flag = "" if cfg.out_dir == OUT_DIR else f" --checkpoint {out_dir / 'vae.pt'}"
    print(f"next: python sample_vae.py{checkpoint_flag}")


if __name__ == "__main__":
    cli.run(main)
