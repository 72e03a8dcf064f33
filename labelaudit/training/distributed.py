"""Several processes through PyTorch's own engine: torchrun starts them, torch.distributed joins them,
DistributedDataParallel averages the gradients.

``torchrun --nproc-per-node N -m labelaudit scan DATA`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` in every process; :func:`join` sees them and initialises the process group, NCCL on
GPUs (each process on ``cuda:LOCAL_RANK``) and gloo on the CPU. Without them (a plain
``labelaudit scan``) there is one process and every helper here is a no-op, so the single-process
path is the same code with a world of one.

How a run on N ranks stays the run of one process (training/loop.py):

- every rank holds the whole decoded uint8 dataset; the batch order is the seeded permutation of one
  process, drawn identically on every rank;
- each global batch is augmented whole on every rank with the same generator (the same random
  numbers one process draws) and split in near-equal shares (:func:`shard`); each rank's loss is
  weighted by its share of the batch, so DDP's average of the ranks' gradients is the gradient of
  the global batch's mean loss;
- BatchNorm is plain BatchNorm over each rank's share of the batch, and DDP broadcasts rank 0's
  running statistics before every forward pass. SyncBatchNorm would reproduce the statistics of the
  whole batch, at one collective per BatchNorm layer per step, and is not available on the CPU
  (gloo); with batches of 128 a share of 64 per rank estimates the statistics well. That, and the
  order of the gradient reduction, are where N ranks and one process differ;
- per-sample records are gathered by sample id after every epoch (dynamics/recorders.py), and every
  sample must be recorded exactly once per epoch.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UsageError

TIMEOUT = datetime.timedelta(minutes=30)  # a collective that waits longer ends the run (torch's default)


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes: ``rank`` of ``size`` (0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Rank 0: the one that decides, writes, prints and checkpoints."""
        return self.rank == 0

    def as_dict(self) -> dict:
        return {"world_size": self.size, "backend": self.backend}


def _env(name: str, default: int) -> int:
    """An integer the launcher set in the environment (torchrun: WORLD_SIZE, RANK, LOCAL_RANK)."""
    return int(os.environ.get(name, "") or default)


def launched() -> bool:
    """Whether torchrun (or another launcher that sets WORLD_SIZE) started more than one process."""
    return _env("WORLD_SIZE", 1) > 1


def env_rank() -> int:
    """This process's rank from the launcher's environment (0 without one): the CLI asks it before
    any process group exists, to print on rank 0 only."""
    return _env("RANK", 0)


def current() -> World:
    """The world of this process: the initialised process group's, else a world of one."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), _env("LOCAL_RANK", 0), dist.get_backend())


def join(device_spec: str = "auto") -> World:
    """Initialise the process group when the launcher started several processes (and it is not yet);
    the backend follows the device the run asked for: NCCL for CUDA, gloo for the CPU."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return current()
    if not dist.is_available():
        raise UsageError("this torch build has no torch.distributed; run labelaudit without torchrun")
    spec = (device_spec or "auto").strip().lower()
    cuda = torch.cuda.is_available() and spec != "cpu"
    backend = "nccl" if cuda and dist.is_nccl_available() else "gloo"
    local_rank = _env("LOCAL_RANK", 0)
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"LOCAL_RANK {local_rank}: only {torch.cuda.device_count()} CUDA device(s) on this "
                             "machine; start at most that many processes per node (--nproc-per-node)")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=TIMEOUT)
    return current()


def leave() -> None:
    """Destroy the process group, if one was initialised (the CLI, after its command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(ids: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's near-equal share of a global batch's sample ids (all of them in a world of one)."""
    return ids if world.size == 1 else ids.tensor_split(world.size)[world.rank]


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place; returns it (unchanged in a world of one)."""
    if world.size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def from_main(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Rank 0's ``tensor`` on every rank, in place; returns it."""
    if world.size > 1:
        dist.broadcast(tensor, src=0)
    return tensor


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def parallel(model: nn.Module, world: World) -> nn.Module:
    """``model`` in DistributedDataParallel when there are several ranks (it broadcasts rank 0's
    parameters and buffers now and its buffers before every forward pass), else ``model``. Call the
    wrapper for training; the plain module keeps the parameters for optimisers and checkpoints."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def decode_shared(listing, *, image_size: int, workers: int, cache_dir, progress=None, world: World):
    """The decoded dataset (data/dataset.py ``load_dataset``); under torchrun with a cache, every rank
    first decodes its share of the files into the cache (``prefill_cache``) and, after a barrier, reads
    the whole dataset from it. Ranks of one machine share its cache folder; on several machines a
    shared cache folder lets every rank read what the others decoded, and without one each machine's
    ranks decode what they miss themselves."""
    from ..data.dataset import load_dataset, prefill_cache

    if world.size > 1 and cache_dir is not None:
        prefill_cache(listing, image_size=image_size, workers=workers, cache_dir=cache_dir, part=world.rank,
                      parts=world.size, progress=progress)
        barrier(world)
    return load_dataset(listing, image_size=image_size, workers=workers, cache_dir=cache_dir, progress=progress)
