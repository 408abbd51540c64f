"""Data-parallel training under ``torchrun``: one process per core group or GPU.

    torchrun --nproc_per_node=K -m sccodec train …   (sets RANK, WORLD_SIZE, LOCAL_RANK)
        rank r: own random crops and levels ─▶ forward/backward ─▶ all-reduce grads ─▶ same step
        rank 0 alone: progress lines, validation, checkpoints

Without those variables training runs as a single process and nothing here costs anything.
gloo on CPU, NCCL on CUDA (PyTorch's recommendation for each). Every rank must take the same
number of optimiser steps, so the stop decision of a time-bounded run is rank 0's, broadcast.
"""
from __future__ import annotations

import gc
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from sccodec.device import torch_device


def has_native_bf16(device: torch.device) -> bool:
    """Whether bf16 convolutions run natively here: CUDA with bf16, CPUs with AVX512-BF16 or AMX.

    Why: elsewhere oneDNN emulates them, and an emulated bf16 convolution (forward and
    backward, on an AVX2-only CPU) is many times slower than the same one in fp32, so a run
    asked for bf16 there trains in fp32 instead.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: trust the request
        return True


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to call in training: DDP when distributed (its constructor syncs rank 0's weights)."""
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, on every rank."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def digests(self, model: nn.Module) -> list[str]:
        """Every rank's weights digest (gathered on all ranks): they must all be equal."""
        mine = weights_digest(model)
        if not self.enabled:
            return [mine]
        out: list[str] = [""] * self.world_size
        dist.all_gather_object(out, mine)
        return out

    def shutdown(self) -> None:
        """Leave the group together: a rank that tears gloo down while its peer is still sending
        can abort the peer at exit ("terminate called without an active exception")."""
        if self.enabled and dist.is_initialized():
            gc.collect()  # DDP wrappers in reference cycles still hold the group
            dist.barrier()
            dist.destroy_process_group()


def setup(device: str = "auto") -> Distributed:
    """Join the process group torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch_device(device)
    if dev.type == "cuda" and dev.index is None:  # one GPU per process on this node
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    if world <= 1:
        return Distributed(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(), device=dev)


def weights_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
