"""Training in several processes with torch.distributed, as torchrun starts them; one plain process otherwise.

    torchrun --standalone --nproc_per_node=2 train_vae.py     # two processes on this machine

torchrun gives each process it starts RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE;
`Ranks` reads them. Every helper below does nothing (or returns its input) in a plain
`python train_vae.py`, so training has one code path, and that run needs no torchrun.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from worldvae.cli import UserError, reason as cli_reason

PEER_TIMEOUT = datetime.timedelta(seconds=int(os.environ.get("VAE_PEER_TIMEOUT", 300)))  # to join, and per collective

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """Which process this is among those training one model."""

    rank: int = 0  # 0 writes checkpoints, metrics and pictures
    world: int = 1
    local_rank: int = 0  # its place on this machine: the GPU it takes
    local_world: int = 1  # processes on this machine, sharing its CPU cores
    launched: bool = False  # started by torchrun (even alone, as with --nproc_per_node=1)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Ranks:
        """This process's place, from the variables torchrun sets; set by hand they are checked,
        so a mistake is one line instead of a traceback or a wait without end."""
        if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
            return cls()
        numbers = {}
        for name, default in (("RANK", None), ("WORLD_SIZE", None), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1")):
            text = os.environ.get(name, default)
            if text is None or not text.strip().isdigit():
                raise UserError(f"{name}={text!r}: torchrun sets RANK and WORLD_SIZE to whole numbers; start the run "
                                "with torchrun (docs/scaling-out.md), or unset them for a single process")
            numbers[name] = int(text)
        rank, world = numbers["RANK"], numbers["WORLD_SIZE"]
        if not 0 <= rank < world:
            raise UserError(f"RANK={rank} lies outside WORLD_SIZE={world} (0 .. {world - 1}): start the run with "
                            "torchrun")
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if world > 1 and name not in os.environ]
        if missing:
            raise UserError(f"{' and '.join(missing)} not set: the processes cannot find each other without them "
                            "(torchrun sets them); start the run with torchrun")
        return cls(rank, world, numbers["LOCAL_RANK"], numbers["LOCAL_WORLD_SIZE"], launched=True)


ALONE = Ranks()  # a plain `python train_vae.py`


def print_only_on_main(ranks: Ranks) -> None:
    """Silence the standard output of every process but rank 0, whose log speaks for all; errors
    (on standard error) still come from whichever process meets them."""
    if not ranks.main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process's life


@contextlib.contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the other processes (nccl between GPUs, gloo between CPUs) for the duration; alone, nothing.

    Joining waits at most PEER_TIMEOUT for the others, saying whom it waits for. When another
    process of the job fails first, the collective this one waits in breaks: that is one line
    here too (the failing process prints the reason), not a gloo traceback."""
    if not ranks.launched:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if ranks.world > 1:
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        print(f"waiting for the {ranks.world} processes of this job at {where} (at most {PEER_TIMEOUT.seconds} s)")
    try:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=PEER_TIMEOUT)
    except (RuntimeError, ValueError) as error:
        raise UserError(f"process {ranks.rank} of {ranks.world} could not join the others "
                        f"({cli_reason(error)})") from None
    try:
        yield
        dist.barrier()  # a clean end is met together: none tears the group down while a peer still writes
    except (RuntimeError, dist.DistError) as error:
        if not _peer_failed(error):
            raise
        raise UserError(f"process {ranks.rank} of {ranks.world} stopped: another process of this job ended first "
                        f"({cli_reason(error, 120)}); its own message says why") from None
    finally:
        dist.destroy_process_group()


