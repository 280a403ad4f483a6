"""Where and how tensors run: device, autocast precision, memory layout, torch.compile.

Every script picks its device here (cuda, then mps, then cpu), and every uint8 frame
becomes a float in [0, 1] through `to_unit_float`, a batch at a time.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import torch
from torch import nn

from cli import UserError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; a named device must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"DEVICE={name!r} is not available here ({reason[:150]}); use 'auto' or 'cpu'") from None
    return device


def pick_autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype to autocast to for PRECISION on `device`, or None for plain fp32.

    'auto' takes bf16 where the hardware computes it natively (CUDA with bf16, or a CPU
    with AVX-512 BF16 / AMX) and fp32 elsewhere, where emulated bf16 would be slower.
    """
    if precision not in ("auto", "bf16", "fp32"):
        raise UserError(f"PRECISION must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision == "fp32" or device.type == "mps":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


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
    def choose(cls, device: str, precision: str, channels_last: bool, compile: str, long_run: bool = True) -> Compute:
        """COMPILE 'auto' compiles on CUDA only, and only for a run long enough to repay the
        ~20 s that compiling costs (`long_run`); on CPU it measured no gain."""
        chosen = pick_device(device)
        if compile not in ("auto", "on", "off"):
            raise UserError(f"COMPILE must be 'auto', 'on' or 'off', got {compile!r}")
        compile_ = compile == "on" or (compile == "auto" and chosen.type == "cuda" and long_run)
        if compile_ and not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("clang++")):
            print("COMPILE: no C++ compiler found, so the model runs without torch.compile")
            compile_ = False
        return cls(chosen, pick_autocast_dtype(precision, chosen), channels_last, compile_)

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
