"""torch.distributed glue: one process per device, launched by torchrun (or `vlsa train --devices N`).

NCCL on GPUs, gloo on CPUs. The global batch (`train.batch_size`) and its augmentation are drawn per
step from the (seed, step) generator on every rank, and each rank trains on its slice: a
distributed sampler reseeded every step. The union over ranks is exactly the 1-process batch and
DDP averages the gradients, so N processes reproduce a 1-process run with the same global batch
(up to floating-point summation order).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vlsa.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init(device_name: str) -> tuple[DistInfo, torch.device | None]:
    """Join the process group torchrun set up (if any) -> (info, device for this rank or None)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), None
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return DistInfo(rank, world, local), device


def shard(batch: torch.Tensor, info: DistInfo, groups: int = 1) -> torch.Tensor:
    """This rank's slice of a global batch (first dimension). `groups` > 1: the batch is that many
    stacked copies of the global batch (e.g. two appearance draws of the same images), each sliced
    alike, so a rank holds every copy of the images it holds."""
    if not info.enabled:
        return batch
    if groups > 1:
        return torch.cat([shard(part, info) for part in batch.chunk(groups)])
    if len(batch) % info.world:
        raise ConfigError(f"config key 'train.batch_size': {len(batch)} is not divisible by {info.world} processes")
    per = len(batch) // info.world
    return batch[info.rank * per : (info.rank + 1) * per]


def mean_across(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / info.world


def broadcast_float(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(t, src=0)
    return float(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, argv: list[str]) -> int:
    """Re-run `vlsa <argv>` under torchrun with `nproc` processes on this node."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "vlsa", *argv]
    return subprocess.run(cmd, check=False).returncode
