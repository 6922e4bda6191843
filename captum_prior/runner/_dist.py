"""``torch.distributed`` plumbing for the runner (torchrun's environment).

Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised with
gloo on CPU and NCCL on CUDA, one device per rank (``LOCAL_RANK``).  A group
the caller initialised already is used as is and left open.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Optional, Union

import torch
import torch.distributed as dist


def resolve_device(device: Union[None, str, torch.device]) -> torch.device:
    """``None``/``"auto"``: ``cuda:LOCAL_RANK`` when CUDA exists, else CPU;
    ``"cuda"`` becomes ``cuda:LOCAL_RANK``."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None or device == "auto":
        return torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device is 'cuda' but torch sees no CUDA device; use --device cpu")
        if dev.index is None:
            dev = torch.device(f"cuda:{local % torch.cuda.device_count()}")
    return dev


class Group:
    """Rank, world size and barriers; a no-op in a single process."""

    def __init__(self, device: torch.device) -> None:
        self.owned = False
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
            return
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            if not dist.is_available():
                raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
            self.owned = True
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
        else:
            self.rank, self.world = 0, 1

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()
            self.owned = False


def group_or_none(device: Optional[torch.device] = None) -> Group:
    return Group(device if device is not None else torch.device("cpu"))
