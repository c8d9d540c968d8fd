"""shared_kd.engine.launch: detectron2's launch and DDP wrapper, also without GPUs.

Runs with processes (GLOO, DDP) are in test_distributed.py and test_multi_machine.py (slow);
these check what happens in this process.
"""

import importlib
import os

import detectron2.utils.comm as comm
import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

from shared_kd.engine.launch import _create_local_process_group, create_ddp_model, launch

# the module (shared_kd.engine's `launch` is the function)
launch_module = importlib.import_module("shared_kd.engine.launch")


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_one_process_runs_here(no_cuda):
    ran = []

    def main(a, b):
        ran.append(os.getpid())
        return a + b

    assert launch(main, 1, args=(2, 3)) == 5
    assert ran == [os.getpid()]  # in this process, no process group
    assert launch(main, 1, num_machines=1, dist_url="auto", args=(1, 1)) == 2


def test_auto_url_is_for_one_machine_only(no_cuda):
    with pytest.raises(ValueError, match="--dist-url auto works on one machine only"):
        launch(print, 1, num_machines=2, machine_rank=0, dist_url="auto")


def test_with_cuda_it_is_detectron2s_launch(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        launch_module, "_d2_launch", lambda *args, **kwargs: calls.append((args, kwargs)) or "d2"
    )
    assert launch(print, 4, num_machines=2, machine_rank=1, dist_url="tcp://h:1", args=(7,)) == "d2"
    ((args, kwargs),) = calls
    assert args == (print, 4)
    assert kwargs == dict(
        num_machines=2,
        machine_rank=1,
        dist_url="tcp://h:1",
        args=(7,),
        timeout=launch_module.DEFAULT_TIMEOUT,
    )


def test_one_process_needs_no_ddp():
    model = nn.Linear(2, 2)
    assert comm.get_world_size() == 1
    assert create_ddp_model(model, broadcast_buffers=False) is model


@pytest.mark.parametrize("given, device_ids", [({}, None), ({"device_ids": [0]}, [0])])
def test_a_cpu_model_gets_no_device_ids(monkeypatch, given, device_ids):
    calls = []
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(
        launch_module, "_d2_create_ddp_model", lambda model, **kwargs: calls.append(kwargs) or model
    )
    create_ddp_model(nn.Linear(2, 2), broadcast_buffers=False, **given)
    assert calls == [dict(fp16_compression=False, broadcast_buffers=False, device_ids=device_ids)]


@pytest.fixture
def one_process_group(tmp_path, monkeypatch):
    """A GLOO process group of this process alone (no process is started)."""
    monkeypatch.setattr(comm, "_LOCAL_PROCESS_GROUP", None)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", world_size=1, rank=0
    )
    yield
    dist.destroy_process_group()


def test_the_local_group_without_detectrons_helper(one_process_group, monkeypatch):
    monkeypatch.delattr(comm, "create_local_process_group", raising=False)  # detectron2 0.6
    _create_local_process_group(1)
    assert comm._LOCAL_PROCESS_GROUP is not None
    assert (comm.get_local_rank(), comm.get_local_size()) == (0, 1)


def test_the_local_group_with_detectrons_helper(monkeypatch):
    calls = []
    monkeypatch.setattr(comm, "create_local_process_group", calls.append, raising=False)
    _create_local_process_group(4)  # detectron2 > 0.6 builds it
    assert calls == [4]
