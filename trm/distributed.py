"""torch.distributed plumbing for training: process group, device, and the few collectives used.

Single process is the default. Under torchrun (WORLD_SIZE / LOCAL_RANK set) the default group
is NCCL on GPUs and gloo on CPU, plus a gloo group for Python objects (checkpoint state,
config). No DDP, as upstream: parameters and buffers are broadcast from rank 0 once, and
gradients are all-reduced by hand (SUM of loss / global_batch -> the global mean).

    ctx = setup("auto")          # rank, world_size, local_rank, device
    broadcast_module(model, ctx)
    ...loss.backward(); all_reduce_grads(model.parameters(), ctx)
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    object_group: object = None  # gloo group for *_object collectives (None: the default group)
    owns_group: bool = False  # we created the process group (and destroy it at the end)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    pref = (preference or "auto").lower()
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {preference!r} requested but CUDA is not available")
        return torch.device(pref) if ":" in pref else torch.device("cuda", local_rank)
    return torch.device(pref)


def setup(device: str = "auto", timeout_s: float | None = None) -> DistContext:
    """Join the torchrun process group when launched by torchrun; else a single process.

    timeout_s: how long a collective may wait for a missing rank before it fails (gloo raises; NCCL's
    watchdog aborts the communicator); None = torch's default (10 min NCCL, 30 min gloo)."""
    launched = "WORLD_SIZE" in os.environ and "RANK" in os.environ
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not launched and not dist.is_initialized():
        return DistContext(device=dev)
    owns = False
    kw = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", **kw)
        owns = True
    group = dist.new_group(backend="gloo", **kw) if dist.get_backend() != "gloo" else None
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                       device=dev, object_group=group, owns_group=owns)


def teardown(ctx: DistContext, clean: bool = True) -> None:
    """Leave the process group we created. After an error (clean=False) skip the barrier: the
    other ranks may be blocked in a collective, and torchrun stops them when this one exits."""
    if ctx.owns_group and dist.is_initialized():
        if clean:
            dist.barrier()
            dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module, ctx: DistContext, src: int = 0) -> None:
    """Every parameter and buffer (persistent or not) takes rank `src`'s value."""
    if not ctx.distributed:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def all_reduce_grads(params, ctx: DistContext) -> None:
    """SUM every .grad over ranks (each rank back-propagated loss / global_batch_size)."""
    if not ctx.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])  # one collective instead of one per tensor
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.distributed:
        dist.all_reduce(t)
    return t


def all_reduce_max(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """In place: the element-wise max over ranks (a no-op in one process)."""
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def all_gather_cat(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenation over ranks along dim 0 (rank 0's rows first), on every rank."""
    if not ctx.distributed:
        return t
    out = t.new_empty((ctx.world_size * t.shape[0], *t.shape[1:]))
    dist.all_gather_into_tensor(out, t.contiguous())
    return out


def gather_objects(obj, ctx: DistContext) -> list | None:
    """Rank 0 gets [obj of rank 0, obj of rank 1, ...]; other ranks get None."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, out, dst=0, group=ctx.object_group)
    return out


def broadcast_object(obj, ctx: DistContext, src: int = 0):
    """Every rank gets rank `src`'s obj (others may pass None)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=ctx.object_group)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier(group=ctx.object_group)
