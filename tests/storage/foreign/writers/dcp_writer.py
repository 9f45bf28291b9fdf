"""Write real PyTorch Distributed Checkpoints for the tests: ``python dcp_writer.py OUT``.

* ``OUT/single``: one process (DCP's no-process-group path): nested state with several dtypes,
  a 0-d tensor, an empty tensor and non-tensor values.
* ``OUT/ranks``: two processes joined by gloo, each saving its shards of DTensors (rows,
  columns, uneven rows, a replicated tensor) into ``__0_0.distcp`` and ``__1_0.distcp``.
"""

from __future__ import annotations

import os
import sys
import warnings

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp

warnings.filterwarnings("ignore")


def full_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "rows": torch.randn(6, 4, generator=generator),
        "cols": torch.randn(3, 8, generator=generator).to(torch.bfloat16),
        "uneven": torch.arange(5 * 3, dtype=torch.int64).reshape(5, 3),
        "replicated": torch.randn(4, generator=generator).to(torch.float16),
    }


def write_single(path: str) -> None:
    generator = torch.Generator().manual_seed(1)
    state = {
        "model": {
            "embed.weight": torch.randn(10, 4, generator=generator),
            "norm.weight": torch.ones(4, dtype=torch.bfloat16),
            "head.bias": torch.zeros(3, dtype=torch.float64),
            "mask": torch.tensor([True, False, True]),
            "counts": torch.arange(7, dtype=torch.uint8),
            "scale": torch.tensor(2.5),
            "empty": torch.zeros(0, 3),
        },
        "optimizer": {"state": {"0": {"step": torch.tensor(3.0)}}, "lr": 0.01},
        "step": 12,
        "name": "run-1",
    }
    dcp.save(state, checkpoint_id=path)


def rank_main(rank: int, world: int, path: str, init: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    tensors = full_tensors()
    placements = {"rows": Shard(0), "cols": Shard(1), "uneven": Shard(0), "replicated": Replicate()}
    state = {"model": {k: distribute_tensor(t, mesh, [placements[k]]) for k, t in tensors.items()}}
    dcp.save(state, checkpoint_id=path)
    dist.destroy_process_group()


def main() -> None:
    out = sys.argv[1]
    write_single(os.path.join(out, "single"))
    init = f"file://{os.path.join(out, 'rendezvous')}"
    ranks = os.path.join(out, "ranks")
    mp.start_processes(rank_main, args=(2, ranks, init), nprocs=2, start_method="fork")


if __name__ == "__main__":
    main()
