"""
detectron2's ``launch`` and ``create_ddp_model``, also for machines without GPUs.

On CUDA machines both are detectron2's own (NCCL, one process per GPU). Without CUDA,
``--num-gpus N`` is read as N processes: they join a GLOO process group, and the model is
wrapped in DDP without ``device_ids`` (which DDP accepts only for GPU modules). detectron2 v0.6
asserts CUDA in its worker and always passes ``device_ids``; later versions use GLOO without
CUDA but still pass ``device_ids``, hence these thin versions.
"""

import logging
import os
from datetime import timedelta

import detectron2.utils.comm as comm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import create_ddp_model as _d2_create_ddp_model
from detectron2.engine import launch as _d2_launch

__all__ = ["create_ddp_model", "launch"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)


def create_ddp_model(model, *, fp16_compression=False, **kwargs):
    """
    detectron2's ``create_ddp_model``, with ``device_ids=None`` for a model on the CPU.

    Returns ``model`` itself in a single process.
    """
    on_cuda = any(p.device.type == "cuda" for p in model.parameters())
    if comm.get_world_size() > 1 and not on_cuda:
        kwargs.setdefault("device_ids", None)
    return _d2_create_ddp_model(model, fp16_compression=fp16_compression, **kwargs)


def launch(
    main_func,
    num_gpus_per_machine,
    num_machines=1,
    machine_rank=0,
    dist_url=None,
    args=(),
    timeout=DEFAULT_TIMEOUT,
):
    """
    Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes on each of ``num_machines``
    machines, as ``detectron2.engine.launch`` does.

    Without CUDA the processes use the GLOO backend and ``num_gpus_per_machine`` is the number
    of CPU processes per machine; each gets an equal share of the CPU threads.
    """
    if torch.cuda.is_available():
        return _d2_launch(
            main_func,
            num_gpus_per_machine,
            num_machines=num_machines,
            machine_rank=machine_rank,
            dist_url=dist_url,
            args=args,
            timeout=timeout,
        )
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        return main_func(*args)
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto works on one machine only; give tcp://HOST:PORT")
        from detectron2.engine.launch import _find_free_port

        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.spawn(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


def _cpu_worker(
    local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url, args, timeout
):
    global_rank = machine_rank * num_per_machine + local_rank
    try:
        dist.init_process_group(
            backend="GLOO",
            init_method=dist_url,
            world_size=world_size,
            rank=global_rank,
            timeout=timeout,
        )
    except Exception:
        logger.error(f"Process group URL: {dist_url}")
        raise
    _create_local_process_group(num_per_machine)
    # Processes on one machine share its cores; oversubscribed threads slow every process down.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_per_machine))
    comm.synchronize()
    main_func(*args)


def _create_local_process_group(num_per_machine):
    """The group of the processes on this machine (``comm.get_local_rank`` etc. read it)."""
    if hasattr(comm, "create_local_process_group"):  # detectron2 > 0.6
        comm.create_local_process_group(num_per_machine)
        return
    num_machines = dist.get_world_size() // num_per_machine
    machine_rank = dist.get_rank() // num_per_machine
    for i in range(num_machines):  # every process must create every group
        group = dist.new_group(list(range(i * num_per_machine, (i + 1) * num_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
