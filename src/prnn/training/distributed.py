"""Data-parallel training on ``torch.distributed`` (processes launched by ``torchrun``).

Every process (rank) holds the whole model and the whole training log, takes every
``world_size``-th session (in start-time order) as its shard and runs session-parallel
mini-batches on it. After each step's backward pass the ranks exchange gradients: the dense
ones and those of the item-table rows the step touched, summed over the ranks into the union of
their rows and divided by the number of ranks (what DistributedDataParallel does with sparse
gradients). Every rank then applies the same averaged gradients with the same optimiser state,
so the replicas stay identical without ever sending weights.

PyTorch's ``DistributedDataParallel`` module wrapper is not used: it hooks into autograd, and
the training step has a hand-written backward pass (``prnn.network``). The exchange runs on the
same collectives DDP uses (``all_gather``, ``all_reduce``), over gloo on CPU or NCCL on GPUs,
with ``torchrun``'s rendezvous, so multi-node runs take torchrun's own options.

Three collectives per step: the row counts, the rows, then one flat buffer of every gradient.
The ranks draw the same negative samples (same seed), so the rows they touch mostly coincide
and the union stays close to one rank's (2,048 samples + the ranks' targets).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from prnn.errors import ConfigError

log = logging.getLogger(__name__)

#: what torchrun sets in every process it starts
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedTraining:
    """This process's place in a data-parallel training (its process group already set up)."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str | None = None) -> tuple[DistributedTraining, str]:
        """Join the process group torchrun describes in the environment.

        Returns (this process's place, the device to train on: ``cuda:LOCAL_RANK`` when
        ``device`` is cuda, else as given or cpu). The backend is NCCL on CUDA, gloo on CPU.
        """
        missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
        if missing:
            raise ConfigError(
                "--distributed runs under torchrun, which starts the processes and tells each "
                f"its rank (missing: {', '.join(missing)}); e.g. torchrun --nproc_per_node 2 "
                "-m prnn train ... --distributed"
            )
        import torch.distributed as dist

        device = device or "cpu"
        cuda = torch.device(device).type == "cuda"
        if cuda:
            local_rank = int(os.environ["LOCAL_RANK"])
            if local_rank >= torch.cuda.device_count():
                raise ConfigError(
                    f"--distributed --device cuda: process {local_rank} of this node has no GPU "
                    f"of its own ({torch.cuda.device_count()} here); start at most that many "
                    "processes per node (torchrun --nproc_per_node)"
                )
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size()), device

    @classmethod
    def current(cls) -> DistributedTraining:
        """The place of this process in the process group already initialised."""
        import torch.distributed as dist

        return cls(rank=dist.get_rank(), world_size=dist.get_world_size())

    def shard(self, session_order: np.ndarray) -> np.ndarray:
        """This rank's sessions: every ``world_size``-th one of ``session_order``, so that the
        shards are alike in size and in time."""
        return session_order[self.rank :: self.world_size]

    def minimum(self, value: int) -> int:
        """The smallest ``value`` over the ranks."""
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.int64, device=self._device())
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return int(tensor)

    def total(self, values: list[float]) -> list[float]:
        """Each of ``values`` summed over the ranks."""
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def from_main(self, compute):
        """``compute()`` run on process 0 only; its result, on every process."""
        import torch.distributed as dist

        box = [compute() if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _device(self) -> torch.device:
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def average_gradients(
        self,
        dense: list[torch.Tensor | None],
        row_updates: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    ) -> tuple[list[torch.Tensor | None], list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
        """The gradients of one step averaged over the ranks.

        ``dense``: one gradient (or None: frozen, the same on every rank) per dense parameter;
        ``row_updates``: (table, distinct rows, their gradient) per item table, in the same order
        on every rank. Returns the same with averaged dense gradients and, per table, the union
        of the ranks' rows (sorted) with each row's gradient summed over the ranks that touched
        it and divided by the number of ranks.
        """
        import torch.distributed as dist

        world = self.world_size
        if world == 1 or not (row_updates or any(g is not None for g in dense)):
            return dense, row_updates  # one process, or nothing trains: nothing to average
        device = self._device()  # the backend's: CPU for gloo, this process's GPU for NCCL
        counts = torch.tensor([len(rows) for _, rows, _ in row_updates], dtype=torch.int64)
        counts = counts.to(device)
        gathered_counts = [torch.empty_like(counts) for _ in range(world)]
        dist.all_gather(gathered_counts, counts)
        widest = torch.stack(gathered_counts).amax(dim=0).tolist()
        padded = torch.full((sum(widest),), -1, dtype=torch.int64, device=device)
        start = 0
        for (_, rows, _), width in zip(row_updates, widest):
            padded[start : start + len(rows)] = rows
            start += width
        gathered_rows = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(gathered_rows, padded)
        every_rank = torch.stack(gathered_rows)  # (world, sum of widths)

        unions, buffers = [], []
        start = 0
        for (_, rows, grad), width in zip(row_updates, widest):
            block = every_rank[:, start : start + width].reshape(-1)
            union = torch.unique(block[block >= 0])  # sorted
            buffer = grad.new_zeros((len(union), *grad.shape[1:]))
            buffer.index_copy_(0, torch.searchsorted(union, rows), grad)
            unions.append(union)
            buffers.append(buffer)
            start += width
        present = [g for g in dense if g is not None]
        flat = torch.cat([g.reshape(-1) for g in present] + [b.reshape(-1) for b in buffers])
        dist.all_reduce(flat)
        flat.div_(world)

        pieces = iter(flat.split([t.numel() for t in present] + [b.numel() for b in buffers]))
        averaged_dense = [None if g is None else next(pieces).view_as(g) for g in dense]
        averaged_rows = [
            (table, union, next(pieces).view_as(buffer))
            for (table, _, _), union, buffer in zip(row_updates, unions, buffers)
        ]
        return averaged_dense, averaged_rows
