"""train_vae.main under torchrun, watched from inside, for tests/test_distributed.py.

After every optimizer step it checks that all processes hold the same weights, and it
records each file a process writes; each process leaves PROBE_DIR/rank_<RANK>.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import train_vae  # noqa: E402
from MyVAE import MyVAE  # noqa: E402
from worldvae import cli, files, resume  # noqa: E402

record = {"rank": int(os.environ["RANK"]), "checked_steps": 0, "checked_buffers": 0, "writes": [],
          "noise_differs": None}
_step, _write, _reparameterize = torch.optim.Adam.step, files.atomic_write, MyVAE.reparameterize


def reparameterize_and_compare(mu, log_var):
    """The first training step's noise, gathered from every process: each must draw its own."""
    state = torch.get_rng_state()
    z = _reparameterize(mu, log_var)
    if record["noise_differs"] is None and torch.is_grad_enabled():
        torch.set_rng_state(state)
        eps = torch.randn_like(mu)  # the very noise z was made with
        copies = [torch.empty_like(eps) for _ in range(dist.get_world_size())]
        dist.all_gather(copies, eps)
        record["noise_differs"] = not torch.equal(copies[0], copies[1])
    return z


def step_then_compare(self: torch.optim.Adam, *args, **kwargs):
    result = _step(self, *args, **kwargs)
    weights = torch.cat([p.detach().flatten() for group in self.param_groups for p in group["params"]])
    copies = [torch.empty_like(weights) for _ in range(dist.get_world_size())]
    dist.all_gather(copies, weights)
    if not all(torch.equal(copies[0], copy) for copy in copies):
        raise AssertionError(f"the processes' weights differ after step {record['checked_steps'] + 1}")
    record["checked_steps"] += 1
    return result


def logged_write(path, write) -> None:
    record["writes"].append(str(path))
    _write(path, write)


def failing_load(*_args):
    raise RuntimeError("injected on rank 0")


_forward = MyVAE.forward


def forward_and_compare_buffers(self, *args, **kwargs):
    """In training, DDP hands every process rank 0's BatchNorm statistics before each forward: there they agree."""
    if self.training and torch.is_grad_enabled():
        buffers = torch.cat([b.detach().float().flatten() for b in self.buffers()])
        copies = [torch.empty_like(buffers) for _ in range(dist.get_world_size())]
        dist.all_gather(copies, buffers)
        if not all(torch.equal(copies[0], copy) for copy in copies):
            raise AssertionError("the processes' BatchNorm statistics differ at a training forward")
        record["checked_buffers"] += 1
    return _forward(self, *args, **kwargs)


MyVAE.forward = forward_and_compare_buffers
torch.optim.Adam.step = step_then_compare
MyVAE.reparameterize = staticmethod(reparameterize_and_compare)
files.atomic_write = logged_write  # every writer calls it through its module
if os.environ.get("PROBE_FAIL_RESUME_ON_RANK_0") and record["rank"] == 0:
    resume.load_resumable = failing_load
try:
    cli.run(train_vae.main, sys.argv[1:])
finally:
    Path(os.environ["PROBE_DIR"], f"rank_{record['rank']}.json").write_text(json.dumps(record))