def _peer_failed(error: BaseException) -> bool:
    """A collective broke because a peer went away (gloo or nccl), as opposed to a bug here."""
    text = str(error).lower()
    return isinstance(error, dist.DistError) or any(
        sign in text for sign in ("connection closed", "connection reset", "broken pipe", "timed out", "gloo"))


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def _collective_device() -> torch.device:
    """Where the tensors of a collective live: this process's GPU under nccl, the CPU under gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _reduce(values: list[float], op: dist.ReduceOp) -> list[float]:
    if not _active():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor, op=op)
    return tensor.tolist()


def sum_over_ranks(values: list[float]) -> list[float]:
    return _reduce(values, dist.ReduceOp.SUM)


def any_over_ranks(flags: torch.Tensor) -> list[bool]:
    """Each of `flags` (a small bool tensor, on the training device) true on any process, read on the
    host: the training step's one collective, and its one wait for the device."""
    if _active():
        flags = flags.to(_collective_device(), dtype=torch.uint8)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return [bool(flag) for flag in flags.tolist()]


def gather_to_all(value: T) -> list[T]:
    """`value` from every process, in rank order (alone: [value])."""
    if not _active():
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s own random stream (rank 0 keeps SEED's, so one process runs as alone)."""
    return seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def min_over_ranks(value: int) -> int:
    return int(_reduce([value], dist.ReduceOp.MIN)[0])


def from_main(compute: Callable[[], T]) -> T:
    """compute() on rank 0, its result sent to every process (no shared disk needed); an error it
    raises (a UserError, or any other) is one line raised on every process, so all stop at once."""
    if not _active():
        return compute()
    message: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            message = [("ok", compute())]
        except UserError as error:
            message = [("error", str(error))]
        except Exception as error:  # a bug on rank 0 must not leave the others waiting for its answer
            message = [("error", f"process 0 failed ({type(error).__name__}: {cli_reason(error, 150)})")]
    dist.broadcast_object_list(message, src=0)
    kind, payload = message[0]
    if kind == "error":
        raise UserError(payload)
    return payload


@contextlib.contextmanager
def held_by_main(context: Callable[[], contextlib.AbstractContextManager], ranks: Ranks) -> Iterator[None]:
    """Rank 0 enters context() (OUT_DIR's lock) for the duration. If it cannot, every process stops
    with its one line, before any of them touches OUT_DIR: the others wait to hear first."""
    with contextlib.ExitStack() as stack:
        error = None
        if ranks.main:
            try:
                stack.enter_context(context())
            except UserError as refused:
                error = str(refused)
        raise_if_any([error])
        yield


def on_every_rank(compute: Callable[[], T]) -> T:
    """compute() on every process; if it refuses (a UserError) or fails on any, every process stops
    with the first such line, so none goes on to write while another was refused."""
    try:
        return_value, error = compute(), None
    except UserError as refused:
        return_value, error = None, str(refused)
    except Exception as failed:  # a bug here must not leave the others waiting for this process
        if not _active():
            raise
        return_value, error = None, f"process {dist.get_rank()} failed ({type(failed).__name__}: {cli_reason(failed)})"
    errors = [error]
    if _active():
        errors = [None] * dist.get_world_size()
        dist.all_gather_object(errors, error)
    raise_if_any(errors)
    return return_value


def raise_if_any(errors: list[str | None]) -> None:
    """Raise the first error of `errors` (rank 0's alone, sent to all, when only rank 0 has one to give)."""
    if _active() and len(errors) == 1:
        dist.broadcast_object_list(errors, src=0)
    first = next((error for error in errors if error), None)
    if first:
        raise UserError(first)


def for_ranks(model: nn.Module, device: torch.device) -> nn.Module:
    """The model as each process trains it: under torchrun, DistributedDataParallel, which averages
    the gradients of all processes at every step, so every copy takes the same update.

    On CUDA the BatchNorm layers become SyncBatchNorm: batch statistics over all processes'
    batches. SyncBatchNorm runs only on GPUs, so on CPU each process normalizes with its own
    batch's statistics, and DDP copies rank 0's running statistics to the others at every step.
    """
    if not _active():
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place: same parameters, same optimizer
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)
