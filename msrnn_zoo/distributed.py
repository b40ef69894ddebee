"""Training on several processes (GPUs, nodes) through ``torchrun``: the few facts the trainer needs.

``torchrun --nproc_per_node N -m msrnn_zoo.cli train ...`` (or ``torchrun ... $(which msrnn-zoo) train ...``)
starts N copies of the command with ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set. Each copy joins one
process group (NCCL between GPUs, gloo between CPU processes), trains its own shard of every batch, and
DistributedDataParallel averages the gradients, so N processes of batch B take the steps one process of
batch N x B would. Only rank 0 writes the run directory. Without those variables (or with
``WORLD_SIZE=1``) nothing here does anything: a plain ``msrnn-zoo train`` runs as it always did.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    """Where this process stands in the job: its rank, the number of processes, its GPU on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0


def from_env() -> Context:
    """The job as torchrun describes it in the environment (a single process when it does not)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return Context()
        return Context(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError):
        raise ValueError(
            "WORLD_SIZE, RANK and LOCAL_RANK describe a torchrun job, but here they are incomplete or not numbers "
            f"(WORLD_SIZE={os.environ.get('WORLD_SIZE')!r}, RANK={os.environ.get('RANK')!r}, "
            f"LOCAL_RANK={os.environ.get('LOCAL_RANK')!r}): start several processes with torchrun, or unset "
            "WORLD_SIZE to run one.") from None


def is_main_process() -> bool:
    """Whether this process should print and write (rank 0, or no torchrun at all; or a job described wrongly,
    whose error must be seen)."""
    try:
        return from_env().is_main
    except ValueError:
        return True


def setup(device: torch.device) -> tuple[Context, torch.device]:
    """Join the job's process group (once) and pick this process's device: ``cuda:LOCAL_RANK`` on GPUs.

    The backend follows the device: NCCL for CUDA, gloo for the CPU.
    """
    ctx = from_env()
    if not ctx.active:
        return ctx, device
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # the rendezvous torchrun sets up: without it init_process_group names only the variable, not the cause
        unset = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
        if unset:
            raise ValueError(f"WORLD_SIZE={ctx.world_size} describes a job of several processes, but "
                             f"{' and '.join(unset)} (where they meet, which torchrun sets) is not set: start the "
                             "job with torchrun (torchrun --nproc_per_node N -m msrnn_zoo.cli train ...), or unset "
                             "WORLD_SIZE to run one process.")
        if "TORCHELASTIC_RUN_ID" not in os.environ:  # started by hand: a missing process is waited for in silence
            print(f"Rank {ctx.rank} of {ctx.world_size}: waiting for the job's other processes at "
                  f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}, until PyTorch's timeout; start them with "
                  "the same MASTER_ADDR and MASTER_PORT, or stop this (Ctrl-C) and start the job with torchrun.",
                  file=sys.stderr, flush=True)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.get_world_size() != ctx.world_size:
        raise ValueError(f"The process group has {dist.get_world_size()} processes but WORLD_SIZE says "
                         f"{ctx.world_size}; start the job with torchrun.")
    return ctx, device


def barrier(ctx: Context) -> None:
    if ctx.active:
        dist.barrier()


def mean(ctx: Context, value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over all processes (itself when alone)."""
    if not ctx.active:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / ctx.world_size


def lost_a_process(exc: BaseException) -> bool:
    """Whether ``exc`` is this process's side of another process of the job having stopped mid-step (killed, out of
    memory): NCCL's failures are ``DistError``s, gloo's bare ``RuntimeError``s raised by its transport. Its text ("Read
    error ... Connection reset by peer") names neither the job nor what to do."""
    return isinstance(exc, dist.DistError) or (isinstance(exc, RuntimeError) and "gloo/transport" in str(exc))



def launcher(processes: int) -> str:
    """The command that starts the zoo's CLI on ``processes`` processes: a run of several resumes only under torchrun
    with as many (a plain `msrnn-zoo train --resume` of it is refused)."""
    return f"torchrun --nproc_per_node {processes} -m msrnn_zoo.cli" if processes > 1 else "msrnn-zoo"

def shutdown() -> None:
    """Leave the process group at the end of a job (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
