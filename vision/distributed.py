"""Training in several processes with torch.distributed, as torchrun starts them; one plain process otherwise.

    torchrun --standalone --nproc_per_node=2 train_vae.py     # two processes on this machine

torchrun gives each process it starts RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE;
`Ranks` reads them. Every helper below does nothing (or returns its input) in a plain
`python train_vae.py`, so training has one code path, and that run needs no torchrun.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vision.cli import UserError

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
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return cls()
        return cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)),
                   int(os.environ.get("LOCAL_WORLD_SIZE", 1)), launched=True)


ALONE = Ranks()  # a plain `python train_vae.py`


def print_only_on_main(ranks: Ranks) -> None:
    """Silence the standard output of every process but rank 0, whose log speaks for all; errors
    (on standard error) still come from whichever process meets them."""
    if not ranks.main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process's life


def local_device(device: torch.device, ranks: Ranks) -> torch.device:
    """One GPU per process: a torchrun process on CUDA takes the GPU of its LOCAL_RANK."""
    return torch.device("cuda", ranks.local_rank) if ranks.launched and device.type == "cuda" else device


@contextlib.contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the other processes (nccl between GPUs, gloo between CPUs) for the duration; alone, nothing."""
    if not ranks.launched:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def _reduce(values: list[float], op: dist.ReduceOp) -> list[float]:
    if not _active():
        return values
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=on)
    dist.all_reduce(tensor, op=op)
    return tensor.tolist()


def sum_over_ranks(values: list[float]) -> list[float]:
    return _reduce(values, dist.ReduceOp.SUM)


def min_over_ranks(value: int) -> int:
    return int(_reduce([value], dist.ReduceOp.MIN)[0])


def any_rank(flag: bool) -> bool:
    """True if `flag` is true on any process: so that all of them stop at the same step."""
    return bool(_reduce([float(flag)], dist.ReduceOp.MAX)[0])


def from_main(compute: Callable[[], T]) -> T:
    """compute() on rank 0, its result sent to every process (no shared disk needed); a UserError
    it raises is raised on every process, so all stop with the same line."""
    if not _active():
        return compute()
    message: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            message = [("ok", compute())]
        except UserError as error:
            message = [("error", str(error))]
    dist.broadcast_object_list(message, src=0)
    kind, payload = message[0]
    if kind == "error":
        raise UserError(payload)
    return payload


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
