"""Where and how tensors run: device, autocast precision, memory layout, torch.compile.

Every script picks its device here (cuda, then mps, then cpu), and every uint8 frame
becomes a float in [0, 1] through `to_unit_float`, a batch at a time.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from worldvae.cli import UserError, reason, require


def pick_device(name: str = "auto", local_index: int | None = None) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; a named device must be available.

    Under torchrun, `local_index` (the process's LOCAL_RANK) makes CUDA this process's own GPU,
    made current before anything touches CUDA: no process opens a context on another's GPU.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name not in ("cpu", "mps") and not re.fullmatch(r"cuda(:\d+)?", name):
        raise UserError(f"DEVICE must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {name!r}")
    device = torch.device(name)
    if device.type == "cuda" and local_index is not None:
        device = torch.device("cuda", local_index)
    try:
        if device.type == "cuda" and device.index is not None:
            if device.index >= torch.cuda.device_count():
                raise RuntimeError(f"{torch.cuda.device_count()} CUDA devices are visible")
            torch.cuda.set_device(device)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as error:
        raise UserError(f"DEVICE={str(device)!r} is not available here ({reason(error, 150)}); use 'auto' or "
                        "'cpu'") from None
    return device


def pick_autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype to autocast to for PRECISION on `device`, or None for plain fp32.

    'auto' takes bf16 where the hardware computes it natively: a GPU of compute capability 8.0
    and up (Ampere, Hopper, ...; torch also says yes on older GPUs, which only emulate it,
    slower than fp32), or a CPU with AVX-512 BF16 / AMX. fp32 elsewhere.
    """
    if precision not in ("auto", "bf16", "fp32"):
        raise UserError(f"PRECISION must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision == "fp32" or device.type == "mps":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else None
    return torch.bfloat16 if cpu_computes_bf16() else None


def cpu_computes_bf16() -> bool:
    """Whether the CPU has bf16 instructions (AVX-512 BF16 or AMX). oneDNN also runs bf16 on plain
    AVX-512 by converting to fp32 and back, which trains at 0.55-0.7x the speed of fp32 (measured
    on an Intel Xeon @ 2.60GHz with AVX-512 and neither), so that does not count."""
    flags = set(_cpuinfo().split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def set_threads(threads: int | None) -> None:
    """CPU threads for this process's torch and for the processes it starts (collection workers
    inherit OMP_NUM_THREADS). Called before torch's first op: the pool's size is fixed then.
    One thread is the default: on an idle machine a second buys some speed at batch 8, but
    when another program holds a core, threads that wait on each other slow a run down
    several-fold (`python tools/bench.py` measures both, side by side)."""
    if threads is None:
        return
    if not (isinstance(threads, int) and 1 <= threads <= 1024):
        raise UserError(f"THREADS must be None or a whole number from 1 to 1024, got {threads!r}")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def auto_batch_size(device: torch.device) -> int:
    """BATCH_SIZE=None: small batches on a CPU, where more optimizer steps per second buy the most
    quality per minute; large ones on CUDA, where small batches leave the GPU waiting on Python."""
    return 512 if device.type == "cuda" else 8


def to_unit_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames (any shape) -> float32 in [0, 1], on the frames' own device."""
    return frames.float().div_(255)


@dataclass(frozen=True)
class Compute:
    """Where and how batches run: device, autocast dtype, memory layout, torch.compile."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def choose(cls, device: str | torch.device, precision: str, channels_last: bool, compile: str,
               long_run: bool = True, processes: int = 1) -> Compute:
        """COMPILE 'auto' compiles on CUDA only, only in a single process, and only for a run long
        enough to repay the ~20 s that compiling costs (`long_run`). On CPU it measured no gain;
        several processes on CUDA train DistributedDataParallel with SyncBatchNorm, a combination
        torch.compile has known failures with, so 'auto' leaves it eager ('on' still compiles)."""
        chosen = device if isinstance(device, torch.device) else pick_device(device)
        if compile not in ("auto", "on", "off"):
            raise UserError(f"COMPILE must be 'auto', 'on' or 'off', got {compile!r}")
        compile_ = compile == "on" or (compile == "auto" and chosen.type == "cuda" and long_run and processes == 1)
        if compile_ and not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("clang++")):
            print("COMPILE: no C++ compiler found, so the model runs without torch.compile")
            compile_ = False
        return cls(chosen, pick_autocast_dtype(precision, chosen), channels_last, compile_)

    @contextlib.contextmanager
    def same_noise(self, seed: int) -> Iterator[None]:
        """Random draws seeded by `seed` inside the block, on the CPU and the device; the global random state
        as it was afterwards (so a scoring pass repeats itself and takes nothing from training's stream)."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            yield

    def sums(self, n: int) -> torch.Tensor:
        """n zeros on the device to sum losses into: float64, or float32 on MPS, which has no float64."""
        return torch.zeros(n, dtype=torch.float32 if self.device.type == "mps" else torch.float64, device=self.device)

    def inputs(self, frames: torch.Tensor) -> torch.Tensor:
        """A uint8 batch -> a float batch in [0, 1] on the device, in the chosen layout."""
        x = to_unit_float(frames.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    def prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def for_training(self, model: nn.Module) -> nn.Module:
        """The module to train through: compiled or not, it shares `model`'s weights, and
        `model` itself (no `_orig_mod.` prefixes) is what checkpoints save."""
        return torch.compile(model) if self.compile else model

    def __str__(self) -> str:
        dtype = str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else "fp32"
        layout = ", channels_last" if self.channels_last else ""
        return f"{self.device}, {dtype}{layout}{', compiled' if self.compile else ''}"


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity (taskset, a container's cpuset), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpuinfo() -> str:
    """The text of /proc/cpuinfo, or nothing where there is none (macOS, Windows)."""
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.read_text() if cpuinfo.exists() else ""


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo or the platform gives it."""
    names = [line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")]
    return names[0] if names else platform.processor()


def machine() -> dict:
    """The CPU (and whether it has AMX and AVX-512 BF16), the device and torch: printed beside every number."""
    flags = _cpuinfo()
    device = pick_device("auto")
    return {
        "cpu": cpu_model(),
        "cores": usable_cpus(),
        "amx": "amx_tile" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else device.type,
        "torch": torch.__version__,
    }


def available_memory() -> int:
    """Bytes of RAM available to a new allocation (MemAvailable), or a generous 64 GiB where unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 64 * 2**30


def require_memory(n_bytes: float, what: str, fix: str) -> None:
    """Refuse, before any work, `what` that would take more than half the available RAM."""
    room = available_memory() / 2
    require(n_bytes <= room, f"{what} would take {n_bytes / 2**30:,.1f} GiB of memory, more than half the "
            f"{2 * room / 2**30:.1f} GiB available: {fix}")

