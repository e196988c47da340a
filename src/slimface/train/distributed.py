"""torchrun-native process-group handling, lazily: nothing happens at import time.

``torchrun --nproc_per_node N`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` (and the
rendezvous address); without them everything runs in one process and ``torch.distributed`` is
never initialised (STYLE.md: DDP is an option, not a requirement).
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from slimface.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPU), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")),
                    world)
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend, init_method="env://")
    return info


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a scalar over ranks (identity in one process)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on any: ranks must agree on stopping early
    (a wall-clock limit), or one waits forever in the next all-reduce."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Destroy the group and collect it now, while the interpreter is alive.

    gloo's worker threads free each finished collective's tensors; if the group outlives
    the interpreter (a reference cycle keeps the DDP reducer alive), that happens during
    shutdown and aborts the process ("terminate called without an active exception"), so
    torchrun reports a finished run as failed. Collecting here joins those threads first.
    """
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()


def resolve_device(name: str, info: DistInfo = DistInfo()) -> torch.device:
    """``TrainConfig.device`` as a torch device (plain ``"cuda"`` under torchrun: this
    process's local GPU); a GPU torch cannot see is a ConfigError."""
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and info.enabled:
        device = torch.device("cuda", info.local_rank)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name!r}: torch sees no CUDA GPU here (torch "
                              f"{torch.__version__}); train with device='cpu'")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"device={name!r}: torch sees {torch.cuda.device_count()} GPU(s)")
    return device


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live (objectives move their batches there)."""
    return next(model.parameters()).device
