"""
Several training processes on any device: detectron2's ``launch``, without its CUDA-only
assumptions, and ``torchrun``.

detectron2 0.6's ``launch`` spawns one process per GPU and, in each, asserts that CUDA is
available, joins an NCCL process group and calls ``torch.cuda.set_device``: a CPU model, or a
machine without GPUs, cannot train in several processes. This module keeps its interface and
its meaning (``num_processes_per_machine`` = detectron2's ``--num-gpus``; ``--num-machines``,
``--machine-rank``, ``--dist-url``) and its process layout (``torch.multiprocessing.spawn``, the
global rank ``machine_rank * per_machine + local_rank``, the per-machine process group that
``detectron2.utils.comm.get_local_rank`` reads), and chooses the backend from the model's
device: NCCL for ``cuda``, gloo for ``cpu``. Later detectron2 releases made the same change,
keyed on ``torch.cuda.is_available()``; keying it on MODEL.DEVICE also lets a CPU model train
in several processes on a machine that has GPUs.

Started by ``torchrun`` (the environment holds ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE`` and ``MASTER_ADDR``/``MASTER_PORT``), nothing is spawned: the process joins
the group with ``init_method="env://"`` and runs ``main_func`` itself. That is how clusters and
SLURM start it (``srun torchrun ...``), one process per rank.
"""

import logging
import os
from datetime import timedelta
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine.launch import DEFAULT_TIMEOUT, _find_free_port
from detectron2.utils import comm

__all__ = ["launch", "distributed_backend", "started_by_torchrun"]

logger = logging.getLogger(__name__)

# The variables torchrun (torch.distributed.run) sets in every process it starts.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def distributed_backend(device: str) -> str:
    """The torch.distributed backend for a model on ``device`` (MODEL.DEVICE): "nccl" for
    CUDA, "gloo" otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def started_by_torchrun() -> bool:
    """Whether this process was started by torchrun (its rank variables are set)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def launch(
    main_func: Callable,
    num_processes_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence = (),
    *,
    device: str = "cuda",
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """
    Run ``main_func(*args)`` in every process of a (possibly) distributed job, as
    ``detectron2.engine.launch`` does, for a model on ``device``.

    Args:
        main_func: a picklable (module-level) function.
        num_processes_per_machine: processes to spawn on this machine (``--num-gpus``); with a
            CUDA device, one per GPU.
        num_machines, machine_rank: the machines of the job and this one's index.
        dist_url: the rendezvous, e.g. "tcp://10.0.0.1:29500" (the address of machine 0), or
            "auto" (a free port on this machine; single-machine jobs only).
        args: the arguments of ``main_func``.
        device: MODEL.DEVICE; chooses the backend (:func:`distributed_backend`).
        timeout: of the process group's collective operations.

    Under torchrun, the process count and rendezvous come from the environment; the machine
    flags must then be left at their defaults.
    """
    backend = distributed_backend(device)
    if started_by_torchrun():
        if num_processes_per_machine != 1 or num_machines != 1 or machine_rank != 0:
            raise ValueError(
                "Started by torchrun, which sets the processes and machines itself "
                f"(here WORLD_SIZE={os.environ['WORLD_SIZE']}, "
                f"LOCAL_WORLD_SIZE={os.environ['LOCAL_WORLD_SIZE']}): leave --num-gpus, "
                "--num-machines and --machine-rank at their defaults, and give torchrun "
                "--nproc-per-node and --nnodes instead"
            )
        world_size = int(os.environ["WORLD_SIZE"])
        per_machine = int(os.environ["LOCAL_WORLD_SIZE"])
        if world_size > 1:
            _join(
                int(os.environ["RANK"]),
                int(os.environ["LOCAL_RANK"]),
                world_size,
                per_machine,
                "env://",
                backend,
                timeout,
            )
        main_func(*args)
        return

    world_size = num_machines * num_processes_per_machine
    if world_size <= 1:
        main_func(*args)
        return
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError(
                "--dist-url auto picks a port on this machine; a job of several machines needs "
                "the address of machine 0, e.g. --dist-url tcp://10.0.0.1:29500"
            )
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if backend == "nccl":
        _check_gpus(num_processes_per_machine)
    mp.spawn(
        _spawned_worker,
        nprocs=num_processes_per_machine,
        args=(
            main_func,
            args,
            machine_rank,
            num_processes_per_machine,
            world_size,
            dist_url,
            backend,
            timeout,
        ),
        daemon=False,
    )


def _check_gpus(processes: int) -> None:
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if processes > available:
        raise RuntimeError(
            f"{processes} processes per machine with MODEL.DEVICE cuda need {processes} GPUs; "
            f"this machine has {available}. Lower --num-gpus, or train on the CPU "
            "(MODEL.DEVICE cpu: the processes then use gloo)."
        )


def _spawned_worker(
    local_rank: int,
    main_func: Callable,
    args: Sequence,
    machine_rank: int,
    per_machine: int,
    world_size: int,
    dist_url: str,
    backend: str,
    timeout: timedelta,
) -> None:
    global_rank = machine_rank * per_machine + local_rank
    _join(global_rank, local_rank, world_size, per_machine, dist_url, backend, timeout)
    main_func(*args)


def _join(
    rank: int,
    local_rank: int,
    world_size: int,
    per_machine: int,
    init_method: str,
    backend: str,
    timeout: timedelta,
) -> None:
    """Join the process group; set the per-machine group, the GPU or the CPU threads."""
    if world_size % per_machine != 0:
        raise ValueError(
            f"Every machine must run the same number of processes: {world_size} in all is not "
            f"a multiple of {per_machine} per machine"
        )
    try:
        dist.init_process_group(
            backend=backend,
            init_method=init_method,
            world_size=world_size,
            rank=rank,
            timeout=timeout,
        )
    except Exception as e:
        raise RuntimeError(
            f"Rank {rank} of {world_size} could not join the {backend} process group at "
            f"{init_method!r}: {e}"
        ) from e
    # detectron2's comm.get_local_rank()/get_local_size() read this group (its own launch sets
    # it the same way). Every process creates every machine's group, in the same order.
    for machine in range(world_size // per_machine):
        ranks = list(range(machine * per_machine, (machine + 1) * per_machine))
        group = dist.new_group(ranks)
        if rank in ranks:
            comm._LOCAL_PROCESS_GROUP = group
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    elif "OMP_NUM_THREADS" not in os.environ:
        # The processes of a machine share its cores (torchrun sets OMP_NUM_THREADS=1 itself).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_machine))
    # (A barrier right after joining avoids a timeout on the first collective: detectron2 does it.)
    comm.synchronize()
